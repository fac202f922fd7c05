"""Executors beyond this machine: each run as a Ray task (``kni run --executor ray``).

The local executor (:class:`workbench.runs.launcher.LocalExecutor`) starts each run's process as a
child of the launcher. :class:`RayExecutor` submits one Ray task per run instead, asking Ray
for ``num_cpus`` (the run's threads) and ``num_gpus`` (1 for a CUDA run), so a local Ray
instance or a cluster places the runs on its nodes.

Why a subprocess inside the task, and not ``child_main`` called in the Ray worker: the task
starts ``python -m workbench.runs.child RUN_ID --db URL``, the very process the local executor
starts. So everything the run lifecycle rests on holds unchanged: the run's own pid and its
start time on its host (a Ray worker is a long-lived process that runs many tasks; its pid
would not name one run), SIGTERM -> ``cancelled`` with the epochs kept (signal handlers
can only be installed in a main thread), a fresh interpreter per run (no CUDA state or torch
thread settings left over from the previous task in the worker), its memory returned at exit.
The task itself only waits for the process, forwards a cancel and reports how it ended.

Cancelling: ``ray.cancel`` raises ``KeyboardInterrupt`` in the task, which sends SIGTERM to the
run process and waits for it to record ``cancelled``; a forced cancel kills the worker. The run
process asks the kernel to SIGKILL it when the worker dies (``PR_SET_PDEATHSIG``), so a dead
node or worker never leaves a run training unsupervised: its launcher reports the task's
failure and marks the run ``crashed``; without a launcher, the heartbeat goes stale and any
reader sees it crashed. ``kni cancel`` from another machine reaches the run through its row.

``import ray`` happens only here, and only when a Ray executor is used.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from kni_core.errors import KniError

from ..store.records import EXECUTORS

__all__ = ["RAY_EXTRA", "ExecutorError", "RayExecutor", "RayHandle", "ray_available", "make_executor",
           "EXECUTORS", "cores"]

#: What installs Ray.
RAY_EXTRA = 'pip install "kni-workbench[ray]"'
#: Seconds a cancelled run process gets to record its end before it is killed.
CANCEL_GRACE = 60.0


class ExecutorError(KniError):
    """An executor cannot be used (Ray missing, no GPU in the cluster, a pinned GPU...)."""


def ray_available() -> bool:
    """Whether Ray is installed (without importing it: importing Ray takes seconds)."""
    import importlib.util
    return importlib.util.find_spec("ray") is not None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed ({e}); {RAY_EXTRA} "
                            f"installs it") from None
    return ray


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# inside the Ray worker


def _die_with_parent() -> Any:
    """A function to run in the run process between fork and exec that makes the kernel
    SIGKILL it when the Ray worker dies (Linux ``PR_SET_PDEATHSIG``); None elsewhere (the
    heartbeat still tells). libc is looked up here, before the fork."""
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def in_child() -> None:
        prctl(1, signal.SIGKILL)              # PR_SET_PDEATHSIG
        if os.getppid() != parent:            # the worker died before the line above
            os._exit(1)
    return in_child


def _stop_child(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(grace)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass


def run_task(db_url: str, run_id: int, checkpoint: str | None, threads: int, grace: float = CANCEL_GRACE) -> dict:
    """The body of a run's Ray task: execute ``python -m workbench.runs.child`` and wait for it.

    Returns ``{"returncode", "host", "pid", "node", "log"}`` (the tail of its output). A cancel
    (``KeyboardInterrupt`` from ``ray.cancel``) stops the run process with SIGTERM first."""
    cmd = [sys.executable, "-m", "workbench.runs.child", str(run_id), "--db", db_url]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    env = dict(os.environ)                    # CUDA_VISIBLE_DEVICES: the GPU Ray gave this task
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), KNI_THREADS=str(threads),
               PYTHONUNBUFFERED="1")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent())
        try:
            while proc.poll() is None:
                time.sleep(0.2)
        except BaseException:                 # ray.cancel: KeyboardInterrupt
            _stop_child(proc, grace)
            raise
        log.seek(0)
        tail = log.read().decode("utf-8", "replace")[-2000:].strip()
    try:
        import ray
        node = ray.get_runtime_context().get_node_id()
    except Exception:                         # noqa: BLE001 - informative only
        node = None
    return {"returncode": proc.returncode, "host": socket.gethostname(), "pid": proc.pid, "node": node,
            "log": tail}


# --------------------------------------------------------------------------------------------
# in the launcher


class RayHandle:
    """One run's Ray task, seen by :class:`workbench.runs.launcher.Launcher` like a local process."""

    def __init__(self, ray: Any, ref: Any, run_id: int):
        self.ray, self.ref, self.run_id = ray, ref, run_id
        self.result: dict | None = None
        self.failure: str | None = None
        self.cancelled = False

    def poll(self) -> bool:
        if self.result is not None or self.failure is not None:
            return True
        ready, _ = self.ray.wait([self.ref], timeout=0)
        if not ready:
            return False
        exc = self.ray.exceptions
        try:
            self.result = self.ray.get(self.ref)
        except exc.TaskCancelledError:
            self.failure = "its Ray task was cancelled"
        except exc.RayError as e:             # the node or worker died, the object was lost ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self.failure = f"its Ray task failed: {type(e).__name__}" + (f": {first}" if first else "")
        return True

    def stop(self, force: bool = False, signum: int = 0) -> None:
        """Cancel the task: the run process gets SIGTERM (records ``cancelled``; ``signum`` is not
        Ray's to forward); ``force`` kills the worker (and so the run process)."""
        self.cancelled = True
        try:
            self.ray.cancel(self.ref, force=force)
        except Exception:                     # noqa: BLE001 - finished meanwhile, or already cancelled
            pass

    def how(self) -> str:
        if self.result is not None:
            rc = self.result.get("returncode")
            where = f" on {self.result.get('host')}"
            return (f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}") + where
        return self.failure or "its Ray task ended"

    def log_tail(self, limit: int = 2000) -> str:
        return (self.result or {}).get("log", "")[-limit:]

    def close(self) -> None:
        pass


class RayExecutor:
    """Each run as a Ray task. Use it as a context manager: it connects to ``address`` (or
    ``RAY_ADDRESS``), or starts a local Ray instance that it shuts down at the end; when Ray
    is already initialised in this process, it uses that connection and leaves it open.

    ``cpus_per_run`` is what each task asks for and the threads its run uses; ``device`` the
    runs' device (``cuda`` asks for one GPU; ``auto`` one GPU when the cluster has any)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus_per_run: int = 1, device: str = "cpu",
                 grace: float = CANCEL_GRACE, init_kwargs: dict | None = None):
        if device.startswith("cuda:"):
            raise ExecutorError(f"device {device} names a GPU of this machine; with --executor ray give "
                                f"--device cuda (Ray assigns each run a GPU) or auto")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus_per_run = max(1, int(cpus_per_run))
        self.device = device
        self.grace = grace
        self.init_kwargs = init_kwargs or {}
        self.ray: Any = None
        self.num_gpus = 0
        self._owned = False
        self._remote: Any = None

    @property
    def started_locally(self) -> bool:
        """Whether this executor started the Ray instance it uses (no address given)."""
        return self._owned and self.address is None

    def __enter__(self) -> "RayExecutor":
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            kwargs.update(self.init_kwargs)
            try:
                # "local": a new instance even when `ray start` left one on this machine
                ray.init(address=self.address or "local", **kwargs)
            except Exception as e:            # noqa: BLE001 - a wrong address, a cluster that is down ...
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
                raise ExecutorError(f"cannot start or reach {where}: {type(e).__name__}: {e}") from None
            self._owned = True
        self.ray = ray
        try:                                  # a task no node can hold would wait forever: say so now
            nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
            gpus = max((float(n.get("GPU", 0)) for n in nodes), default=0.0)
            cpus = max((float(n.get("CPU", 0)) for n in nodes), default=0.0)
            if self.device == "cuda" and gpus < 1:
                raise ExecutorError("--device cuda, but no node of the Ray cluster has a GPU (ray status lists "
                                    "its resources); use --device cpu or auto")
            if self.cpus_per_run > cpus:
                raise ExecutorError(f"each run asks Ray for {self.cpus_per_run} CPUs, but the largest node of the "
                                    f"cluster has {cpus:g}; ask for fewer (--ray-cpus)")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.num_gpus = 1 if self.device == "cuda" or (self.device == "auto" and gpus >= 1) else 0
        self._remote = ray.remote(run_task)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned and self.ray is not None:
            self.ray.shutdown()
        self._owned = False

    def describe(self) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
        return (f"{where}, each run a task asking for {self.cpus_per_run} CPU(s)"
                + (f" and {self.num_gpus} GPU" if self.num_gpus else ""))

    def start(self, db_url: str, run_id: int, *, gpu: str | None = None, checkpoint: str | None = None,
              threads: int | None = None, gpu_shared_by: int = 1) -> RayHandle:
        """Submit run ``run_id``'s task (``gpu``, ``threads`` and ``gpu_shared_by`` are the local
        executor's: Ray assigns GPUs, and a task's threads are its ``cpus_per_run``)."""
        if self._remote is None:
            raise ExecutorError("RayExecutor.start outside its with block")
        task = self._remote.options(num_cpus=self.cpus_per_run, num_gpus=self.num_gpus,
                                    max_retries=0,      # the row is claimed once: a retry could not claim it
                                    name=f"kni run {run_id}")
        return RayHandle(self.ray, task.remote(db_url, run_id, checkpoint, self.cpus_per_run, self.grace), run_id)


def make_executor(name: str, *, address: str | None = None, cpus_per_run: int = 1, device: str = "cpu") -> Any:
    """The executor called ``name`` (``local`` or ``ray``); a Ray one must be entered (``with``)."""
    if name == "local":
        from .launcher import LocalExecutor
        return LocalExecutor()
    if name == "ray":
        _import_ray()                          # the missing extra is reported before anything is queued
        return RayExecutor(address, cpus_per_run=cpus_per_run, device=device)
    raise ExecutorError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {name!r}")
