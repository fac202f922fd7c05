"""Start a recipe's seeds in the background without blocking the caller (the workbench), and cancel runs.

``kni run`` executes its runs inside its own process with :class:`workbench.runs.launcher.Launcher`
and waits for them. The workbench must return at once and its runs must survive it being
closed or killed. So
:func:`start_recipe` starts a small *detached launcher process*
(``python -m workbench.services.background``, in its own session) which

1. validates the recipe and writes one ``queued`` row per seed with ``runs.rows.new_run``
   (the rows name the launcher's pid, so crash detection stays right even if the
   workbench dies);
2. prints ``{"ids": [...]}`` (or ``{"error": "..."}``) as one line on its stdout, which
   :func:`start_recipe` reads before returning;
3. prepares the dataset once, so parallel seeds share the cache (as ``kni run`` does),
   keeping the queued rows' heartbeat fresh meanwhile;
4. runs the queue with ``runs.launcher.Launcher`` (``jobs`` at a time, GPUs from
   ``visible_gpus``), each run a child started by ``spawn``: the path ``kni
   run`` uses; with ``executor="ray"`` each run a Ray task (``workbench.runs.ray_executor``, a local
   Ray instance for this launcher, or ``RAY_ADDRESS``'s cluster).

A SIGTERM to the launcher cancels its queue and its running children (``Launcher``'s own
handling; before the queue starts, the rows are marked cancelled).

A recipe with a ``sweep:`` section is run by :class:`workbench.sweeps.driver.SweepDriver` in the same
launcher process: the handshake names the sweep and the runs queued first (every run of a grid
or random sweep, the first wave of a TPE sweep), and each batch runs with the same launcher.

:func:`cancel_run` delegates to ``runs.control.cancel``, which imports no torch, so the
workbench process stays light.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kni_core.errors import KniError

from ..recipe import Recipe, parse_recipe, read_recipe_text
from ..recipe.suite import is_suite, load_suite
from ..store.errors import StoreError
from ..store.liveness import HEARTBEAT_SECONDS
from ..store.repository import Store
from ..store.statuses import CANCELLED, FAILED, QUEUED

log = logging.getLogger(__name__)

__all__ = ["Launch", "LaunchError", "start_recipe", "cancel_run", "launcher_main"]

#: Seconds :func:`start_recipe` waits for the launcher to report its queued runs.
HANDSHAKE_SECONDS = 120.0


class LaunchError(KniError):
    """The launcher process could not queue the runs."""


@dataclass
class Launch:
    """A launcher process started by :func:`start_recipe` and the runs it owns."""

    recipe: Recipe
    run_ids: list[int]
    proc: subprocess.Popen
    jobs: int
    seeds: list[int] = field(default_factory=list)
    sweep_id: int | None = None

    def poll(self) -> int | None:
        """The launcher's exit status once it has ended (reaps it), else None."""
        return self.proc.poll()

    def terminate(self) -> None:
        """Ask the launcher to cancel its queue and its running children."""
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
            except ProcessLookupError:
                pass


def start_recipe(store: Store, path: str | Path, *, seeds: str | None = None, device: str | None = None,
                 jobs: int = 1, overrides: list[str] | None = None, timeout: float = HANDSHAKE_SECONDS,
                 executor: str | None = None) -> Launch:
    """Queue one run per seed of the recipe at ``path`` (a sweep: per point and seed) in a
    detached launcher process and return once the rows exist. ``overrides`` are ``--set``
    strings; ``executor`` is ``local`` or ``ray`` (default: the recipe's). Raises
    :class:`~workbench.recipe.RecipeError` (invalid recipe, seeds or overrides),
    :class:`~workbench.store.errors.StoreError`, :class:`~workbench.recipe.sweep.SweepError` (a missing extra)
    or :class:`LaunchError`."""
    overrides = list(overrides or [])
    rec = _validated(path, overrides, seeds or None, device or None)        # fast errors, here
    if store.in_memory:
        raise StoreError("an in-memory database cannot be shared with run processes; give --db a file")
    if rec.sweep is not None:
        from ..recipe.sweep import require_optuna
        for what in rec.sweep.needs_optuna:
            require_optuna(what)
    jobs = max(1, int(jobs))
    cmd = [sys.executable, "-m", "workbench.services.background", "--db", store.url, "--recipe", str(path),
           "--jobs", str(jobs)]
    if seeds:
        cmd += ["--seeds", seeds]
    if device:
        cmd += ["--device", device]
    for item in overrides:
        cmd += ["--set", item]
    if executor:
        cmd += ["--executor", executor]
    proc, msg = _handshake(cmd, timeout)
    return Launch(rec, [int(i) for i in msg["ids"]], proc, jobs, list(rec.seeds), msg.get("sweep"))


def resume_runs(store: Store, run_ids: list[int], *, jobs: int = 1, timeout: float = HANDSHAKE_SECONDS) -> list[int]:
    """Resume stopped runs (``kni resume``'s rules) in a detached launcher process; returns the
    run ids once they are queued again. :class:`LaunchError` says why when any is refused (then
    none is touched)."""
    cmd = [sys.executable, "-m", "workbench.services.background", "--db", store.url,
           "--resume", ",".join(map(str, run_ids)), "--jobs", str(max(1, int(jobs)))]
    return [int(i) for i in _handshake(cmd, timeout)[1]["ids"]]


def _handshake(cmd: list[str], timeout: float) -> tuple[subprocess.Popen, dict]:
    """Start a detached launcher and read its first line: the queued ids, or the error."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else b""
    finally:
        proc.stdout.close()
    if not ready:
        proc.terminate()
        raise LaunchError(f"the launcher did not queue the runs within {timeout:.0f} s")
    if not line.strip():
        rc = proc.wait(timeout=10)
        raise LaunchError(f"the launcher exited (status {rc}) before queueing the runs")
    msg = json.loads(line)
    if "error" in msg:
        proc.wait(timeout=10)
        raise LaunchError(msg["error"])
    return proc, msg


def _validated(path: str | Path, overrides: list[str], seeds: str | None, device: str | None) -> Recipe:
    """The recipe at ``path``; for a suite (:mod:`workbench.recipe.suite`) its first recipe
    renamed after the suite, with every recipe's seeds and warnings (what the workbench shows)."""
    text = read_recipe_text(path)
    if not is_suite(text):
        return parse_recipe(text, str(path), overrides=overrides, seeds=seeds, device=device)
    suite, recipes = load_suite(path, text, overrides=overrides, seeds=seeds, device=device)
    return dataclasses.replace(recipes[0], name=suite.name, seeds=sorted({s for r in recipes for s in r.seeds}),
                               warnings=tuple(w for r in recipes for w in r.warnings))


def cancel_run(store: Store, run_id: int) -> str:
    """Ask run ``run_id`` to stop (``workbench.runs.control.cancel``: SIGTERM, or mark a queued run)."""
    from ..runs.control import cancel
    return cancel(store, run_id)


# --------------------------------------------------------------------------------------------
# the launcher process


class _KeepQueuedAlive(threading.Thread):
    """Refreshes the heartbeat of still-queued rows while the dataset is prepared."""

    def __init__(self, store: Store, ids: list[int]):
        super().__init__(name="keep-queued", daemon=True)
        self.store, self.ids = store, ids
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(HEARTBEAT_SECONDS):
            try:
                self.store.touch(self.ids, statuses=(QUEUED,))
            except StoreError as e:
                log.warning("%s", e)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=HEARTBEAT_SECONDS + 1)


def _say(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)          # the workbench stops reading now
    os.dup2(devnull, 1)
    os.close(devnull)


def launcher_main(argv: list[str] | None = None) -> int:
    """``python -m workbench.services.background --db URL --recipe PATH [--seeds S] [--device D] [--jobs N]``."""
    parser = argparse.ArgumentParser(prog="python -m workbench.services.background",
                                     description="Queue a recipe's seeds and run them (started by kni-workbench).")
    parser.add_argument("--db", required=True)
    parser.add_argument("--recipe", default=None)
    parser.add_argument("--resume", default=None, help="run ids to resume, comma-separated (instead of --recipe)")
    parser.add_argument("--seeds", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--executor", default=None, help="local or ray (default: the recipe's executor key)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())     # until the Launcher takes over
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if not args.resume and not args.recipe:
        parser.error("give --recipe PATH or --resume IDS")
    if args.resume:
        return _resume(args.db, [int(i) for i in args.resume.split(",")], max(1, args.jobs), stop)
    try:
        text = read_recipe_text(args.recipe)
        if is_suite(text):
            recipes = load_suite(args.recipe, text, overrides=args.overrides, seeds=args.seeds,
                                 device=args.device)[1]
        else:
            recipes = [parse_recipe(text, args.recipe, overrides=args.overrides, seeds=args.seeds,
                                    device=args.device)]
        rec = recipes[0]
        store = Store.open(args.db, create=False)
        from ..runs.ray_executor import cores, make_executor
        jobs = max(1, args.jobs)
        executor = make_executor(args.executor or rec.executor, cpus_per_run=max(1, cores() // jobs),
                                 device=rec.base.device)
    except KniError as e:
        _say({"error": str(e)})
        return 2
    if rec.sweep is not None:
        return _run_sweep(store, rec, jobs, stop, executor)
    ids: list[int] = []
    try:
        from ..runs.launcher import Launcher, visible_gpus
        from ..runs.provenance import code
        from ..runs.rows import new_run
        prov = code()
        for r in recipes:                      # a suite: every recipe's runs in one queue, in order
            for cfg in r.configs():
                ids.append(store.create_run(new_run(r.name, r.text, cfg, r.path, prov), executor=executor.name))
        _say({"ids": ids})
        keep = _KeepQueuedAlive(store, ids)
        keep.start()
        try:
            from kni_core.data import prepare
            for r in recipes:
                prepare(r.base)                # once, so parallel seeds share the cache
        except Exception as e:                 # noqa: BLE001 - each run records its own failure
            log.warning("preparing the data failed (the runs will report it): %s", e)
        finally:
            keep.stop()
        launcher = Launcher(store, jobs=jobs, executor=executor,
                            gpus=visible_gpus(rec.base.device) if executor.name == "local" else [])
        if stop.is_set():
            launcher.request_stop()
        with executor if executor.name == "ray" else contextlib.nullcontext():   # a local Ray ends with us
            statuses = launcher.run(ids)
        log.info("runs ended: %s", statuses)
        return 0
    except BaseException as e:                 # noqa: BLE001 - recorded on the rows still queued
        if not ids:
            _say({"error": f"{type(e).__name__}: {e}"})
        text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        for i in ids:
            try:
                store.finish(i, FAILED, error=f"the launcher failed: {type(e).__name__}: {e}", traceback=text) \
                    if store.get(i).status == QUEUED else None
            except StoreError:
                pass
        return 1
    finally:
        store.close()


def _resume(db: str, run_ids: list[int], jobs: int, stop: threading.Event) -> int:
    """The launcher process of ``resume_runs``: every run checked, then requeued and run."""
    from ..runs.launcher import Launcher, LocalExecutor
    from ..runs.resume import plan
    try:
        store = Store.open(db, create=False)
        store.refresh_crashed()
        plans = [plan(store, i) for i in run_ids]
        for p in plans:
            store.requeue_to_resume(p.run, p.from_epoch, p.best, p.new)
    except KniError as e:
        _say({"error": str(e)})
        return 2
    _say({"ids": run_ids})
    try:
        launcher = Launcher(store, jobs=jobs, executor=LocalExecutor())
        if stop.is_set():
            launcher.request_stop()
        log.info("resumed runs ended: %s", launcher.run(run_ids))
        return 0
    finally:
        store.close()


def _run_sweep(store: Store, rec: Recipe, jobs: int, stop: threading.Event, executor: Any) -> int:
    """The launcher process of a sweep: the handshake after the first runs are queued; every
    batch of runs on ``executor`` (a Ray one is entered once, for the whole sweep)."""
    from kni_core.data import prepare

    from ..runs.launcher import Launcher, visible_gpus
    from ..runs.provenance import code
    from ..sweeps.driver import SweepDriver
    told: list[bool] = []

    def queued(sweep_id: int, ids: list[int]) -> None:
        if not told:
            told.append(True)
            _say({"ids": ids, "sweep": sweep_id})

    def launch(ids: list[int], configs: list) -> tuple[dict[int, str], bool]:
        launcher = Launcher(store, jobs=jobs, executor=executor,
                            gpus=visible_gpus(rec.base.device) if executor.name == "local" else [])
        if stop.is_set():
            launcher.request_stop()
        statuses = launcher.run(ids)
        return statuses, bool(launcher.stop_requested) or stop.is_set()

    driver = SweepDriver(store, rec, launch, jobs=jobs, prov=code(), on_queued=queued, prepare=prepare,
                         executor=executor.name)
    try:
        with executor if executor.name == "ray" else contextlib.nullcontext():   # a local Ray ends with us
            driver.start()
            statuses = driver.run()
        log.info("sweep %s: runs ended: %s", driver.sweep_id, statuses)
        return 0
    except BaseException as e:                 # noqa: BLE001 - the queued rows are marked
        if not told:
            _say({"error": f"{e}" if isinstance(e, KniError) else f"{type(e).__name__}: {e}"})
        for i in driver.run_ids:
            try:
                store.mark(i, CANCELLED if isinstance(e, KeyboardInterrupt) else FAILED,
                           f"the sweep's launcher stopped: {type(e).__name__}: {e}", only_if=(QUEUED,))
            except StoreError:
                break
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    from workbench.services.background import (
        launcher_main as _main,  # the importable module, not __main__
    )
    sys.exit(_main())
