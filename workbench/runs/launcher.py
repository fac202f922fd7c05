"""The launcher: runs queued rows to their end, ``jobs`` at a time, each in its own process
(a child here, or a Ray task), watching them through the database.

The launcher never waits on the database for long: it reports a run end it cannot record
(``Launcher.problems``) and always obeys Ctrl-C (a second one stops waiting for the children).
A child that dies without recording an end is marked ``crashed`` with its last output.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Sequence

from kni_core.errors import KniError
from kni_core.results import EpochResult

from ..store.errors import StoreError, retry_write
from ..store.liveness import HEARTBEAT_SECONDS
from ..store.records import AttemptKey, Epoch, Run
from ..store.repository import Store
from ..store.statuses import CANCELLED, CRASHED, FAILED, LIVE, QUEUED
from .rows import epoch_result

log = logging.getLogger(__name__)

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


def starts_warm(gpu: str | None) -> bool:
    """Whether a run given ``gpu`` forks from the warm interpreter (:mod:`.warm_start`): only on a
    machine without a GPU, where no CUDA state can meet a fork."""
    from .warm_start import enabled
    return gpu is None and enabled() and not visible_gpus("auto")


def spawn(db_url: str, run_id: int, *, gpu: str | None = None, checkpoint: str | None = None,
          log_file: IO[bytes] | None = None, detach: bool = True, threads: int | None = None,
          gpu_shared_by: int = 1) -> subprocess.Popen:
    """Start the process of queued run ``run_id``. ``detach`` puts it in its own session, so a
    Ctrl-C in the terminal reaches only the launcher (which forwards SIGTERM).

    ``threads`` caps the run's torch / OpenMP / MKL threads (set in its environment, so they
    hold before torch starts), unless the user set ``OMP_NUM_THREADS`` themselves.
    ``gpu_shared_by`` > 1 tells the run that up to that many runs share its GPU (recorded
    in its device text). On a machine without a GPU the process is forked from a warm
    interpreter (:mod:`.warm_start`: the same process, without 6 s of imports)."""
    cmd = [sys.executable, "-m", "workbench.runs.child", str(run_id), "--db", db_url]
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
    if detach and starts_warm(gpu):
        from .warm_start import spawn_warm
        return spawn_warm(cmd[3:], env, log_file)
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log_file or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
                            start_new_session=detach)


class ProcessHandle:
    """A run process started on this machine; what :class:`Launcher` needs of any executor's
    handle: ``poll()`` (ended?), ``stop(force)``, ``how()`` it ended, ``log_tail()``, ``close()``."""

    def __init__(self, proc: subprocess.Popen, log: IO[bytes] | None = None):
        self.proc, self.log = proc, log

    def poll(self) -> bool:
        return self.proc.poll() is not None

    def stop(self, force: bool = False, signum: int = signal.SIGTERM) -> None:
        """``signum`` (the run records ``cancelled by`` its name), or SIGKILL with ``force``."""
        _kill(self.proc, signal.SIGKILL if force else signum)

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
    attempt: AttemptKey | None = None         # the attempt it started: it never ends another one


@dataclass
class Launcher:
    """Run queued runs as child processes, ``jobs`` at a time, reporting through the database.

    ``executor`` starts each run's process: :class:`LocalExecutor` (a child of this process,
    the default) or :class:`workbench.runs.ray_executor.RayExecutor` (a Ray task on any node, running
    the same ``python -m workbench.runs.child``); the rest is the same for both.

    ``on_epoch(run, EpochResult)`` is called for every new epoch row and ``on_end(run,
    epochs)`` once per run after its end is stored (both in the launcher's thread).

    With ``retries``, a run that *crashed* (its process or its node died without recording an
    end: a Ray node lost, the OOM killer) is resumed from its last-epoch state, at most that
    many times (:mod:`workbench.runs.resume`, as ``kni resume``; on Ray, on whichever node has
    room), ``on_retry(run_id, message)`` saying so. A failed run (an error in training) is not
    retried: it would fail again. Call
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
    on_retry: Callable[[int, str], None] | None = None
    retries: int = 0
    poll: float = 0.3
    grace: float = 60.0                       # seconds a cancelled child gets to record its end
    patience: float = 30.0                    # seconds to retry recording an end the child did not
    stop_requested: int = 0
    stop_signal: int = signal.SIGTERM         # what the children get: SIGINT after a Ctrl-C
    problems: dict[int, str] = field(default_factory=dict)
    _store_error: str | None = None
    _tries: dict[int, int] = field(default_factory=dict)

    def request_stop(self) -> None:
        self.stop_requested += 1

    def _signal(self, signum: int, frame: object) -> None:
        if not self.stop_requested:           # the runs then record "cancelled by SIGINT", not SIGTERM
            self.stop_signal = signum
        self.request_stop()

    def run(self, run_ids: Sequence[int]) -> dict[int, str]:
        """Execute the queued runs; returns their final statuses (``removed`` for a run whose
        row vanished, ``superseded`` for one another attempt took over; the status the launcher
        concluded for an end it could not record)."""
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
        if job.attempt is not None and self.store.attempt_key(job.run_id) != job.attempt:
            self._problem(job.run_id, f"another attempt took its row over while its process was stopped or cut off "
                                      f"(kni resume, or its id reused after kni rm); its process stopped ({how}) "
                                      f"without writing more, and the run is left to that attempt")
            return "superseded"
        self._report(job)
        run = self.store.get(job.run_id)
        if run.status in LIVE:
            if self.stop_requested:
                self.store.mark(job.run_id, CANCELLED, f"cancelled; the process ended ({how}) before "
                                                       f"recording its end", attempt=job.attempt)
            else:
                tail = self._log_tail(job)
                reason = f"the run process ended ({how}) without recording an end"
                if tail:                      # below the first line, which summaries show alone
                    reason += "\nits last output:\n" + tail
                self.store.mark(job.run_id, CRASHED, reason, attempt=job.attempt)
            self._report(job)
            run = self.store.get(job.run_id)
        if self.on_end is not None:
            self.on_end(run, self.store.epochs(job.run_id))
        return run.status

    def _retry(self, job: _Job) -> _Job | None:
        """The crashed run back in the queue after its last-epoch state, if retries are left
        (None otherwise, or when it cannot resume: a problem says why)."""
        tries = self._tries.get(job.run_id, 0)
        if self.stop_requested or tries >= self.retries:
            return None
        from .resume import plan
        try:
            p = plan(self.store, job.run_id)
            self.store.requeue_to_resume(p.run, p.from_epoch, p.best)
        except KniError as e:
            self._problem(job.run_id, f"crashed, and not retried: {e}")
            return None
        self._tries[job.run_id] = tries + 1
        message = (f"crashed; retry {tries + 1} of {self.retries}: "
                   + (f"continues after epoch {p.from_epoch}" if p.from_epoch else "starts again from epoch 1"))
        log.info("run %d %s", job.run_id, message)
        if self.on_retry is not None:
            self.on_retry(job.run_id, message)
        return _Job(job.run_id, seen=p.from_epoch)

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
                        job.handle.stop(signum=self.stop_signal)
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
                try:                          # before its process can start: the attempt it is to run
                    job.attempt = self.store.attempt_key(job.run_id)
                except StoreError as e:
                    self._quiet(e)
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
                    status = self._finish(job)
                    again = self._retry(job) if status == CRASHED else None
                    if again is not None:
                        pending.append(again)
                        continue
                    statuses[job.run_id] = status
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
