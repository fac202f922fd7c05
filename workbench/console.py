"""Terminal reporters for ``kni run``: live Rich progress, JSON lines, the closing table."""

from __future__ import annotations

import json
import math
import statistics
import sys
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kni_core.results import EpochResult, FitSummary

from .execute import RunStart


def _json_number(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


class JsonLines:
    """``{"event": "epoch", ...}`` per epoch and ``{"event": "end", ...}`` per seed on stdout."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout

    def _emit(self, obj: dict) -> None:
        self.stream.write(json.dumps({k: _json_number(v) for k, v in obj.items()}) + "\n")
        self.stream.flush()

    def started(self, start: RunStart) -> None:
        pass

    def epoch(self, result: EpochResult) -> None:
        self._emit({"event": "epoch", **result.to_dict()})

    def finished(self, summary: FitSummary) -> None:
        b = summary.best
        self._emit({"event": "end", "seed": summary.seed, "best_epoch": summary.best_epoch,
                    "test_auc": b.test_auc, "test_logloss": b.test_logloss, "test_acc": b.test_acc})

    def failed(self, error: BaseException) -> None:
        pass


class RichProgress:
    """A progress bar over epochs and one line per finished epoch."""

    def __init__(self, console: Console, max_epochs: int):
        self.console = console
        self.max_epochs = max_epochs
        self.progress: Progress | None = None
        self.task = None
        self.seed = 0

    def started(self, start: RunStart) -> None:
        cfg = start.config
        self.seed = cfg.seed
        cache = "reused the preprocessed cache" if start.from_cache else "preprocessed and cached"
        s = start.data_stats
        self.console.print(f"[bold]seed {cfg.seed}[/] on {start.device}: {cache} "
                           f"({s.get('entities', '?'):,} entities, {s.get('train', '?'):,} / "
                           f"{s.get('valid', '?'):,} / {s.get('test', '?'):,} train / valid / test)")
        self.progress = Progress(TextColumn("[bold blue]seed {task.fields[seed]}"), BarColumn(),
                                 TextColumn("epoch {task.completed}/{task.total}"), TextColumn("{task.fields[last]}"),
                                 TimeElapsedColumn(), console=self.console, transient=True)
        self.task = self.progress.add_task("train", total=self.max_epochs, seed=cfg.seed, last="")
        self.progress.start()

    def epoch(self, r: EpochResult) -> None:
        line = (f"epoch {r.epoch:3d}  loss {r.train_loss:.4f}  "
                f"valid auc {r.valid_auc:.4f} ll {r.valid_logloss:.4f} acc {r.valid_acc:.4f}  "
                f"test auc {r.test_auc:.4f} ll {r.test_logloss:.4f} acc {r.test_acc:.4f}  "
                f"[dim]{r.train_seconds:.1f}s + {r.eval_seconds:.1f}s[/]")
        assert self.progress is not None
        self.progress.console.print(line)
        self.progress.update(self.task, completed=r.epoch, last=f"valid auc {r.valid_auc:.4f}")

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def finished(self, summary: FitSummary) -> None:
        self._stop()
        how = "early stop" if summary.stopped_early else "all epochs"
        b = summary.best
        self.console.print(f"[green]seed {summary.seed} done[/] ({how} after {summary.epochs_run}): best epoch "
                           f"{summary.best_epoch}, test auc {b.test_auc:.4f} acc {b.test_acc:.4f}")

    def failed(self, error: BaseException) -> None:
        self._stop()


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


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
        table.add_row("mean ± std", "", "", mean_std(col(lambda b: b.metric(select_on, "auc"))),
                      mean_std(col(lambda b: b.test_auc)), mean_std(col(lambda b: b.test_logloss)),
                      mean_std(col(lambda b: b.test_acc)), "", style="bold")
    return table
