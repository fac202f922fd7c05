"""What ``kni run`` prints while its runs train: a progress line per run and a line per epoch,
or with ``--json`` one JSON object per event; and the closing per-seed table."""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import analysis as cmp
from ..present import fmt, pm, status_style
from ..store.statuses import COMPLETED, CRASHED, FAILED, PRUNED, RUNNING
from .common import err_console

if TYPE_CHECKING:
    from typing import IO

    from kni_core.results import EpochResult, FitSummary

    from ..runs.execute import (
        RunStart,  # imported where used, so `kni --help` starts fast
    )
    from ..store.records import Epoch, Run



# --------------------------------------------------------------------------------------------
# kni run


def epoch_line(run: Run, r: EpochResult) -> str:
    """One line per epoch (Rich markup), at most 120 columns for 5-digit run ids, 4-digit seeds
    and 3-digit epochs: valid and test side by side as ``valid/test``."""
    def pair(metric: str) -> str:
        return f"{fmt(getattr(r, f'valid_{metric}'))}/{fmt(getattr(r, f'test_{metric}'))}"
    seconds = r.train_seconds + r.eval_seconds
    return (f"[dim]run {run.id}[/] seed {run.seed} epoch {r.epoch}/{run.max_epochs}  loss {fmt(r.train_loss)}  "
            f"valid/test auc {pair('auc')} ll {pair('logloss')} acc {pair('acc')}  "
            f"[dim]{fmt(seconds, 1)}s[/]")


class LiveReport:
    """Rich progress over all active runs (the epoch, the phase inside it with its rate, the
    estimate of the time left), one printed line per epoch, one per end. Printed lines are
    never wrapped by Rich: piped to a file, every epoch is one line whatever the width."""

    def __init__(self, console: Console):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        self.console = console
        self.progress = Progress(TextColumn("[bold blue]run {task.fields[run]} seed {task.fields[seed]}"),
                                 BarColumn(bar_width=24), TextColumn("epoch {task.fields[epoch]}"),
                                 TextColumn("{task.fields[phase]}"), TextColumn("ETA {task.fields[eta]}"),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.tasks: dict[int, Any] = {}

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def _print(self, line: str) -> None:
        self.progress.console.print(line, highlight=False, soft_wrap=True)

    def on_start(self, run: Run) -> None:
        self.tasks[run.id] = self.progress.add_task("run", total=run.max_epochs, run=run.id, seed=run.seed,
                                                    epoch=f"1/{run.max_epochs}", phase="starting", eta="-")

    def on_progress(self, run: Run) -> None:
        from ..runs.progress import describe, eta_text, parse
        p = parse(run.progress)
        if run.id not in self.tasks or p is None or run.status != RUNNING:
            return
        self.progress.update(self.tasks[run.id], completed=min(run.max_epochs, run.n_epochs + p.fraction()),
                             epoch=f"{p.epoch}/{p.epochs}", phase=escape(describe(p)), eta=eta_text(p))

    def on_epoch(self, run: Run, r: EpochResult) -> None:
        self._print(epoch_line(run, r))
        if run.id in self.tasks:
            self.progress.update(self.tasks[run.id], completed=r.epoch,
                                 epoch=f"{min(r.epoch + 1, run.max_epochs)}/{run.max_epochs}",
                                 phase="starting" if r.epoch < run.max_epochs else "done")

    def on_problem(self, run_id: int, message: str) -> None:
        if run_id in self.tasks:
            self.progress.remove_task(self.tasks.pop(run_id))
        self.progress.console.print(f"[bold red]run {run_id}:[/] {escape(message)}", highlight=False)

    def on_retry(self, run_id: int, message: str) -> None:
        self._print(f"[yellow]run {run_id} {escape(message)}[/]")

    def on_end(self, run: Run, epochs: list[Epoch]) -> None:
        if run.id in self.tasks:
            self.progress.remove_task(self.tasks.pop(run.id))
        style = status_style(run.status)
        point = f" point {run.sweep_point}" if run.sweep_point is not None else ""
        line = f"[{style}]run {run.id}{point} seed {run.seed} {run.status}[/] after {len(epochs)} epoch(s)"
        if run.best_epoch is not None:
            line += (f": best epoch {run.best_epoch}, test auc {fmt(run.best_test_auc)} "
                     f"acc {fmt(run.best_test_acc)}")
        self._print(line)
        if run.status in (FAILED, CRASHED, PRUNED) and run.error:
            self._print(f"  {escape(run.error.splitlines()[0])}")


class JsonReport:
    """The ``kni run --json`` lines (console.JsonLines), fed from the database; every event
    carries its ``run_id``."""

    def __init__(self) -> None:

        self.lines = JsonLines()

    def on_epoch(self, run: Run, r: EpochResult) -> None:
        self.lines.epoch(r, run_id=run.id)

    def on_end(self, run: Run, epochs: list[Epoch]) -> None:
        from ..runs.rows import fit_summary
        summary = fit_summary(run, epochs)
        if run.status == COMPLETED and summary is not None:
            self.lines.finished(summary, run_id=run.id)

    def on_retry(self, run_id: int, message: str) -> None:
        print(json.dumps({"event": "retry", "run_id": run_id, "message": message}), flush=True)

    def on_problem(self, run_id: int, message: str) -> None:      # stdout stays JSON
        err_console().print(f"run {run_id}: {escape(message)}", highlight=False, soft_wrap=True)



def _json_number(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


class JsonLines:
    """``{"event": "epoch", "run_id", ...}`` per epoch and ``{"event": "end", "run_id", ...}`` per
    seed on stdout (``run_id`` is the stored run's id: ``kni show RUN_ID``)."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout

    def _emit(self, obj: dict) -> None:
        self.stream.write(json.dumps({k: _json_number(v) for k, v in obj.items()}) + "\n")
        self.stream.flush()

    def started(self, start: RunStart) -> None:
        pass

    def epoch(self, result: EpochResult, run_id: int | None = None) -> None:
        self._emit({"event": "epoch", "run_id": run_id, **result.to_dict()})

    def finished(self, summary: FitSummary, run_id: int | None = None) -> None:
        b = summary.best
        self._emit({"event": "end", "run_id": run_id, "seed": summary.seed, "best_epoch": summary.best_epoch,
                    "test_auc": b.test_auc, "test_logloss": b.test_logloss, "test_acc": b.test_acc})

    def failed(self, error: BaseException) -> None:
        pass


def summary_table(title: str, summaries: list[FitSummary], select_on: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("seed", "best epoch", "epochs", f"{select_on} auc", "test auc", "test logloss", "test acc",
                "s/epoch"):
        table.add_column(col, justify="right")
    for s in summaries:
        b = s.best
        table.add_row(str(s.seed), str(s.best_epoch), str(s.epochs_run), f"{b.metric(select_on, 'auc'):.4f}",
                      f"{b.test_auc:.4f}", f"{b.test_logloss:.4f}", f"{b.test_acc:.4f}",
                      f"{b.train_seconds + b.eval_seconds:.1f}")
    if len(summaries) > 1:
        col = lambda f: [f(s.best) for s in summaries]  # noqa: E731
        table.add_section()
        stat = lambda f: pm(*cmp.mean_std(col(f)))  # noqa: E731
        table.add_row("mean ± std", "", "", stat(lambda b: b.metric(select_on, "auc")), stat(lambda b: b.test_auc),
                      stat(lambda b: b.test_logloss), stat(lambda b: b.test_acc), "", style="bold")
    return table
