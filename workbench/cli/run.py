"""``kni run`` (each seed a stored run in its own process, here or on Ray; a recipe with a
``sweep:`` runs every point) and ``kni bench``."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from kni_core.errors import KniError

from .. import analysis as cmp
from ..present import status_style
from ..store.statuses import CANCELLED, COMPLETED, CRASHED, FAILED, QUEUED, RUNNING
from .common import DEVICE_HELP, SEEDS_HELP, SET_HELP, consoles, device_missing, err_console, fail, follow_up, out
from .live import JsonReport, LiveReport, summary_table
from .sweeps import print_ranking

if TYPE_CHECKING:                                  # imported where used, so `kni --help` starts fast

    from ..store.records import Run
    from ..store.repository import Store



def run_command(recipe: Path = typer.Argument(..., help="Recipe YAML file, e.g. recipes/quickstart.yaml."),
        seeds: Optional[str] = typer.Option(None, "--seeds", help=SEEDS_HELP),
        set_: List[str] = typer.Option([], "--set", help=SET_HELP),
        device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
        json_out: bool = typer.Option(False, "--json", help="Print only JSON lines on stdout."),
        checkpoint_dir: Optional[Path] = typer.Option(None, "--checkpoint-dir",
                                                      help="Save each seed's best model here."),
        jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1,
                                           help="Seeds run in parallel processes (one GPU each when several are "
                                                "visible); default 1, with --executor ray every run at once."),
        db: str = typer.Option("runs.db", "--db", envvar="KNI_DB",
                               help="Run database: a SQLite file path or a SQLAlchemy URL, e.g. "
                                    "postgresql://user@host/db (env KNI_DB)."),
        executor: Optional[str] = typer.Option(None, "--executor",
                                               help="local: child processes on this machine (default); ray: each "
                                                    "run a Ray task (overrides the recipe's executor key)."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                                                  help="With --executor ray: the cluster to use (env RAY_ADDRESS); "
                                                       "default a local Ray instance for this command."),
        ray_cpus: Optional[int] = typer.Option(None, "--ray-cpus", min=1,
                                               help="With --executor ray: CPUs (= threads) each run asks for; "
                                                    "default max(1, cores // jobs)."),
        retries: int = typer.Option(0, "--retries", min=0,
                                    help="Resume a run that crashed (its process or its Ray node died) from its "
                                         "last-epoch state, at most this many times (as kni resume; on Ray, on "
                                         "another node). Failed runs are not retried.")) -> None:
    """Train a recipe for each seed (in child processes, stored as runs), live, and close with a per-seed table.

    Every seed becomes a run in the database; seeds join the group of runs with the same configuration.
    A suite (a file with a suite: list, e.g. recipes/bc-all.yaml) runs each recipe it lists in turn.
    """

    from ..recipe import read_recipe_text
    from ..recipe.suite import is_suite
    try:
        text = read_recipe_text(recipe)
    except KniError as error:
        fail(error)
    if is_suite(text):
        from .suite import run_suite
        run_suite(recipe, text, seeds, set_, device, json_out,
                  lambda path, suite_seeds: run_recipe(path, suite_seeds, set_, device, json_out, checkpoint_dir,
                                                       jobs, db, executor=executor, ray_address=ray_address,
                                                       ray_cpus=ray_cpus, retries=retries))
        return
    run_recipe(recipe, seeds, set_, device, json_out, checkpoint_dir, jobs, db, executor=executor,
               ray_address=ray_address, ray_cpus=ray_cpus, retries=retries)


def bench_command(dataset: str = typer.Option("bc", "--dataset",
                                              help="Registry dataset; the paper's settings are used."),
          recipe: Optional[Path] = typer.Option(None, "--recipe", help="Benchmark this recipe's settings instead."),
          set_: List[str] = typer.Option([], "--set", help=SET_HELP),
          device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
          repeats: int = typer.Option(3, "--repeats", min=1, help="Timed rounds (the median is reported)."),
          steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                              help="Time N training steps and N evaluation batches and "
                                                   "extrapolate to an epoch, instead of full epochs."),
          json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Time a training epoch and a full evaluation (valid + test, n_eval passes) after a warm-up.

    With --steps N: N training steps and N evaluation batches, per-step seconds and the epoch
    they extrapolate to (for data too large for full epochs, e.g. recipes/synthetic-ml20m.yaml).
    """
    from rich.table import Table

    from kni_core.bench import benchmark

    from ..recipe import load_recipe, paper_recipe
    console = consoles(json_out)
    try:
        rec = load_recipe(recipe, overrides=set_, device=device) if recipe else paper_recipe(dataset, set_, device)
        result = benchmark(rec.base, repeats=repeats, steps=steps)
    except KniError as error:
        fail(error)
    if json_out:
        print(json.dumps(result))
        return
    table = Table(title=f"kni bench: {result['dataset']} on {result['device']}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, str(value))
    console.print(table)



def run_recipe(recipe: Path, seeds: Optional[str], set_: List[str], device: Optional[str], json_out: bool,
               checkpoint_dir: Optional[Path], jobs: Optional[int], db: str, *, executor: Optional[str] = None,
               ray_address: Optional[str] = None, ray_cpus: Optional[int] = None, retries: int = 0) -> None:
    """The body of ``kni run``: queue one stored run per seed and execute them in child processes
    (here, or as Ray tasks with ``executor="ray"``)."""
    from kni_core.data import prepare

    from ..recipe import load_recipe
    from ..runs.checkpoints import checkpoint_folder
    from ..runs.provenance import code
    from ..runs.rows import fit_summary, new_run
    from ..store.errors import StoreError
    from ..store.repository import Store
    console = consoles(json_out)
    try:
        rec = load_recipe(recipe, overrides=set_, seeds=seeds, device=device)
        for warning in rec.warnings:
            err_console().print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
        if checkpoint_dir is not None:
            checkpoint_dir = checkpoint_folder(checkpoint_dir)
        store = Store.open(db, create=True)
        if store.in_memory:
            raise StoreError("--db: an in-memory database cannot be shared with run processes")
        executor = executor or rec.executor
        missing = device_missing(rec.base.device) if executor != "ray" else None   # a Ray node may have it
        if missing:
            raise KniError(f"device {rec.base.device}: {missing}; nothing was queued")
        if rec.sweep is not None:             # every point x every seed (workbench.sweeps)

            store.close()
            jobs = jobs or (len(rec.seeds) if executor == "ray" else 1)
            runner = run_executor(executor, ray_address, ray_cpus, jobs, rec.base.device, db, console)
            run_sweep(rec, json_out, checkpoint_dir, jobs, db, console, runner, retries=retries)
            return
        configs = rec.configs()
        jobs = jobs or (len(configs) if executor == "ray" else 1)
        runner = run_executor(executor, ray_address, ray_cpus, jobs, rec.base.device, store.url, console)
        prepared = prepare(configs[0])        # once, before the children: they share the cache
    except KniError as error:
        fail(error)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted before any run was queued[/]")
        raise typer.Exit(130)
    prov = code()
    ids: list[int] = []
    try:
        for cfg in configs:
            ids.append(store.create_run(new_run(rec.name, rec.text, cfg, rec.path, prov), executor=executor))
        _, launcher = _launch(store, rec, configs, ids, prepared, json_out, checkpoint_dir, jobs, console,
                              runner, retries)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted before the runs started[/]")
        launcher = None
    except KniError as error:
        _cancel_queued(store, ids)
        fail(error)
    _cancel_queued(store, ids)
    problems = launcher.problems if launcher is not None else {}
    try:
        runs = store.runs(ids=ids)
        epochs = store.epochs_of(ids)
    except KniError as error:
        fail(error)
    summaries = [s for s in (fit_summary(r, epochs[r.id]) for r in runs if r.status == COMPLETED) if s]
    if summaries:
        console.print(summary_table(f"{rec.name}: test metrics at the best {rec.base.train.select_on} epoch",
                                    summaries, rec.base.train.select_on))
    others = [r for r in runs if r.status != COMPLETED and r.id not in problems]
    for r in others:
        console.print(f"[{status_style(r.status)}]run {r.id} seed {r.seed}: {r.status}[/]"
                      + (f" ({escape(r.error.splitlines()[0])})" if r.error else ""), highlight=False)
    for i, message in problems.items():       # ends the database could not hold, removed rows
        seed = next((c.seed for j, c in zip(ids, configs) if j == i), "?")
        err_console().print(f"[bold red]run {i} seed {seed}:[/] {escape(message.splitlines()[0])}",
                             highlight=False, soft_wrap=True)
    if not json_out:
        hint = follow_up(db, ["kni", "runs", "--recipe", rec.name], ["kni", "compare", "--recipe", rec.name],
                         ["kni", "show", str(ids[0])])
        console.print(f"[dim]{escape(hint)}[/]", highlight=False, soft_wrap=True)     # pasted whole
    store.close()
    # 130 only when this command was asked to stop; a run cancelled from elsewhere (kni cancel,
    # the workbench) is a run that did not complete
    if launcher is None or launcher.stop_requested:
        raise typer.Exit(130)
    if others or problems:
        raise typer.Exit(1)


def _cancel_queued(store: Store, ids: list[int]) -> None:
    """Never leave a queued row behind (best effort: the database may be what failed)."""
    for i in ids:
        try:
            store.mark(i, CANCELLED, "cancelled before it started", only_if=(QUEUED,))
        except KniError as e:
            err_console().print(f"[yellow]run {i}: could not be marked cancelled ({escape(str(e))})[/]",
                                 highlight=False, soft_wrap=True)
            return


def run_executor(name: str, address: Optional[str], cpus: Optional[int], jobs: int, device: str, db_url: str,
              console: Console) -> Any:
    """The executor of ``kni run --executor NAME`` (a Ray one starts or connects in
    :func:`executor_session`)."""
    from ..runs.ray_executor import EXECUTORS, cores, make_executor
    from ..store.engine import resolve_url
    if name not in EXECUTORS:
        raise KniError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == "ray" and (address or os.environ.get("RAY_ADDRESS")) and resolve_url(db_url).startswith("sqlite"):
        console.print(f"[yellow]warning:[/] the runs write to the SQLite file {escape(db_url)}, which only "
                      f"this machine reaches; Ray nodes on other machines need a shared store "
                      f"(--db postgresql://USER@HOST/DB)", highlight=False)
    return make_executor(name, address=address, cpus_per_run=cpus or max(1, cores() // jobs), device=device)


def _launch(store: Store, rec: Any, configs: list, ids: list[int], prepared: Any, json_out: bool,
            checkpoint_dir: Optional[Path], jobs: int, console: Console, runner: Any,
            retries: int = 0) -> tuple[dict[int, str], Any]:
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
        return run_launcher(store, rec, ids, json_out, checkpoint_dir, jobs, console, runner, retries)


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


def run_launcher(store: Store, rec: Any, ids: list[int], json_out: bool,
                  checkpoint_dir: Optional[Path], jobs: int, console: Console,
                  runner: Any = None, retries: int = 0) -> tuple[dict[int, str], Any]:
    """Run queued rows to their end with a Launcher, reporting live (a recipe's seeds, or a
    batch of a sweep's runs), on ``runner`` (default: local child processes; a Ray executor
    must be in its :func:`executor_session`): (final statuses, the launcher)."""
    from ..runs.checkpoints import named_file
    checkpoints = {}
    if checkpoint_dir is not None:              # checked by checkpoint_folder before anything was queued
        checkpoints = {r.id: str(named_file(checkpoint_dir, r)) for r in store.runs(ids=ids)}
    return launch_rows(store, ids, rec.base.device, json_out, jobs, console, runner, checkpoints, retries)


def launch_rows(store: Store, ids: list[int], device: str, json_out: bool, jobs: int, console: Console,
                runner: Any = None, checkpoints: dict[int, str] | None = None,
                retries: int = 0) -> tuple[dict[int, str], Any]:
    """Run queued rows to their end with a Launcher, ``jobs`` at a time, reporting live (or as
    JSON lines), resuming a crashed run ``retries`` times at most: (final statuses, the launcher)."""
    from ..runs.launcher import Launcher, LocalExecutor, visible_gpus
    runner = runner or LocalExecutor()
    gpus = visible_gpus(device) if runner.name == "local" else []     # Ray assigns its GPUs itself
    checkpoints = checkpoints or {}
    report: Any = JsonReport() if json_out else LiveReport(console)
    launcher = Launcher(store, jobs=jobs, gpus=gpus, executor=runner, checkpoints=checkpoints,
                        on_epoch=report.on_epoch,
                        on_start=getattr(report, "on_start", None), on_end=report.on_end,
                        on_problem=report.on_problem,
                        on_progress=getattr(report, "on_progress", None), on_retry=report.on_retry,
                        retries=retries)
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
# kni run RECIPE-WITH-A-SWEEP


def run_sweep(rec: Any, json_out: bool, checkpoint_dir: Optional[Path], jobs: int, db: str,
              console: Console, runner: Any = None, retries: int = 0) -> None:
    """The body of ``kni run`` for a sweep: every point x every seed through the Launcher, on
    ``runner`` (default: local child processes; a Ray executor for the whole sweep)."""
    from kni_core.data import prepare

    from ..runs.provenance import code
    from ..store.errors import StoreError
    from ..store.repository import Store
    try:
        store = Store.open(db, create=True)
        if store.in_memory:
            raise StoreError("--db: an in-memory database cannot be shared with run processes")
    except KniError as error:
        fail(error)
    assert rec.sweep is not None

    def prepared(cfg: Any) -> Any:
        data = prepare(cfg)
        if not json_out:
            s = data.stats
            console.print(f"[dim]data {'from the cache' if data.from_cache else 'prepared'}: "
                          f"{s.get('entities', '?'):,} entities, {s.get('train', '?'):,} / {s.get('valid', '?'):,} / "
                          f"{s.get('test', '?'):,} train / valid / test[/]", highlight=False)
        return data

    stop = {"requested": False}

    def launch(ids: list[int], configs: list) -> tuple[dict[int, str], bool]:
        statuses, launcher = run_launcher(store, rec, ids, json_out, checkpoint_dir, jobs, console, runner,
                                          retries)
        stop["requested"] = stop["requested"] or bool(launcher.stop_requested)
        return statuses, bool(launcher.stop_requested)

    def queued(sweep_id: int, ids: list[int]) -> None:
        if not json_out:
            console.print(f"[bold]{rec.name}[/]: sweep {sweep_id}, run(s) {_span(ids)} queued in "
                          f"{escape(store.where)}, {jobs} at a time", highlight=False)

    from ..sweeps.driver import SweepDriver
    driver = SweepDriver(store, rec, launch, jobs=jobs, prov=code(), on_queued=queued,
                                      prepare=prepared, executor=runner.name if runner is not None else "local")
    if not json_out:
        console.print(f"[bold]{rec.name}[/]: {escape(rec.sweep.describe(len(rec.seeds)))}", highlight=False)
    interrupted = False
    try:
        with executor_session(runner, json_out, console):
            driver.start()
            driver.run()
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: the sweep stops; queued runs are cancelled[/]")
    except KniError as error:
        _cancel(store, driver.run_ids)
        if driver.sweep_id is None:
            fail(error)
        err_console().print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    _cancel(store, driver.run_ids)
    if driver.sweep_id is None:
        raise typer.Exit(130)
    try:
        ranking = cmp.rank_sweep(store, driver.sweep_id)
        runs = store.runs(ids=driver.run_ids)
    except KniError as error:
        fail(error)
    if json_out:
        print(json.dumps({"event": "sweep", "sweep_id": driver.sweep_id, "metric": ranking.metric,
                          "points": cmp.sweep_rows(ranking)}))
    else:
        print_ranking(console if console.is_terminal else out(), ranking, top=10)
        hint = follow_up(db, ["kni", "compare", "--sweep", str(driver.sweep_id)],
                         ["kni", "runs", "--sweep", str(driver.sweep_id)], ["kni", "sweeps"])
        console.print(f"[dim]{escape(hint)}[/]", highlight=False, soft_wrap=True)     # pasted whole
    store.close()
    bad = [r for r in runs if r.status in (FAILED, CRASHED, CANCELLED)]
    if interrupted or stop["requested"]:
        raise typer.Exit(130)
    if bad:
        raise typer.Exit(1)


def _cancel(store: Store, ids: list[int]) -> None:
    for i in ids:
        try:
            store.mark(i, CANCELLED, "cancelled before it started (the sweep stopped)", only_if=(QUEUED,))
        except KniError:
            return


def _span(ids: list[int]) -> str:
    if len(ids) > 3 and ids == list(range(ids[0], ids[0] + len(ids))):
        return f"{ids[0]}..{ids[-1]}"
    return ", ".join(map(str, ids))
