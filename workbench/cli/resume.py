"""``kni resume RUN...``: continue crashed, cancelled or failed runs where they stopped, in their
own rows, with the numbers they would have had (:mod:`kni_core.resume`)."""

from __future__ import annotations

import contextlib
import json
from typing import Any, List, Optional

import typer
from rich.markup import escape

from kni_core.errors import KniError
from kni_core.schema import MAX_INT

from ..present import status_style
from ..store.statuses import COMPLETED, PRUNED
from .common import consoles, db_option, device_missing, fail, open_store


def resume_command(run_ids: List[int] = typer.Argument(None, help="Runs to resume (kni runs lists them)."),
                   sweep: Optional[int] = typer.Option(None, "--sweep", help="Every stopped run of this sweep "
                                                       "(kni sweeps lists them); a TPE sweep's search then goes on "
                                                       "with the points it never asked: an interrupted sweep ends "
                                                       "with the runs it would have had."),
                   restart: bool = typer.Option(False, "--restart",
                                                help="A run without a usable last-epoch state (stored before "
                                                "states were written, or whose write failed) trains again "
                                                "from epoch 1 instead of being refused."),
                   epochs: Optional[int] = typer.Option(None, "--epochs", min=1, max=MAX_INT,
                                                        help="Continue to this many epochs (more than the run's "
                                                        "train.epochs; a completed run too, from the last-epoch "
                                                        "state it keeps with train.keep_last: true). The longer "
                                                        "run is a run of another group (train.epochs is part of "
                                                        "the configuration): said when it starts."),
                   device: Optional[str] = typer.Option(None, "--device", help="Continue on this device (cpu, "
                                                        "cuda, cuda:N, auto; default the run's own). The run "
                                                        "stays in its group; from there on its numbers are the "
                                                        "new device's."),
                   jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Runs resumed in parallel processes."),
                   retries: int = typer.Option(0, "--retries", min=0, help="Resume a run that crashes again, at "
                                               "most this many times (as kni run --retries)."),
                   executor: Optional[str] = typer.Option(None, "--executor",
                                                          help="local (default) or ray: where the runs continue."),
                   take_over: bool = typer.Option(False, "--take-over", help="With --sweep: resume it although "
                                                  "a process on another machine claimed it (that process is "
                                                  "gone; one on this machine is checked)."),
                   json_out: bool = typer.Option(False, "--json", help="Print only JSON lines on stdout."),
                   db: str = db_option()) -> None:
    """Continue crashed, cancelled or failed runs after their last finished epoch, in the same run
    rows (same id, group and seed), exactly as they would have gone on.

    Each run continues from its last-epoch state (written beside its saved
    model, within 3% of the training time); epochs stored after that state
    are trained again. Every run is checked before any is touched: a live
    run, a completed one (but with --epochs), or one whose state is missing,
    damaged or another run's is refused with the reason, and nothing changes
    (with --restart, a run without a usable state starts from epoch 1)."""
    console = consoles(json_out)
    if bool(run_ids) == (sweep is not None):
        fail("give the runs to resume, or --sweep ID (not both)")
    if sweep is not None and epochs is not None:
        fail("--epochs extends runs, not a sweep (its points share its train.epochs)")
    store = open_store(db, write=True)
    if sweep is not None:
        try:                                  # one driver at a time: two would each ask the same points
            store.claim_sweep(sweep, take_over)
        except KniError as e:
            fail(e)
    try:
        statuses, stop = _resume(store, console, run_ids, sweep, restart, epochs, device, jobs, retries, executor,
                                 json_out)
    finally:
        if sweep is not None:
            with contextlib.suppress(KniError):
                store.release_sweep(sweep)
    store.close()
    if stop:                                  # this command was asked to stop (not a kni cancel elsewhere)
        raise typer.Exit(130)
    if any(s not in (COMPLETED, PRUNED) for s in statuses.values()):     # as kni run: a pruned run ended well
        raise typer.Exit(1)


def _resume(store: Any, console: Any, run_ids: List[int], sweep: Optional[int], restart: bool,
            epochs: Optional[int], device: Optional[str], jobs: int, retries: int, executor: Optional[str],
            json_out: bool) -> tuple[dict[int, str], bool]:
    """Plan, requeue and run what ``kni resume`` was given; (the runs' statuses, whether a stop
    was asked)."""
    from ..runs.resume import plan
    from ..sweeps.resume import sweep_resume
    from .run import executor_session, launch_rows, run_executor
    search = None
    try:
        store.refresh_crashed()
        if sweep is not None:
            search = sweep_resume(store, sweep)
            run_ids = search.stopped
            if not json_out and search.note:
                console.print(search.note, highlight=False)
        if device is not None and (executor or "local") == "local":
            _check_device(device)
        plans = [plan(store, run_id, restart, epochs, device) for run_id in dict.fromkeys(run_ids)]
        device_given = device
        device = device or (plans[0].run.config.get("device", "auto") if plans else "auto")
        runner = run_executor(executor or "local", None, None, jobs, device, store.url, console)
        for p in plans:
            store.requeue_to_resume(p.run, p.from_epoch, p.best, p.new)
    except KniError as e:
        fail(e)
    ids = [p.run.id for p in plans]
    if not json_out:
        for p in plans:
            console.print(escape(p.text()), highlight=False)
    stop = False
    with executor_session(runner, json_out, console):
        statuses: dict[int, str] = {}
        if ids:
            statuses, launcher = launch_rows(store, ids, device, json_out, jobs, console, runner, retries=retries)
            stop = bool(launcher.stop_requested)
        if search is not None and search.searches and not stop:
            more, stop = _go_on_searching(store, search.sweep.id, json_out, jobs, console, runner, retries,
                                          device if device_given else None)
            statuses.update(more)
            ids += [i for i in more if i not in ids]
    if sweep is not None:
        from ..sweeps.resume import finish_if_whole
        try:
            if finish_if_whole(store, sweep) and not json_out:
                console.print(f"sweep {sweep}: every run it would have had has ended; it is done", highlight=False)
        except KniError as e:
            console.print(f"[yellow]sweep {sweep}: its end could not be recorded ({escape(str(e))})[/]")
    if json_out:
        print(json.dumps({"event": "resumed", "runs": [{"run_id": i, "status": statuses.get(i)} for i in ids]}))
    else:
        for i in ids:
            status = statuses.get(i, "?")
            console.print(f"run {i}: [{status_style(status)}]{status}[/]", highlight=False)
    return statuses, stop


def _go_on_searching(store: Any, sweep_id: int, json_out: bool, jobs: int, console: Any, runner: Any,
                     retries: int, device: str | None) -> tuple[dict[int, str], bool]:
    """Replay a TPE sweep's search and run what it asks that it never asked, then the rerun
    seeds a stop skipped (a grid or random sweep: those only): (the statuses of its runs,
    whether a stop was asked)."""
    from kni_core.data import prepare

    from ..runs.provenance import code
    from ..sweeps.driver import SweepDriver
    from .run import launch_rows

    def launch(ids: list[int], configs: list) -> tuple[dict[int, str], bool]:
        statuses, launcher = launch_rows(store, ids, driver.recipe.base.device, json_out, jobs, console, runner,
                                         retries=retries)
        return statuses, bool(launcher.stop_requested)

    def queued(sid: int, ids: list[int]) -> None:
        if not json_out:
            console.print(f"sweep {sid}: run(s) {', '.join(map(str, ids))} queued", highlight=False)

    try:
        driver = SweepDriver.continuing(store, sweep_id, launch, device=device, jobs=jobs, prov=code(),
                                        on_queued=queued, prepare=prepare,
                                        executor=runner.name if runner is not None else "local")
        statuses = driver.run()
    except KniError as e:
        fail(e)
    return statuses, driver.stopped


def _check_device(device: str) -> None:
    """A device this machine has, before any run is touched (a run requeued for a missing GPU
    would only fail)."""
    from ..runs.resume import ResumeRefused
    missing = device_missing(device)
    if missing:
        raise ResumeRefused(f"--device {device}: {missing}; nothing resumed")
