"""``kni run`` (stored, in child processes) and the run-history commands:
``kni runs | show | compare | export | rm | cancel``.

Every command takes ``--db`` (a SQLAlchemy URL or a SQLite file path; env ``KNI_DB``; default
``runs.db`` in the working directory) and ``--json`` for machine-readable output on stdout.
Errors print one line on stderr and exit with status 2 without touching the stored runs.
``runs``, ``show``, ``compare`` and ``export`` open the database read-only (they never write,
and work in a read-only folder); ``run``, ``rm`` and ``cancel`` write.
"""

from __future__ import annotations

import json
import math
import os
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Tuple

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kni_core.errors import KniError

from .cli import _consoles, app
from .lazy import lazy_module
from .statuses import CANCELLED, COMPLETED, CRASHED, FAILED, LIVE, PRUNED, QUEUED, RUNNING, STATUSES

if TYPE_CHECKING:                                  # imported where used, so `kni --help` starts fast
    from kni_core.results import EpochResult

    from .store import Epoch, Run, Store, TopK

#: workbench.compare (NumPy), imported on first use.
cmp: Any = lazy_module("workbench.compare")

DB_HELP = "Run database: a SQLite file path or a SQLAlchemy URL (env KNI_DB)."
JSON_HELP = "Print machine-readable JSON on stdout."
STATUS_STYLE = {QUEUED: "dim", RUNNING: "bold blue", COMPLETED: "green", FAILED: "bold red",
                CANCELLED: "yellow", CRASHED: "bold magenta", PRUNED: "cyan"}


def db_option() -> Any:
    return typer.Option("runs.db", "--db", envvar="KNI_DB", help=DB_HELP, show_default=True)


def _out() -> Console:
    """stdout; when it is not a terminal (a pipe, a file) tables are not squeezed to 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _err_console() -> Console:
    return Console(stderr=True)


def _fail(error: BaseException | str, code: int = 2) -> None:
    _err_console().print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _open(db: str, write: bool = False) -> Store:
    """The store, read-only unless ``write``; an error exits with status 2."""
    from .store import Store
    try:
        return Store.open(db, create=False, readonly=not write)
    except KniError as e:
        _fail(e)
        raise  # unreachable


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _pm(mean: float, std: float, digits: int = 4) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f}" + (f"±{std:.{digits}f}" if math.isfinite(std) else "")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _ago(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    s = (_now() - dt).total_seconds()
    if s < 90:
        return f"{s:.0f}s ago"
    if s < 5400:
        return f"{s / 60:.0f}m ago"
    if s < 86400 * 2:
        return f"{s / 3600:.0f}h ago"
    return dt.strftime("%Y-%m-%d")


def _duration(run: Run) -> str:
    if run.started_at is None:
        return "-"
    if run.status == CRASHED:                 # the last sign of life, not when it was found dead
        end = run.heartbeat_at or run.finished_at or run.started_at
    else:
        end = run.finished_at or (_now() if run.status in LIVE else run.heartbeat_at) or run.started_at
    s = max(0.0, (end - run.started_at).total_seconds())
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.1f}m" if s < 7200 else f"{s / 3600:.1f}h"


def _status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _check_statuses(values: Optional[List[str]]) -> list[str]:
    out = []
    for v in values or []:
        for part in v.split(","):
            part = part.strip().lower()
            if part not in STATUSES:
                _fail(f"--status: expected one of {', '.join(STATUSES)}; got {part!r}")
            out.append(part)
    return out


# --------------------------------------------------------------------------------------------
# kni run


def epoch_line(run: Run, r: EpochResult) -> str:
    """One line per epoch (Rich markup), at most 120 columns for 5-digit run ids, 4-digit seeds
    and 3-digit epochs: valid and test side by side as ``valid/test``."""
    def pair(metric: str) -> str:
        return f"{_fmt(getattr(r, f'valid_{metric}'))}/{_fmt(getattr(r, f'test_{metric}'))}"
    seconds = r.train_seconds + r.eval_seconds
    return (f"[dim]run {run.id}[/] seed {run.seed} epoch {r.epoch}/{run.max_epochs}  loss {_fmt(r.train_loss)}  "
            f"valid/test auc {pair('auc')} ll {pair('logloss')} acc {pair('acc')}  "
            f"[dim]{_fmt(seconds, 1)}s[/]")


class _LiveReport:
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
        from .progress import describe, eta_text, parse
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

    def on_end(self, run: Run, epochs: list[Epoch]) -> None:
        if run.id in self.tasks:
            self.progress.remove_task(self.tasks.pop(run.id))
        style = STATUS_STYLE.get(run.status, "")
        point = f" point {run.sweep_point}" if run.sweep_point is not None else ""
        line = f"[{style}]run {run.id}{point} seed {run.seed} {run.status}[/] after {len(epochs)} epoch(s)"
        if run.best_epoch is not None:
            line += (f": best epoch {run.best_epoch}, test auc {_fmt(run.best_test_auc)} "
                     f"acc {_fmt(run.best_test_acc)}")
        self._print(line)
        if run.status in (FAILED, CRASHED, PRUNED) and run.error:
            self._print(f"  {escape(run.error.splitlines()[0])}")


class _JsonReport:
    """The ``kni run --json`` lines (console.JsonLines), fed from the database; every event
    carries its ``run_id``."""

    def __init__(self) -> None:
        from .console import JsonLines
        self.lines = JsonLines()

    def on_epoch(self, run: Run, r: EpochResult) -> None:
        self.lines.epoch(r, run_id=run.id)

    def on_end(self, run: Run, epochs: list[Epoch]) -> None:
        from .runner import fit_summary
        summary = fit_summary(run, epochs)
        if run.status == COMPLETED and summary is not None:
            self.lines.finished(summary, run_id=run.id)

    def on_problem(self, run_id: int, message: str) -> None:      # stdout stays JSON
        _err_console().print(f"run {run_id}: {escape(message)}", highlight=False, soft_wrap=True)


def run_recipe(recipe: Path, seeds: Optional[str], set_: List[str], device: Optional[str], json_out: bool,
               checkpoint_dir: Optional[Path], jobs: Optional[int], db: str, *, executor: Optional[str] = None,
               ray_address: Optional[str] = None, ray_cpus: Optional[int] = None) -> None:
    """The body of ``kni run``: queue one stored run per seed and execute them in child processes
    (here, or as Ray tasks with ``executor="ray"``)."""
    from kni_core.data import prepare

    from .console import summary_table
    from .recipe import load_recipe
    from .runner import fit_summary, new_run, provenance
    from .store import Store, StoreError
    console = _consoles(json_out)
    try:
        rec = load_recipe(recipe, overrides=set_, seeds=seeds, device=device)
        store = Store.open(db, create=True)
        if store.in_memory:
            raise StoreError("--db: an in-memory database cannot be shared with run processes")
        executor = executor or rec.executor
        if rec.sweep is not None:             # every point x every seed (workbench.sweep)
            from .cli_sweeps import run_sweep
            store.close()
            jobs = jobs or (len(rec.seeds) if executor == "ray" else 1)
            runner = _executor(executor, ray_address, ray_cpus, jobs, rec.base.device, db, console)
            run_sweep(rec, json_out, checkpoint_dir, jobs, db, console, runner)
            return
        configs = rec.configs()
        jobs = jobs or (len(configs) if executor == "ray" else 1)
        runner = _executor(executor, ray_address, ray_cpus, jobs, rec.base.device, store.url, console)
        prepared = prepare(configs[0])        # once, before the children: they share the cache
    except KniError as error:
        _fail(error)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted before any run was queued[/]")
        raise typer.Exit(130)
    prov = provenance()
    ids: list[int] = []
    try:
        for cfg in configs:
            ids.append(store.create_run(new_run(rec.name, rec.text, cfg, rec.path, prov), executor=executor))
        statuses, launcher = _launch(store, rec, configs, ids, prepared, json_out, checkpoint_dir, jobs, console,
                                     runner)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted before the runs started[/]")
        statuses, launcher = {}, None
    except KniError as error:
        _cancel_queued(store, ids)
        _fail(error)
    _cancel_queued(store, ids)
    problems = launcher.problems if launcher is not None else {}
    try:
        runs = store.runs(ids=ids)
        epochs = store.epochs_of(ids)
    except KniError as error:
        _fail(error)
    summaries = [s for s in (fit_summary(r, epochs[r.id]) for r in runs if r.status == COMPLETED) if s]
    if summaries:
        console.print(summary_table(f"{rec.name}: test metrics at the best {rec.base.train.select_on} epoch",
                                    summaries, rec.base.train.select_on))
    others = [r for r in runs if r.status != COMPLETED and r.id not in problems]
    for r in others:
        console.print(f"[{STATUS_STYLE.get(r.status, '')}]run {r.id} seed {r.seed}: {r.status}[/]"
                      + (f" ({escape(r.error.splitlines()[0])})" if r.error else ""), highlight=False)
    for i, message in problems.items():       # ends the database could not hold, removed rows
        seed = next((c.seed for j, c in zip(ids, configs) if j == i), "?")
        _err_console().print(f"[bold red]run {i} seed {seed}:[/] {escape(message.splitlines()[0])}",
                             highlight=False, soft_wrap=True)
    if not json_out:
        console.print(f"[dim]kni runs --recipe {rec.name} | kni compare --recipe {rec.name} | kni show {ids[0]}[/]",
                      highlight=False)
    store.close()
    if launcher is None or launcher.stop_requested or any(s == CANCELLED for s in statuses.values()):
        raise typer.Exit(130)
    if others or problems:
        raise typer.Exit(1)


def _cancel_queued(store: Store, ids: list[int]) -> None:
    """Never leave a queued row behind (best effort: the database may be what failed)."""
    for i in ids:
        try:
            store.mark(i, CANCELLED, "cancelled before it started", only_if=(QUEUED,))
        except KniError as e:
            _err_console().print(f"[yellow]run {i}: could not be marked cancelled ({escape(str(e))})[/]",
                                 highlight=False, soft_wrap=True)
            return


def _executor(name: str, address: Optional[str], cpus: Optional[int], jobs: int, device: str, db_url: str,
              console: Console) -> Any:
    """The executor of ``kni run --executor NAME`` (a Ray one starts or connects in
    :func:`executor_session`)."""
    from .executors import EXECUTORS, cores, make_executor
    from .store import resolve_url
    if name not in EXECUTORS:
        raise KniError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == "ray" and (address or os.environ.get("RAY_ADDRESS")) and resolve_url(db_url).startswith("sqlite"):
        console.print(f"[yellow]warning:[/] the runs write to the SQLite file {escape(db_url)}, which only "
                      f"this machine reaches; Ray nodes on other machines need a shared store "
                      f"(--db postgresql://USER@HOST/DB)", highlight=False)
    return make_executor(name, address=address, cpus_per_run=cpus or max(1, cores() // jobs), device=device)


def _launch(store: Store, rec: Any, configs: list, ids: list[int], prepared: Any, json_out: bool,
            checkpoint_dir: Optional[Path], jobs: int, console: Console, runner: Any) -> tuple[dict[int, str], Any]:
    group = store.runs(config_hash=configs[0].config_hash())
    if not json_out:
        s = prepared.stats
        console.print(f"[bold]{rec.name}[/]: run(s) {', '.join(map(str, ids))} queued in {escape(store.where)}, "
                      f"{jobs} at a time; data {'from the cache' if prepared.from_cache else 'prepared'} "
                      f"({s.get('entities', '?'):,} entities, {s.get('train', '?'):,} / {s.get('valid', '?'):,} / "
                      f"{s.get('test', '?'):,} train / valid / test)", highlight=False)
        note = _group_note(configs[0].config_hash(), [r for r in group if r.id not in ids], [c.seed for c in configs])
        if note:
            console.print(note, highlight=False, soft_wrap=True)
    with executor_session(runner, json_out, console):
        return _run_launcher(store, rec, configs, ids, json_out, checkpoint_dir, jobs, console, runner)


@contextmanager
def executor_session(runner: Any, json_out: bool, console: Console) -> Iterator[Any]:
    """The executor ready for the whole command: a Ray one connects to its cluster (or starts a
    local instance that ends with the command); the local one (or None) needs nothing."""
    if runner is None or runner.name != "ray":
        yield runner
        return
    if not json_out:
        console.print(f"connecting to the Ray cluster at {runner.address}..." if runner.address else
                      "starting a local Ray instance (--ray-address or RAY_ADDRESS: a cluster)...", highlight=False)
    with runner:
        if not json_out:
            console.print(f"runs execute on {runner.describe()}", highlight=False)
        yield runner


def _run_launcher(store: Store, rec: Any, configs: list, ids: list[int], json_out: bool,
                  checkpoint_dir: Optional[Path], jobs: int, console: Console,
                  runner: Any = None) -> tuple[dict[int, str], Any]:
    """Run queued rows to their end with a Launcher, reporting live (a recipe's seeds, or a
    batch of a sweep's runs), on ``runner`` (default: local child processes; a Ray executor
    must be in its :func:`executor_session`): (final statuses, the launcher)."""
    from .runner import Launcher, LocalExecutor, visible_gpus
    runner = runner or LocalExecutor()
    gpus = visible_gpus(rec.base.device) if runner.name == "local" else []     # Ray assigns its GPUs itself
    checkpoints = {}
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        checkpoints = {i: str((checkpoint_dir / f"{rec.name}-seed{c.seed}-run{i}.pt").absolute())
                       for i, c in zip(ids, configs)}
    report: Any = _JsonReport() if json_out else _LiveReport(console)
    launcher = Launcher(store, jobs=jobs, gpus=gpus, executor=runner, checkpoints=checkpoints,
                        on_epoch=report.on_epoch,
                        on_start=getattr(report, "on_start", None), on_end=report.on_end,
                        on_problem=report.on_problem,
                        on_progress=getattr(report, "on_progress", None))
    if not json_out:
        report.start()
    try:
        return launcher.run(ids), launcher
    finally:
        if not json_out:
            report.stop()


def _seeds(seeds: list[int]) -> str:
    """Sorted, without repeats: ``1..3`` for a contiguous range, else ``1, 4, 7``."""
    u = sorted(set(seeds))
    if len(u) > 2 and u == list(range(u[0], u[0] + len(u))):
        return f"{u[0]}..{u[-1]}"
    return ", ".join(map(str, u))


def _group_note(config_hash: str, others: list[Run], new_seeds: list[int]) -> str:
    """What the group the new seeds join already holds: only the runs that count in a
    comparison (completed or running), their seeds sorted once each."""
    counting = [r for r in others if r.status in (COMPLETED, RUNNING)]
    if not counting:
        return ""
    seeds = {r.seed for r in counting}
    text = f"group {config_hash} already has completed or running runs of {len(seeds)} seed(s): {_seeds(list(seeds))}"
    repeated = sorted(seeds & set(new_seeds))
    if repeated:
        text += f"; seed(s) {_seeds(repeated)} run again"
    return text + "; the new seeds join it"


# --------------------------------------------------------------------------------------------
# kni runs


@app.command("runs")
def runs_command(status: Optional[List[str]] = typer.Option(None, "--status", help="Only runs with this status "
                                                            "(repeatable): " + ", ".join(STATUSES) + "."),
                 dataset: Optional[str] = typer.Option(None, "--dataset", help="Only runs of this dataset."),
                 recipe: Optional[str] = typer.Option(None, "--recipe", help="Only runs of this recipe (name)."),
                 tag: Optional[List[str]] = typer.Option(None, "--tag", help="Only runs with this tag, on the run "
                                                         "or on its group (repeatable: every tag given)."),
                 sweep: Optional[int] = typer.Option(None, "--sweep", help="Only runs of this sweep (kni sweeps)."),
                 json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                 db: str = db_option()) -> None:
    """List runs with their live status and progress (runs whose process vanished show as crashed).

    Reads only: the database is opened read-only and never changed."""
    from .store import Store, StoreError, run_to_dict
    statuses = _check_statuses(status)
    try:
        store = Store.open(db, readonly=True)
    except StoreError as e:
        if "no run database here" in str(e):
            if json_out:
                print("[]")
            else:
                _err_console().print(f"no runs yet ({escape(str(e))})")
            return
        _fail(e)
    try:
        if sweep is not None:
            store.get_sweep(sweep)
        runs = store.runs(status=statuses or None, dataset=dataset, recipe=recipe, sweep=sweep)
    except KniError as e:
        _fail(e)
    if tag:
        runs = [r for r in runs if set(tag) <= set(r.tags) | set(r.group_tags)]
    if json_out:
        print(json.dumps([run_to_dict(r, Store.effective_status(r)) for r in runs], indent=2))
        return
    title = f"runs in {store.where}" + (" (read-only snapshot: the folder is not writable)" if store.snapshot else "")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col, just in (("id", "right"), ("recipe", "left"), ("dataset", "left"), ("model", "left"),
                      ("seed", "right"), ("status", "left"), ("epochs", "right"), ("progress", "left"),
                      ("ETA", "right"), ("best", "right"), ("test auc", "right"), ("tags", "left"),
                      ("group", "left"), ("time", "right")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for r in runs:
        st = Store.effective_status(r)
        recipe_cell = r.recipe + (f" [dim]s{r.sweep_id}.p{r.sweep_point}[/]" if r.sweep_id is not None else "")
        table.add_row(str(r.id), recipe_cell, r.dataset, r.model, str(r.seed), _status_cell(r, st),
                      f"{r.n_epochs}/{r.max_epochs}", *_progress_cells(r, st), str(r.best_epoch or "-"),
                      _fmt(r.best_test_auc), escape(_tags_text(r)), r.config_hash[:8], _duration(r))
    if runs:
        _out().print(table)
        damaged = [r for r in runs if r.damage]
        if damaged:
            _err_console().print(f"[red]{len(damaged)} run(s) with damaged values, shown as '-': "
                                 + "; ".join(f"run {r.id}: {', '.join(r.damage)}" for r in damaged[:5])
                                 + (" ..." if len(damaged) > 5 else "") + "[/] (kni show RUN says more)",
                                 highlight=False, soft_wrap=True)
    else:
        _out().print("no runs match" + (" (filters: " + ", ".join(
            f"{k} {v}" for k, v in (("--status", ",".join(statuses)), ("--dataset", dataset), ("--recipe", recipe),
                                    ("--tag", ",".join(tag or [])), ("--sweep", sweep))
            if v is not None and v != "") + ")" if (statuses or dataset or recipe or tag or sweep is not None) else ""))


def _status_cell(run: Run, status: str) -> Text:
    """The status; a live run also says when its process last gave a sign of life."""
    cell = _status_text(status)
    if status in LIVE:
        cell.append(f", beat {_ago(run.heartbeat_at)}", style="dim")
    if run.damage:                      # unreadable or out-of-range values (store docs)
        cell.append(" damaged", style="bold red")
    return cell


def _progress_cells(run: Run, status: str) -> tuple[str, str]:
    """(``train 51%``, ``≤4m05s``) for a running run with stored progress, else blanks."""
    from .progress import eta_text, parse
    p = parse(run.progress) if status == RUNNING else None
    if p is None:
        return ("", "")
    where = f"{p.phase} {100 * p.done // max(1, p.total)}%" if p.phase else "starting"
    return (where, eta_text(p))


def _tags_text(run: Run) -> str:
    from .notes import tags_text
    return tags_text(run)


def resources_text(run: Run) -> str | None:
    from .resources import resources_text as text
    return text(run)


def progress_text(run: Run) -> str | None:
    """``epoch 3/20: train 40/79 12.3/s, epoch left 10s, run ETA ≤4m05s`` for a running run."""
    from .progress import clock_text, describe, eta_text, parse
    p = parse(run.progress) if run.status == RUNNING else None
    if p is None:
        return None
    text = f"epoch {p.epoch}/{p.epochs}: {describe(p)}"
    epoch_left = p.left("epoch_left")
    if epoch_left is not None:
        text += f", epoch left {clock_text(epoch_left)}"
    return text + f", ETA {eta_text(p)}"


# --------------------------------------------------------------------------------------------
# kni show


def _flat(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def epoch_plot(epochs: list[Epoch], width: int, height: int = 16, color: bool = True) -> str:
    """valid/test AUC and logloss per epoch, side by side, as terminal text (plotext)."""
    import plotext as plt
    plt.clear_figure()
    plt.subplots(1, 2)
    plt.plotsize(max(40, width), max(8, height))
    xs_all = [e.epoch for e in epochs]
    step = max(1, math.ceil(len(xs_all) / 8))
    ticks = xs_all[::step]
    for col, (metric, title) in enumerate((("auc", "AUC"), ("logloss", "logloss")), start=1):
        plt.subplot(1, col)
        plt.title(f"{title} per epoch")
        for split, marker in (("valid", "dot"), ("test", "x")):
            pts = [(e.epoch, getattr(e, f"{split}_{metric}")) for e in epochs]
            pts = [(x, y) for x, y in pts if y is not None and math.isfinite(y)]
            if pts:
                plt.plot([p[0] for p in pts], [p[1] for p in pts], label=split, marker=marker)
        plt.xticks(ticks)
        plt.xlabel("epoch")
    out = plt.build()
    plt.clear_figure()
    return out if color else plt.uncolorize(out)


@app.command("show")
def show_command(run_id: int = typer.Argument(..., help="Run id (kni runs lists them)."),
                 plot: bool = typer.Option(True, "--plot/--no-plot", help="Draw the per-epoch plot."),
                 json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                 db: str = db_option()) -> None:
    """One run: its status, progress, resources, tags and note, configuration, per-epoch table, a
    plot of AUC and logloss, and its top-N results when it has any."""
    from .store import Store, epoch_to_dict, run_to_dict, topk_to_dict
    store = _open(db)
    try:
        run = store.get(run_id)
        epochs = store.epochs(run_id)
        topk = store.topk(run_id)
    except KniError as e:
        _fail(e)
    from .checkpoints import state as checkpoint_state
    status = Store.effective_status(run)
    damage = list(run.damage) + [d for e in epochs for d in e.damage]
    checkpoint = checkpoint_state(store.url, run.checkpoint)
    if json_out:
        print(json.dumps({"run": {**run_to_dict(run, status), "damaged": damage}, "config": run.config,
                          "checkpoint_file": checkpoint.to_dict(),
                          "recipe_text": run.recipe_text,
                          "data_stats": json.loads(run.data_stats) if run.data_stats else None,
                          "traceback": run.traceback, "epochs": [epoch_to_dict(e) for e in epochs],
                          "topk": [topk_to_dict(t) for t in topk]}, indent=2))
        return
    console = _out()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("run", f"{run.id}  {run.recipe}  seed {run.seed}  ({run.dataset}, {run.model})")
    head.add_row("status", _status_text(status))
    head.add_row("progress", f"{len(epochs)}/{run.max_epochs} epochs" + (" (early stop)" if run.stopped_early else ""))
    inside = progress_text(run) if status == RUNNING else None
    if inside:
        head.add_row("", inside)
    if run.best_epoch is not None:
        head.add_row(f"best ({run.select_on})", f"epoch {run.best_epoch}: test auc {_fmt(run.best_test_auc)}, "
                                               f"logloss {_fmt(run.best_test_logloss)}, acc {_fmt(run.best_test_acc)}"
                                               f"; valid auc {_fmt(run.best_valid_auc)}")
    head.add_row("group", f"{run.config_hash}  (kni compare --recipe {run.recipe})")
    head.add_row("process", f"pid {run.pid} on {run.host}, device {run.device}"
                            + (f", executor {run.executor}" if run.executor else ""))
    resources = resources_text(run)
    if resources:
        head.add_row("resources", resources)
    created = f"{run.created_at:%Y-%m-%d %H:%M:%S} UTC" if run.created_at is not None else "? (damaged)"
    head.add_row("times", f"created {created}, ran {_duration(run)}"
                          + (f", heartbeat {_ago(run.heartbeat_at)}" if status in LIVE else ""))
    if run.tags or run.group_tags:
        head.add_row("tags", escape(" ".join(run.tags) or "-")
                     + (f"  (group: {escape(' '.join(run.group_tags))})" if run.group_tags else ""))
    if run.note:
        head.add_row("note", Text(run.note))
    if run.group_note:
        head.add_row("group note", Text(run.group_note))
    if run.package_version or run.git_commit:
        head.add_row("code", f"kni-workbench {run.package_version or '?'}, commit {run.git_commit or '?'}")
    if run.recipe_path:
        head.add_row("recipe file", run.recipe_path)
    head.add_row("checkpoint", Text(checkpoint.text(), style="bold red" if checkpoint.missing else ""))
    if run.sweep_id is not None:
        from .sweep import params_text
        head.add_row("sweep", f"sweep {run.sweep_id}, point {run.sweep_point}: {params_text(run.params)}  "
                              f"(kni compare --sweep {run.sweep_id})")
    if run.error:
        head.add_row("pruned" if run.status == PRUNED else "error",
                     Text(run.error, style="cyan" if run.status == PRUNED else "red"))
    if damage:
        head.add_row("damaged", Text("unreadable or out-of-range values, shown as '-' and left out of every "
                                     "mean: " + "; ".join(damage), style="bold red"))
    console.print(head)
    cfg = Table(title="configuration", title_justify="left", show_header=False)
    cfg.add_column("key", style="cyan")
    cfg.add_column("value")
    for k, v in _flat(run.config):
        cfg.add_row(k, json.dumps(v))
    console.print(cfg)
    if epochs:
        t = Table(title="epochs", title_justify="left")
        for col in ("epoch", "train loss", "valid auc", "valid ll", "valid acc", "test auc", "test ll", "test acc",
                    "train s", "eval s"):
            t.add_column(col, justify="right")
        for e in epochs:
            style = "bold" if e.epoch == run.best_epoch else ""
            t.add_row(str(e.epoch), _fmt(e.train_loss), _fmt(e.valid_auc), _fmt(e.valid_logloss),
                      _fmt(e.valid_acc), _fmt(e.test_auc), _fmt(e.test_logloss), _fmt(e.test_acc),
                      _fmt(e.train_seconds, 1), _fmt(e.eval_seconds, 1), style=style)
        console.print(t)
        if plot:
            text = epoch_plot(epochs, width=min(console.width, 160), color=console.is_terminal)
            console.print(Text.from_ansi(text) if console.is_terminal else text, highlight=False, markup=False)
    else:
        console.print("[dim]no epochs stored[/]")
    for t in topk:
        console.print(topk_table(t, run.best_epoch))
    if run.traceback:
        console.print(Text(run.traceback, style="dim red"))


def topk_table(t: TopK, best_epoch: int | None) -> Any:
    """One stored top-N result: a headline, then a row per K and a column per metric family."""
    from rich.console import Group as RichGroup
    what = "KGCN/MKR protocol" if t.protocol == "sampled" else "full ranking"
    selected = " (the selected epoch)" if t.epoch == best_epoch else ""
    head = Text(f"top-N, {what}, epoch {t.epoch}{selected}: {t.users} users, seed {t.seed}, "
                f"n_eval {t.n_eval}, {_fmt(t.seconds, 1)} s", style="italic")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    metrics = t.metrics
    by_k: dict[int, dict[str, float | None]] = {}
    families: list[str] = []
    for name, value in metrics.items():
        family, k = name.rsplit("@", 1)
        by_k.setdefault(int(k), {})[family] = value
        if family not in families:
            families.append(family)
    table.add_column("K", justify="right")
    for f in families:
        table.add_column(f.replace("full_", ""), justify="right")
    for k in sorted(by_k):
        table.add_row(str(k), *[_fmt(by_k[k].get(f)) for f in families])
    return RichGroup(head, table)


# --------------------------------------------------------------------------------------------
# kni compare / export


def _selection(store: Store, run_ids: List[int], recipe: Optional[str], all_: bool, dataset: Optional[str],
               status: Optional[List[str]], at: str, sweep: Optional[int] = None) -> tuple[list[cmp.RunPoint], str | int]:
    at_value = cmp.parse_at(at)
    runs = cmp.select_runs(store, ids=run_ids, recipe=recipe, all_=all_, dataset=dataset, status=status, sweep=sweep)
    return cmp.points(store, runs, at_value), at_value


def _at_text(at: str | int, pts: list[cmp.RunPoint]) -> str:
    if at == "best":
        splits = sorted({p.run.select_on for p in pts}) or ["valid"]
        return f"the best {'/'.join(splits)} epoch"
    if at == "original":
        return "the epoch the original protocol selects (test-based selection and stopping, replayed)"
    return "the last epoch" if at == "last" else f"epoch {at}"


@app.command("compare")
def compare_command(run_ids: List[int] = typer.Argument(None, help="Run ids (default: every run)."),
                    recipe: Optional[str] = typer.Option(None, "--recipe", help="The runs of this recipe."),
                    sweep: Optional[int] = typer.Option(None, "--sweep", help="Rank the points of this sweep "
                                                        "(kni sweeps lists them) and show which keys matter."),
                    all_: bool = typer.Option(False, "--all", help="Every run (the default without ids or --recipe)."),
                    dataset: Optional[str] = typer.Option(None, "--dataset", help="Only runs of this dataset."),
                    status: Optional[List[str]] = typer.Option(None, "--status", help="Statuses that count "
                                                               "(default completed,running; 'all' for every one)."),
                    group_by: Optional[str] = typer.Option(None, "--group-by", help="config | dataset | model | "
                                                           "recipe (default config; model with --matrix)."),
                    metric: Optional[str] = typer.Option(None, "--metric", help="Metric to rank, test and tabulate: "
                                                         "test_auc (the default; valid_auc with --sweep), valid_auc, ..., "
                                                         "or a top-N metric (recall@20, precision@10, f1@5, "
                                                         "full_recall@20, full_ndcg@20)."),
                    at: str = typer.Option("best", "--at", help="best | last | N | original (the original's test-based selection and "
                                               "early stopping, replayed on the stored test metrics): the epoch each "
                                               "run contributes."),
                    matrix: bool = typer.Option(False, "--matrix", help="Dataset x configuration table; columns "
                                                "by --group-by: model (default), recipe or config (its settings "
                                                "without the dataset)."),
                    paired: Optional[Tuple[str, str]] = typer.Option(None, "--paired", help="Two groups A B "
                                                                     "(config-hash prefixes or recipe names): "
                                                                     "a paired test over their shared seeds."),
                    explain: bool = typer.Option(False, "--explain", help="Instead: the early-summarization "
                                                 "statistic of each KNI/NI run with a saved model (attention on "
                                                 "the (user, item) cell itself over sampled test rows: mean, "
                                                 "quartiles), e.g. KNI vs NI."),
                    explain_rows: int = typer.Option(1000, "--explain-rows", min=1,
                                                     help="With --explain: test rows sampled per run (seed 0)."),
                    explain_samples: int = typer.Option(4, "--explain-samples", min=1,
                                                        help="With --explain: neighbourhood samples per row."),
                    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                    db: str = db_option()) -> None:
    """One row per group of seeds: n, mean ± std of AUC / logloss / accuracy, best epoch, time per epoch."""
    if explain:
        if sweep is not None or matrix or paired or group_by or metric:
            _fail("--explain compares runs' attention: it takes run ids, --recipe, --all, --dataset or --status, "
                  "not --sweep, --matrix, --paired, --group-by or --metric")
        from .cli_explain import compare_explain
        compare_explain(db, run_ids or [], recipe, all_, dataset, status, explain_rows, explain_samples, 0, json_out)
        return
    if sweep is not None:
        from .cli_sweeps import compare_sweep
        if run_ids or recipe or all_ or matrix or paired or group_by:
            _fail("--sweep ranks one sweep's points; it takes no run ids, --recipe, --all, --matrix, --paired "
                  "or --group-by")
        compare_sweep(_open(db), sweep, metric or "valid_auc", at, status, dataset, json_out)
        return
    metric = metric or "test_auc"
    group_by = group_by or ("model" if matrix else "config")
    store = _open(db)
    try:
        cmp.check_metric(metric)
        if group_by not in cmp.GROUP_BY:
            raise cmp.CompareError(f"--group-by: expected one of {', '.join(cmp.GROUP_BY)}; got {group_by!r}")
        store.refresh_crashed()
        pts, at_value = _selection(store, run_ids or [], recipe, all_, dataset, status, at)
        if not pts:
            raise cmp.CompareError("no runs to compare (kni runs lists them; --status all includes unfinished runs)")
        groups = cmp.group_points(pts, group_by)
        groups.sort(key=lambda g: _rank_key(g, metric))
        paired_result = None
        if paired:
            config_groups = cmp.group_points(pts, "config")
            a = cmp.resolve_group(config_groups, paired[0])
            b = cmp.resolve_group(config_groups, paired[1])
            paired_result = cmp.paired_test(a, b, metric)
        mat = None
        if matrix:
            mat = cmp.matrix(pts, group_by, metric)
    except KniError as e:
        _fail(e)
    if json_out:
        out: dict[str, Any] = {"group_by": group_by, "metric": metric, "at": str(at_value),
                               "groups": cmp.group_rows(groups, at_value)}
        if paired_result is not None:
            out["paired"] = paired_result.to_dict()
        if mat is not None:
            out["matrix"] = _matrix_json(mat)
        if at_value == "original":
            out["truncated_runs"] = [p.run.id for p in pts if p.truncated]
        print(json.dumps(out, indent=2))
        return
    console = _out()
    if mat is not None:
        console.print(_matrix_table(mat, at_value, pts))
    else:
        console.print(_groups_table(groups, metric, group_by, at_value, pts))
    notes = []
    for g in groups:
        notes += [f"{g.label}: {line}" for line in g.seed_notes()]
        if g.without_point:
            seeds = ", ".join(str(m.run.seed) for m in sorted(g.without_point, key=lambda m: m.run.seed))
            notes.append(f"{g.label}: seed(s) {seeds} left out: their counted run has no {_at_text(at_value, pts)}"
                         f" (run(s) {', '.join(str(m.run.id) for m in g.without_point)})")
    truncated = [p.run.id for p in pts if p.truncated]
    if truncated:
        notes.append(f"runs {', '.join(map(str, truncated))} stopped (on their own split) before the original "
                     "rule would have: their value is the best test epoch among the epochs they ran")
    for n in notes:
        console.print(f"[dim]{escape(n)}[/]", highlight=False)
    if paired_result is not None:
        console.print(_paired_table(paired_result, at_value, pts))


def _rank_key(g: cmp.Group, metric: str) -> tuple:
    mean, _ = g.stat(metric)
    if not math.isfinite(mean):
        return (1, 0.0)
    return (0, mean if cmp.lower_is_better(metric) else -mean)


def _groups_table(groups: list[cmp.Group], metric: str, by: str, at: str | int, pts: list[cmp.RunPoint]) -> Table:
    split = "valid" if metric.startswith("valid") else "test"
    table = Table(title=f"compare by {by}: mean ± std over seeds at {_at_text(at, pts)} (ranked by {metric})",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption="group: the group id, the first 8 characters of the config hash (as in kni runs and the "
                          "workbench)" if by == "config" else None, caption_justify="left")
    cols = [("group", "left"), ("recipe", "left"), ("dataset", "left"), ("model", "left")]
    if by == "config" and any(g.differs for g in groups):
        cols.append(("differs", "left"))
    cols += [("n", "right"), ("seeds", "left")]
    metric_cols = [f"{split}_auc", f"{split}_logloss", f"{split}_acc"]
    if metric not in metric_cols:
        metric_cols.insert(0, metric)
    for c, just in cols:
        table.add_column(c, justify=just, overflow="fold")  # type: ignore[arg-type]
    for m in metric_cols:
        table.add_column(m.replace("_", " "), justify="right", style="bold" if m == metric else None,
                         overflow="fold")
    table.add_column("epoch", justify="right", overflow="fold")
    table.add_column("s/epoch", justify="right", overflow="fold")
    best_mean = None
    for g in groups:
        mean = g.stat(metric)[0]
        if math.isfinite(mean):
            best_mean = mean if best_mean is None else (min(best_mean, mean) if cmp.lower_is_better(metric)
                                                        else max(best_mean, mean))
    for g in groups:
        row = [g.id, g.distinct("recipe"), g.distinct("dataset"),
               g.distinct("model")]
        if by == "config" and any(x.differs for x in groups):
            row.append(g.differs)
        seeds = g.seeds
        row += [str(g.n), ",".join(map(str, seeds)) if len(seeds) <= 8 else f"{seeds[0]}..{seeds[-1]}"]
        for m in metric_cols:
            mean, std = g.stat(m)
            cell = _pm(mean, std)
            row.append(f"[green]{cell}[/]" if m == metric and best_mean is not None and mean == best_mean
                       and len(groups) > 1 else cell)
        e_mean, e_std = g.epoch_stat()
        row.append(_pm(e_mean, e_std, 1))
        row.append(_fmt(g.seconds()[2], 2))
        table.add_row(*row)
    return table


def _matrix_table(mat: cmp.Matrix, at: str | int, pts: list[cmp.RunPoint]) -> Table:
    table = Table(title=f"{mat.metric}: mean ± std (n) at {_at_text(at, pts)}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("dataset")
    for c in mat.cols:
        table.add_column(escape(mat.col_labels[c]), justify="right")
    for ds in mat.rows:
        cells = []
        for c in mat.cols:
            g = mat.cells.get((ds, c))
            if g is None or not g.n:
                cells.append("-")
                continue
            mean, std = g.stat(mat.metric)
            mixed = "*" if len(g.distinct("config_hash").split(";")) > 1 else ""
            ids = f" {' '.join(mat.cell_ids(ds, c))}" if mat.by == "config" else ""
            cells.append(f"{_pm(mean, std)} ({g.n}){mixed}{ids}")
        table.add_row(escape(ds), *cells)
    captions = []
    if mat.by == "config":
        captions.append("columns: the settings without the dataset; each cell ends with its group id "
                        "(as in kni compare)")
    if any(len(g.distinct("config_hash").split(";")) > 1 for g in mat.cells.values() if g.n):
        captions.append("* the cell mixes several configurations")
    if captions:
        table.caption = "; ".join(captions)
        table.caption_justify = "left"
    return table


def _matrix_json(mat: cmp.Matrix) -> dict:
    cells = []
    for (ds, c), g in mat.cells.items():
        mean, std = g.stat(mat.metric)
        cells.append({"dataset": ds, "column": c, "label": mat.col_labels.get(c, c), "n": g.n,
                      "mean": cmp._j(mean), "std": cmp._j(std), "configs": g.distinct("config_hash").split(";"),
                      "groups": mat.cell_ids(ds, c),
                      "run_ids": [m.run.id for m in g.members]})
    return {"metric": mat.metric, "rows": mat.rows, "columns": mat.cols, "cells": cells}


def _paired_table(r: cmp.PairedResult, at: str | int, pts: list[cmp.RunPoint]) -> Table:
    table = Table(title=f"paired {r.metric} at {_at_text(at, pts)}: A - B over {len(r.seeds)} shared seed(s)",
                  title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("A", escape(r.a.label + (f" [{r.a_differs}]" if r.a_differs else "")))
    table.add_row("B", escape(r.b.label + (f" [{r.b_differs}]" if r.b_differs else "")))
    table.add_row("shared seeds", ", ".join(map(str, r.seeds)))
    table.add_row("mean A / B", f"{_fmt(r.mean_a)} / {_fmt(r.mean_b)}")
    table.add_row("difference", f"{r.diff:+.4f}  (std of the differences {_fmt(r.diff_std)})")
    table.add_row("bootstrap 95% CI", f"\\[{r.ci[0]:+.4f}, {r.ci[1]:+.4f}]  ({cmp.BOOTSTRAP_RESAMPLES:,} resamples, "
                                      f"seed {cmp.BOOTSTRAP_SEED})")
    kind = f"exact over {2 ** len(r.seeds):,} sign patterns" if r.exact else f"Monte Carlo, {cmp.MC_PATTERNS:,} patterns"
    table.add_row("sign-flip p", f"{r.p_value:.4g}  ({kind}, two-sided; smallest reachable {r.min_p:.4g})")
    table.add_row("seed noise", escape(r.noise_text()))
    style = {"significant": "green", "too few seeds": "yellow", "inconclusive": "yellow"}.get(r.verdict, "")
    text = escape(r.verdict_text())
    table.add_row("verdict", f"[{style}]{text}[/]" if style else text)
    return table


@app.command("export")
def export_command(run_ids: List[int] = typer.Argument(None, help="Run ids (default: every run)."),
                   csv_path: str = typer.Option(..., "--csv", help="Output file; '-' writes to stdout."),
                   groups_: bool = typer.Option(False, "--groups", help="One row per group instead of per run."),
                   recipe: Optional[str] = typer.Option(None, "--recipe", help="The runs of this recipe."),
                   sweep: Optional[int] = typer.Option(None, "--sweep", help="The runs of this sweep."),
                   all_: bool = typer.Option(False, "--all", help="Every run (the default)."),
                   dataset: Optional[str] = typer.Option(None, "--dataset", help="Only runs of this dataset."),
                   status: Optional[List[str]] = typer.Option(None, "--status", help="Statuses that count "
                                                              "(default completed,running; 'all')."),
                   group_by: str = typer.Option("config", "--group-by", help="config | dataset | model | recipe."),
                   at: str = typer.Option("best", "--at", help="best | last | N."),
                   json_out: bool = typer.Option(False, "--json", help="Print {path, rows, columns} as JSON."),
                   db: str = db_option()) -> None:
    """Write per-run (or --groups: per-group) rows as CSV; columns are documented in workbench/compare.py."""
    if json_out and csv_path == "-":
        _fail("--json and --csv - both want stdout; give --csv a file")
    store = _open(db)
    try:
        if group_by not in cmp.GROUP_BY:
            raise cmp.CompareError(f"--group-by: expected one of {', '.join(cmp.GROUP_BY)}; got {group_by!r}")
        store.refresh_crashed()
        pts, at_value = _selection(store, run_ids or [], recipe, all_, dataset, status, at, sweep)
        if groups_:
            rows = cmp.group_rows(cmp.group_points(pts, group_by), at_value)
            columns = (*cmp.GROUP_COLUMNS, *cmp.topk_columns(rows, ("_mean", "_std")))
        else:
            rows = cmp.run_rows(pts, at_value)
            columns = (*cmp.RUN_COLUMNS, *cmp.topk_columns(rows))
    except KniError as e:
        _fail(e)
    text = cmp.csv_text(rows, columns)
    if csv_path == "-":
        sys.stdout.write(text)
        return
    target = Path(csv_path).expanduser().absolute()
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as e:
        _fail(f"--csv {csv_path}: cannot write ({e.strerror or e})")
    if json_out:
        print(json.dumps({"path": str(target), "rows": len(rows), "columns": list(columns)}))
    else:
        _err_console().print(f"wrote {len(rows)} {'group' if groups_ else 'run'} row(s) to {escape(str(target))}",
                             highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------------------------
# kni rm / cancel


@app.command("rm")
def rm_command(run_ids: List[int] = typer.Argument(..., help="Run ids to remove."),
               yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
               json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
               db: str = db_option()) -> None:
    """Remove runs and their epochs (asks first unless --yes). Live runs must be cancelled first."""
    from .store import StoreError
    store = _open(db, write=True)
    try:
        store.refresh_crashed()
        missing = store.missing(run_ids)
        if missing:
            raise StoreError(f"no run with id {', '.join(map(str, missing))} in {store.where}; nothing removed")
        runs = store.runs(ids=run_ids)
        live = [r for r in runs if r.status in LIVE]
        if live:
            raise StoreError("; ".join(f"run {r.id} is {r.status} (pid {r.pid} on {r.host})" for r in live)
                             + f"; cancel it first (kni cancel {' '.join(str(r.id) for r in live)}); nothing removed")
    except KniError as e:
        _fail(e)
    if not yes:
        listing = ", ".join(f"{r.id} ({r.recipe} seed {r.seed}, {r.status})" for r in runs)
        try:
            ok = typer.confirm(f"Remove run(s) {listing} from {store.where}?", default=False, err=True)
        except typer.Abort:
            ok = False
        if not ok:
            _err_console().print("nothing removed")
            raise typer.Exit(1)
    try:
        n = store.delete([r.id for r in runs])
    except KniError as e:
        _fail(e)
    from .checkpoints import remove as remove_checkpoint
    files = []
    for r in runs:                  # after the rows: a failed delete leaves no row pointing at nothing
        try:
            if remove_checkpoint(store.url, r.checkpoint):
                files.append(r.id)
        except OSError as e:
            _err_console().print(f"[yellow]warning:[/] run {r.id}: checkpoint {escape(str(r.checkpoint))} not "
                                 f"removed ({escape(e.strerror or str(e))})", highlight=False)
    if json_out:
        print(json.dumps({"removed": [r.id for r in runs], "checkpoints_removed": files}))
    else:
        _err_console().print(f"removed {n} run(s)" + (f" and {len(files)} checkpoint(s)" if files else ""))


@app.command("cancel")
def cancel_command(run_ids: List[int] = typer.Argument(..., help="Run ids to cancel."),
                   json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                   db: str = db_option()) -> None:
    """Cancel live runs: SIGTERM to their process (they end as cancelled, epochs kept). A run
    whose process is gone (or whose pid now belongs to another process) is marked crashed."""
    from .runner import cancel
    from .store import StoreError
    store = _open(db, write=True)
    done = {}
    try:
        missing = store.missing(run_ids)
        if missing:
            raise StoreError(f"no run with id {', '.join(map(str, missing))} in {store.where}")
        for i in run_ids:
            done[i] = cancel(store, i)
    except KniError as e:
        _fail(e)
    if json_out:
        print(json.dumps([{"id": i, "result": m} for i, m in done.items()]))
    else:
        for m in done.values():
            _err_console().print(m)


from . import cli_notes  # noqa: E402,F401  (kni tag | note | diff; needs the helpers above)
from . import cli_sweeps  # noqa: E402,F401  (kni sweeps; it imports names defined above)
from . import cli_explain  # noqa: E402,F401  (kni explain | recommend; likewise)
