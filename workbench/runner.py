"""The run lifecycle: launch run processes, watch them through the database, cancel them.

Every run executes in its own child process, ``python -m workbench.runner RUN_ID --db URL``
(a fresh interpreter: no inherited CUDA state, the GIL of its own, cancellation by signal).
The parent (``kni run``, the TUI) only writes the ``queued`` row and, for runs it launched,
the end of a process that died without writing one; everything else the child writes itself:

- claims the row (``queued`` -> ``running``, its pid and host, ``started_at``);
- one commit per epoch (the epoch row, best-so-far and heartbeat: :class:`StoreListener`);
- a heartbeat every :data:`~workbench.store.HEARTBEAT_SECONDS` from a thread;
- SIGTERM / SIGINT -> ``cancelled`` with the finished epochs kept (a signal that arrives
  while an epoch is being committed waits for the commit);
- an exception -> ``failed`` with the message and the traceback;
- the end -> ``completed`` with the best epoch.

A process that vanishes (kill -9, power cut) writes nothing; its launcher, if alive, marks
it ``crashed`` when it sees the exit, and any writer does so once the heartbeat is stale
and the process is gone (:meth:`workbench.store.Store.refresh_crashed`; read-only readers
show it crashed without writing).

Database faults: every write of a run process is retried with backoff while the database is
locked or full (:func:`workbench.store.retry_write`, bounded by ``KNI_DB_PATIENCE``), so a
stall costs time, not finished epochs; past the bound the run fails with a clear message
(recorded if the database lets it). A run whose row is removed while it trains stops and
exits with :data:`EXIT_REMOVED`. The launcher never waits on the database for long: it
reports a run end it cannot record (``Launcher.problems``) and always obeys Ctrl-C.

Lifecycle: ``queued -> running -> completed | failed | cancelled | crashed | pruned``; a queued
run whose launcher is interrupted ends ``cancelled``, one whose launcher vanished ``crashed``.
A run of a sweep that prunes also reports each epoch to the sweep's pruning study
(:mod:`workbench.study`), after the epoch is stored; when the pruner says so it stops there and
ends ``pruned`` (exit status 0), its epochs and best epoch kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback as tb
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

from kni_core.config import RunConfig
from kni_core.results import EpochResult, FitSummary

from .store import (CANCELLED, COMPLETED, CRASHED, FAILED, HEARTBEAT_SECONDS, LIVE, PRUNED, QUEUED,
                    Epoch, NewRun, Run, RunGone, Store, StoreError, crash_reason, is_abandoned, owner_alive,
                    process_start, retry_write, this_host, utcnow, write_patience)
from .sweep import OPTUNA_EXTRA, Pruned

log = logging.getLogger(__name__)

__all__ = ["Cancelled", "StoreListener", "Launcher", "LocalExecutor", "ProcessHandle", "new_run", "spawn",
           "cancel", "child_main", "epoch_result", "fit_summary", "assign_gpus", "visible_gpus", "provenance",
           "threads_per_run"]

#: Exit status of a run process that was cancelled by a signal.
EXIT_CANCELLED = 130
#: Exit status of a run process whose row was removed from the database while it ran.
EXIT_REMOVED = 4
#: Seconds a run process keeps trying to record its end after a cancel or a database failure.
END_PATIENCE = 10.0


class Cancelled(BaseException):
    """Raised in a run process by SIGTERM / SIGINT (a BaseException, like KeyboardInterrupt)."""


# --------------------------------------------------------------------------------------------
# rows <-> typed records


def model_label(cfg: RunConfig) -> str:
    """``KNI`` (with the knowledge graph), ``NI`` (user-item graph only), or the baseline's
    name: ``MF``, ``RippleNet``, ``KGCN``."""
    name = getattr(cfg.model, "name", "kni")
    if name != "kni":
        from kni_core.models import LABELS      # torch-free
        return LABELS[name]
    return "KNI" if cfg.model.kg else "NI"


def dataset_label(cfg: RunConfig) -> str:
    d = cfg.dataset
    if d.name == "synthetic" and not d.path:
        preset = (d.synthetic or {}).get("preset")
        return f"synthetic-{preset}" if preset else "synthetic"
    return d.name or Path(d.path or "?").name


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def epoch_result(seed: int, e: Epoch) -> EpochResult:
    """The :class:`EpochResult` of a stored epoch row (NULL metrics become NaN)."""
    return EpochResult(seed, e.epoch, _nan(e.train_loss), _nan(e.valid_auc), _nan(e.valid_logloss),
                       _nan(e.valid_acc), _nan(e.test_auc), _nan(e.test_logloss), _nan(e.test_acc),
                       _nan(e.train_seconds), _nan(e.eval_seconds))


def fit_summary(run: Run, epochs: Sequence[Epoch]) -> FitSummary | None:
    """The :class:`FitSummary` of a stored run (None without epochs)."""
    if not epochs:
        return None
    by_epoch = {e.epoch: e for e in epochs}
    best = by_epoch.get(run.best_epoch or -1) or epochs[-1]
    return FitSummary(run.seed, best.epoch, epoch_result(run.seed, best), len(epochs), bool(run.stopped_early))


def provenance() -> tuple[str | None, str | None]:
    """(package version, git commit of the source tree, ``+dirty`` when modified) when known."""
    version = commit = None
    try:
        from importlib.metadata import version as _version
        version = _version("kni-workbench")
    except Exception:                       # noqa: BLE001 - not installed as a package
        pass
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            commit = out.stdout.strip()[:40]
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5)
            if dirty.returncode == 0 and dirty.stdout.strip():
                commit = commit[:12] + "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return version, commit


def new_run(recipe_name: str, recipe_text: str, cfg: RunConfig, recipe_path: str | None = None,
            prov: tuple[str | None, str | None] | None = None) -> NewRun:
    """The queued row of one seed of a recipe."""
    version, commit = prov if prov is not None else provenance()
    return NewRun(recipe=recipe_name, recipe_text=recipe_text, config_json=json.dumps(cfg.to_dict(), sort_keys=True),
                  config_hash=cfg.config_hash(), dataset=dataset_label(cfg), model=model_label(cfg), seed=cfg.seed,
                  device=cfg.device, max_epochs=cfg.train.epochs, select_on=cfg.train.select_on,
                  recipe_path=recipe_path, package_version=version, git_commit=commit)


# --------------------------------------------------------------------------------------------
# the run process


class SignalGuard:
    """SIGTERM / SIGINT raise :class:`Cancelled`, except inside :meth:`section`, where the
    signal waits until the section ends (an epoch commit is never cut in half). Later
    signals are ignored while the cancellation is being recorded."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None
        self.fired = False
        self.reason: str | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handler)

    def interrupt(self, reason: str) -> None:
        """Stop the main thread as a signal would, with ``reason`` (from any thread)."""
        self.reason = reason
        os.kill(os.getpid(), signal.SIGTERM)

    def _raise(self, signum: int) -> None:
        self.fired = True
        raise Cancelled(self.reason or signal.Signals(signum).name)

    def _handler(self, signum: int, frame: object) -> None:
        if self.fired:
            return
        if self.depth:
            self.pending = signum
            return
        self._raise(signum)

    @contextmanager
    def section(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None and not self.fired:
                signum, self.pending = self.pending, None
                self._raise(signum)


class StoreListener:
    """A :class:`~workbench.execute.RunListener` that writes the run's rows: one commit per epoch."""

    def __init__(self, store: Store, run_id: int, select_on: str, guard: SignalGuard | None = None):
        self.store = store
        self.run_id = run_id
        self.select_on = select_on
        self.guard = guard or SignalGuard()
        self.best: EpochResult | None = None
        self.ended = False

    def _write(self, what: str, write: Callable[[], object], patience: float | None = None) -> object:
        """One commit, retried while the database is locked or full. A signal waits for a
        commit in progress but not for the pauses between attempts."""
        warned = []

        def attempt() -> object:
            with self.guard.section():
                return write()

        def waiting(error: StoreError) -> None:
            if not warned:                    # once per write: the log stays readable
                warned.append(error)
                log.warning("run %d: could not store %s yet (%s); retrying for up to %.0f s", self.run_id, what,
                            error, write_patience() if patience is None else patience)

        result = retry_write(attempt, patience=patience, on_wait=waiting)
        if warned:
            log.warning("run %d: %s stored after retrying", self.run_id, what)
        return result

    def started(self, start) -> None:       # RunStart
        device = start.device
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if device.startswith("cuda") and visible:
            device = f"{device} (CUDA_VISIBLE_DEVICES={visible})"
        self._write("the start", lambda: self.store.record_start(self.run_id, device, start.data_stats))

    def epoch(self, result: EpochResult) -> None:
        # the same rule as Trainer.fit: strictly better on the selection split
        if self.best is None or result.metric(self.select_on, "auc") > self.best.metric(self.select_on, "auc"):
            self.best = result
        best = self.best
        self._write(f"epoch {result.epoch}", lambda: self.store.add_epoch(self.run_id, result, best))

    def finished(self, summary: FitSummary) -> None:
        self._write("the end", lambda: self.store.finish(self.run_id, COMPLETED, best=summary.best,
                                                         stopped_early=summary.stopped_early))
        self.ended = True
        self.guard.fired = True               # a signal from now on changes nothing: ignore it

    def failed(self, error: BaseException) -> None:
        self.guard.fired = True              # no further Cancelled while recording the end
        self.ended = True
        if isinstance(error, RunGone):       # nothing left to record into
            return
        if isinstance(error, Pruned):        # a normal end: the pruner's reason is kept as the note
            best = self.best
            self._write("the pruning", lambda: self.store.finish(self.run_id, PRUNED, error=str(error), best=best),
                        patience=END_PATIENCE)
            return
        if isinstance(error, (Cancelled, KeyboardInterrupt)):
            how = error.args[0] if isinstance(error, Cancelled) and error.args else "SIGINT"
            self._write("the cancellation", lambda: self.store.finish(self.run_id, CANCELLED,
                                                                      error=f"cancelled by {how}"),
                        patience=END_PATIENCE)
        else:
            text = "".join(tb.format_exception(type(error), error, error.__traceback__))
            message = f"{type(error).__name__}: {error}"
            # the database just failed for a while: do not wait as long again
            patience = END_PATIENCE if isinstance(error, StoreError) else None
            self._write("the failure", lambda: self.store.finish(self.run_id, FAILED, error=message,
                                                                 traceback=text), patience=patience)


class Heartbeat(threading.Thread):
    """Refreshes the heartbeat every ``every`` seconds; calls ``on_gone`` once if the run's
    row disappears, ``on_cancel`` once when ``kni cancel`` asked through the row (a run on
    another host than the one cancelling it). Failures are logged once per outage (the next
    beat retries)."""

    def __init__(self, store: Store, run_id: int, every: float = HEARTBEAT_SECONDS,
                 on_gone: Callable[[], None] | None = None, on_cancel: Callable[[], None] | None = None):
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.store, self.run_id, self.every, self.on_gone = store, run_id, every, on_gone
        self.on_cancel = on_cancel
        self.halt = threading.Event()

    def run(self) -> None:
        failing = False
        while not self.halt.wait(self.every):
            try:
                beat = self.store.heartbeat(self.run_id)
                if not beat and self.store.missing([self.run_id]) and not self.halt.is_set():
                    if self.on_gone is not None:
                        self.on_gone()
                    return
                if beat and self.on_cancel is not None and self.store.cancel_requested(self.run_id) \
                        and not self.halt.is_set():
                    self.on_cancel()
                    return
            except StoreError as e:          # locked or full for a while: try again next beat
                if not failing:
                    log.warning("heartbeat of run %d failing (%s); retrying every %g s", self.run_id, e, self.every)
                failing = True
                continue
            if failing:
                log.warning("heartbeat of run %d recorded again", self.run_id)
                failing = False

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=self.every + 1)


def child_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a run process: ``python -m workbench.runner RUN_ID --db URL``."""
    parser = argparse.ArgumentParser(prog="python -m workbench.runner",
                                     description="Execute one stored run (normally started by kni run).")
    parser.add_argument("run_id", type=int)
    parser.add_argument("--db", required=True, help="SQLAlchemy URL or SQLite path of the run database")
    parser.add_argument("--checkpoint", default=None, help="save the best model here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    guard = SignalGuard()
    guard.install()                           # from here on a signal means cancelled
    try:
        store = Store.open(args.db, create=False)
    except (StoreError, Cancelled) as e:
        print(f"run {args.run_id}: {e}", file=sys.stderr)
        return 2
    listener = StoreListener(store, args.run_id, "valid", guard)
    heartbeat: Heartbeat | None = None

    def removed() -> bool:
        try:
            return bool(store.missing([args.run_id]))
        except StoreError:
            return False

    progress = None
    try:
        claimed = listener._write("the claim", lambda: store.claim(args.run_id, os.getpid(), this_host()))
        if not claimed:
            print(f"run {args.run_id}: not queued (already started, ended or removed)", file=sys.stderr)
            return 3
        run = store.get(args.run_id)
        heartbeat = Heartbeat(store, args.run_id, on_gone=lambda: guard.interrupt("removal of its row"),
                              on_cancel=lambda: guard.interrupt("kni cancel (asked through the database)"))
        heartbeat.start()
        from .execute import execute         # imports torch: after the claim
        if os.environ.get("KNI_THREADS"):    # set by the launcher (spawn): the run's share of the cores
            import torch
            torch.set_num_threads(int(os.environ["KNI_THREADS"]))
        cfg = RunConfig.from_dict(json.loads(run.config_json)).validate()
        listener.select_on = cfg.train.select_on
        from .progress import ProgressListener, ProgressTracker, ProgressWriter
        tracker = ProgressTracker(cfg.train.epochs)
        progress = ProgressWriter(store, args.run_id, tracker)
        progress.start()
        checkpoint, optional = args.checkpoint, False
        if checkpoint is None and cfg.train.checkpoint:
            from .checkpoints import default_path
            checkpoint, optional = str(default_path(store.url, args.run_id)), True
        recorded: list[bool] = []

        def saved(path) -> None:              # the row names the file once it holds a model
            if not recorded:
                from .checkpoints import stored_form
                listener._write("the checkpoint's path", lambda: store.set_checkpoint(args.run_id,
                                                                                     stored_form(store.url, path)))
                recorded.append(True)

        execute(cfg, [ProgressListener(tracker, progress), listener, *sweep_listeners(store, run)],
                checkpoint=checkpoint, checkpoint_optional=optional, on_checkpoint=saved,
                progress=tracker.update)
        return 0
    except BaseException as error:            # noqa: BLE001 - recorded, then reported
        if not listener.ended:                # an error before execute's listeners took over
            try:
                listener.failed(error)
            except BaseException as e2:      # noqa: BLE001
                print(f"run {args.run_id}: could not record the end: {e2}", file=sys.stderr)
        if isinstance(error, Pruned):
            return 0
        if isinstance(error, RunGone) or (isinstance(error, (Cancelled, StoreError)) and removed()):
            print(f"run {args.run_id}: its row was removed from {store.where} while it ran; stopped",
                  file=sys.stderr)
            return EXIT_REMOVED
        if isinstance(error, (Cancelled, KeyboardInterrupt)):
            return EXIT_CANCELLED
        if isinstance(error, StoreError):     # one clear line, no traceback
            print(f"run {args.run_id}: failed: {error}", file=sys.stderr)
            return 1
        tb.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        return 1
    finally:
        if progress is not None:
            progress.stop()
        if heartbeat is not None:
            heartbeat.stop()
        store.close()


def sweep_listeners(store: Store, run: Run) -> list:
    """The listeners a run of a sweep adds (its pruning hook); none outside a pruning sweep.
    Without Optuna here the run trains unpruned and says which extra would prune it."""
    if run.sweep_id is None:
        return []
    try:
        from .study import prune_listener
    except ImportError:
        log.warning("run %d: its sweep may prune, but Optuna is not installed here (%s); training unpruned",
                    run.id, OPTUNA_EXTRA)
        return []
    listener = prune_listener(store, run)
    return [listener] if listener is not None else []


# --------------------------------------------------------------------------------------------
# the launcher


def visible_gpus(device: str) -> list[str]:
    """GPU ids runs may be spread over: CUDA_VISIBLE_DEVICES, else every CUDA device; none
    for CPU runs or a pinned ``cuda:N``."""
    if device not in ("auto", "cuda"):
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:                          # noqa: BLE001
        return []


def threads_per_run(jobs: int) -> int:
    """CPU threads each of ``jobs`` parallel runs gets: ``max(1, cores // jobs)``, so parallel
    runs do not oversubscribe the cores (two runs with two OpenMP threads each on two cores
    spin against each other: 2.4x slower in total than one after another)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):       # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


def assign_gpus(gpus: Sequence[str], busy: dict[str, int]) -> str | None:
    """The least busy GPU (ties: the first), or None without GPUs."""
    if not gpus:
        return None
    return min(gpus, key=lambda g: (busy.get(g, 0), list(gpus).index(g)))


def spawn(db_url: str, run_id: int, *, gpu: str | None = None, checkpoint: str | None = None,
          log_file: IO[bytes] | None = None, detach: bool = True, threads: int | None = None,
          gpu_shared_by: int = 1) -> subprocess.Popen:
    """Start the process of queued run ``run_id``. ``detach`` puts it in its own session, so a
    Ctrl-C in the terminal reaches only the launcher (which forwards SIGTERM).

    ``threads`` caps the run's torch / OpenMP / MKL threads (set in its environment, so they
    hold before torch starts), unless the user set ``OMP_NUM_THREADS`` themselves.
    ``gpu_shared_by`` > 1 tells the run that up to that many runs share its GPU (recorded
    in its device text)."""
    cmd = [sys.executable, "-m", "workbench.runner", str(run_id), "--db", db_url]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), KNI_THREADS=str(threads))
    if gpu_shared_by > 1:
        env["KNI_GPU_SHARED_BY"] = str(gpu_shared_by)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log_file or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
                            start_new_session=detach)


def signal_process(pid: int, start: str | None, sig: int) -> bool:
    """Send ``sig`` to ``pid`` only if it is still the process that started at ``start`` (None:
    not recorded, the pid is all there is). False if it is gone or another process now. On
    Linux through a pidfd, so the pid cannot change hands between the check and the signal."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):         # no pidfds here: check, then kill
        if start is not None and process_start(pid) not in (None, start):
            return False
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False
    try:
        if start is not None and process_start(pid) not in (None, start):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def cancel(store: Store, run_id: int) -> str:
    """Ask run ``run_id`` to stop: SIGTERM to its process (it records ``cancelled``); a queued
    run not started yet is marked cancelled; a run on another host is asked through its row
    (:meth:`~workbench.store.Store.request_cancel`). A running row whose process is gone, or whose pid
    now belongs to another process (a reboot), or that has shown no sign of life for
    :func:`~workbench.store.abandoned_seconds` without a recorded process start, is marked
    crashed and nothing is signalled. Returns what was done."""
    run = store.get(run_id)
    if run.status == QUEUED:
        if store.mark(run_id, CANCELLED, "cancelled before it started", only_if=(QUEUED,)):
            return f"run {run_id} cancelled before it started"
        run = store.get(run_id)               # it started meanwhile
    if run.status not in LIVE:
        return f"run {run_id} is {run.status}, nothing to cancel"
    now = utcnow()
    alive = owner_alive(run)
    if alive is None:                          # another host (a Ray node, another machine): no signal reaches it
        if is_abandoned(run, now):
            return _mark_crashed(store, run, now)
        if store.request_cancel(run_id):
            return (f"asked run {run_id} on {run.host} (pid {run.pid}) to stop: it ends as cancelled at its next "
                    f"heartbeat (within {HEARTBEAT_SECONDS:.0f} s)")
        return f"run {run_id} is {store.get(run_id).status}, nothing to cancel"
    if alive and run.pid_start is None and is_abandoned(run, now):
        alive = False                          # an unverifiable pid, silent for long: never signal it
    if alive and run.pid and signal_process(run.pid, run.pid_start, signal.SIGTERM):
        return f"sent SIGTERM to run {run_id} (pid {run.pid})"
    return _mark_crashed(store, run, now)


def _mark_crashed(store: Store, run: Run, now) -> str:
    reason = crash_reason(run, now)
    if store.mark_crashed(run, reason, now):
        return f"run {run.id} had crashed ({reason}); marked crashed, nothing signalled"
    return f"run {run.id} changed meanwhile ({store.get(run.id).status}); nothing signalled"


# --------------------------------------------------------------------------------------------
# executors: where the run processes execute (the Ray executor is workbench.executors.RayExecutor)


class ProcessHandle:
    """A run process started on this machine; what :class:`Launcher` needs of any executor's
    handle: ``poll()`` (ended?), ``stop(force)``, ``how()`` it ended, ``log_tail()``, ``close()``."""

    def __init__(self, proc: subprocess.Popen, log: IO[bytes] | None = None):
        self.proc, self.log = proc, log

    def poll(self) -> bool:
        return self.proc.poll() is not None

    def stop(self, force: bool = False) -> None:
        """SIGTERM (the run records ``cancelled``), or SIGKILL with ``force``."""
        _kill(self.proc, signal.SIGKILL if force else signal.SIGTERM)

    def how(self) -> str:
        rc = self.proc.returncode
        return f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}"

    def log_tail(self, limit: int = 2000) -> str:
        if self.log is None:
            return ""
        try:
            self.log.seek(0)
            data = self.log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return data[-limit:].strip()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


class LocalExecutor:
    """Each run in a child process of the launcher, on this machine (:func:`spawn`)."""

    name = "local"

    def start(self, db_url: str, run_id: int, *, gpu: str | None = None, checkpoint: str | None = None,
              threads: int | None = None, gpu_shared_by: int = 1) -> ProcessHandle:
        log = tempfile.TemporaryFile()
        return ProcessHandle(spawn(db_url, run_id, gpu=gpu, checkpoint=checkpoint, log_file=log, threads=threads,
                                   gpu_shared_by=gpu_shared_by), log)


@dataclass
class _Job:
    run_id: int
    handle: ProcessHandle | None = None      # or any executor's handle (same methods)
    gpu: str | None = None
    seen: int = 0                             # last epoch reported
    run: Run | None = None


@dataclass
class Launcher:
    """Run queued runs as child processes, ``jobs`` at a time, reporting through the database.

    ``executor`` starts each run's process: :class:`LocalExecutor` (a child of this process,
    the default) or :class:`workbench.executors.RayExecutor` (a Ray task on any node, running
    the same ``python -m workbench.runner``); the rest is the same for both.

    ``on_epoch(run, EpochResult)`` is called for every new epoch row and ``on_end(run,
    epochs)`` once per run after its end is stored (both in the launcher's thread). Call
    :meth:`run`; a SIGINT / SIGTERM to the launcher (or :meth:`request_stop`) forwards SIGTERM
    to the children and waits for them to record ``cancelled``.

    The database may fail under the launcher (locked, full): it then warns once, keeps polling
    its children, retries recording an end for at most ``patience`` seconds (not at all once a
    stop was requested) and otherwise reports the run in :attr:`problems` (and through
    ``on_problem(run_id, message)``), as it does a run whose row was removed.
    """

    store: Store
    jobs: int = 1
    gpus: Sequence[str] = ()
    executor: Any = field(default_factory=LocalExecutor)
    checkpoints: dict[int, str] = field(default_factory=dict)
    on_epoch: Callable[[Run, EpochResult], None] | None = None
    on_start: Callable[[Run], None] | None = None
    on_end: Callable[[Run, list[Epoch]], None] | None = None
    on_problem: Callable[[int, str], None] | None = None
    on_progress: Callable[[Run], None] | None = None     # every poll, with the fresh row of a running job
    poll: float = 0.3
    grace: float = 60.0                       # seconds a cancelled child gets to record its end
    patience: float = 30.0                    # seconds to retry recording an end the child did not
    stop_requested: int = 0
    problems: dict[int, str] = field(default_factory=dict)
    _store_error: str | None = None

    def request_stop(self) -> None:
        self.stop_requested += 1

    def _signal(self, signum: int, frame: object) -> None:
        self.request_stop()

    def run(self, run_ids: Sequence[int]) -> dict[int, str]:
        """Execute the queued runs; returns their final statuses (``removed`` for a run whose
        row vanished; the status the launcher concluded for an end it could not record)."""
        old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, self._signal)
        try:
            return self._loop(list(run_ids))
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    # -- internals ----------------------------------------------------------------------
    def _quiet(self, error: StoreError) -> None:
        """Warn about a database error once, not at every poll."""
        if str(error) != self._store_error:
            log.warning("%s (the launcher keeps going; this is not repeated)", error)
            self._store_error = str(error)

    def _problem(self, run_id: int, message: str) -> None:
        self.problems[run_id] = message
        if self.on_problem is not None:
            self.on_problem(run_id, message)

    def _start(self, job: _Job, busy: dict[str, int], n_runs: int) -> None:
        job.gpu = assign_gpus(self.gpus, busy)
        if job.gpu is not None:
            busy[job.gpu] = busy.get(job.gpu, 0) + 1
        parallel = max(1, min(self.jobs, n_runs))
        shared_by = -(-parallel // len(self.gpus)) if self.gpus else 1     # runs at a time per GPU
        job.handle = self.executor.start(self.store.url, job.run_id, gpu=job.gpu,
                                         checkpoint=self.checkpoints.get(job.run_id),
                                         threads=threads_per_run(parallel), gpu_shared_by=shared_by)

    def _report(self, job: _Job) -> None:
        if self.on_progress is not None:
            self.on_progress(self.store.get(job.run_id))
        if self.on_epoch is None:
            return
        if job.run is None:
            job.run = self.store.get(job.run_id)
        for e in self.store.epochs(job.run_id, after=job.seen):
            self.on_epoch(job.run, epoch_result(job.run.seed, e))
            job.seen = e.epoch

    def _log_tail(self, job: _Job, limit: int = 2000) -> str:
        return job.handle.log_tail(limit) if job.handle is not None else ""

    def _finish(self, job: _Job) -> str:
        """The child has exited: make sure its end is stored, report it. Never raises
        :class:`StoreError`: what cannot be recorded is reported as a problem."""
        how = job.handle.how() if job.handle is not None else "never started"
        try:
            return retry_write(lambda: self._record_end(job, how), patience=self.patience,
                               stop=lambda: bool(self.stop_requested))
        except StoreError as e:
            status = CANCELLED if self.stop_requested else FAILED
            self._problem(job.run_id, f"its process ended ({how}) but its end could not be recorded: {e}; the "
                                      f"database still says it is live (readers will show it crashed)")
            return status
        finally:
            if job.handle is not None:
                job.handle.close()

    def _record_end(self, job: _Job, how: str) -> str:
        if self.store.missing([job.run_id]):              # removed meanwhile (e.g. by hand)
            self._problem(job.run_id, f"its row was removed from {self.store.where} while it ran; its process "
                                      f"stopped ({how}); nothing of it is kept")
            return "removed"
        self._report(job)
        run = self.store.get(job.run_id)
        if run.status in LIVE:
            if self.stop_requested:
                self.store.mark(job.run_id, CANCELLED, f"cancelled; the process ended ({how}) before "
                                                       f"recording its end")
            else:
                tail = self._log_tail(job)
                reason = f"the run process ended ({how}) without recording an end"
                if tail:
                    reason += "; its last output:\n" + tail
                self.store.mark(job.run_id, CRASHED, reason)
            self._report(job)
            run = self.store.get(job.run_id)
        if self.on_end is not None:
            self.on_end(run, self.store.epochs(job.run_id))
        return run.status

    def _cancel_queued(self, job: _Job) -> str:
        """A run that never started, at a stop request: best effort, no waiting."""
        try:
            self.store.mark(job.run_id, CANCELLED, "cancelled before it started", only_if=(QUEUED,))
            run = self.store.get(job.run_id)
        except StoreError as e:
            self._problem(job.run_id, f"cancelled before it started, but that could not be recorded: {e}")
            return CANCELLED
        if self.on_end is not None:
            self.on_end(run, [])
        return run.status

    def _loop(self, run_ids: list[int]) -> dict[int, str]:
        n_runs = len(run_ids)
        pending = deque(_Job(i) for i in run_ids)
        active: list[_Job] = []
        statuses: dict[int, str] = {}
        busy: dict[str, int] = {}
        forwarded = 0
        deadline: float | None = None
        last_touch = time.monotonic()
        while pending or active:
            if self.stop_requested and forwarded < self.stop_requested:
                if not forwarded:             # first request: cancel the queue, SIGTERM the children
                    while pending:
                        job = pending.popleft()
                        statuses[job.run_id] = self._cancel_queued(job)
                    for job in active:
                        job.handle.stop()
                    deadline = time.monotonic() + self.grace
                else:                         # second request: stop waiting
                    for job in active:
                        job.handle.stop(force=True)
                forwarded = self.stop_requested
            if deadline is not None and time.monotonic() > deadline:
                for job in active:
                    job.handle.stop(force=True)
                deadline = None
            while pending and len(active) < max(1, self.jobs) and not self.stop_requested:
                job = pending.popleft()
                self._start(job, busy, n_runs)
                active.append(job)
                try:
                    job.run = self.store.get(job.run_id)
                except StoreError as e:       # removed or unreadable: its end says more
                    self._quiet(e)
                    continue
                if self.on_start is not None:
                    self.on_start(job.run)
            time.sleep(self.poll)
            for job in list(active):
                assert job.handle is not None
                if job.handle.poll():
                    active.remove(job)
                    if job.gpu is not None:
                        busy[job.gpu] -= 1
                    statuses[job.run_id] = self._finish(job)
                    continue
                try:
                    self._report(job)
                except StoreError as e:       # e.g. locked for longer than the busy timeout
                    self._quiet(e)
            if time.monotonic() - last_touch > HEARTBEAT_SECONDS:
                # queued rows are owned by this process: keep them from looking abandoned
                last_touch = time.monotonic()
                try:                          # read first: no write lock taken when none is queued
                    ids = [j.run_id for j in list(pending) + active]
                    queued = [r.id for r in self.store.runs(ids=ids, status=QUEUED)] if ids else []
                    if queued:
                        self.store.touch(queued, statuses=(QUEUED,))
                except StoreError as e:
                    self._quiet(e)
        return statuses


def _kill(proc: subprocess.Popen | None, sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    from workbench.runner import child_main as _child_main   # the importable module, not __main__
    sys.exit(_child_main())
