"""Run processes forked from a warm interpreter instead of started cold.

A cold run process spends about 6 s of one core importing torch (with ``torch._dynamo``, which
the optimizer pulls in), scikit-learn and the run code before its first batch: most of a small
run, and of a sweep of them. Python's *forkserver* (``multiprocessing``, the start method
Python 3.14 makes the default on Linux) is a fresh single-threaded interpreter that imports
those modules once and forks each run process from there. The forked process is set up as
:func:`workbench.runs.launcher.spawn` sets up a cold one: a session of its own, the
environment it was given, its share of the cores, its output in the launcher's log file, the
same ``child_main`` arguments; and it keeps the code the forkserver loaded, which a run
records when it is queued (:mod:`workbench.runs.provenance`).

Only runs on a machine without a GPU start warm (:func:`workbench.runs.launcher.starts_warm`).
CUDA must not be touched before a fork and reads ``CUDA_VISIBLE_DEVICES`` once, when a process
first loads it: a fresh interpreter guarantees both without trusting every preloaded import.
``KNI_WARM_START=0`` turns warm starts off.

The forkserver ends with its launcher; its run processes go on, as cold ones do. The resource
tracker that ``multiprocessing`` starts beside it keeps the launcher's stdout and stderr open
until they end, which a pipe reading a killed launcher's output sees as a later end of file.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
from typing import IO, Any, Sequence

#: What a run process imports before training; the forkserver imports them once.
PRELOAD = ["workbench.runs.child", "workbench.runs.execute", "workbench.runs.progress",
           "workbench.runs.checkpoints", "workbench.runs.pruning", "kni_core.train", "kni_core.resume",
           "torch.optim", "torch._dynamo", "sklearn.metrics"]

_context: Any = None


def enabled() -> bool:
    """Warm starts are not turned off (``KNI_WARM_START=0``); the launcher also asks for a
    machine without a GPU (:func:`workbench.runs.launcher.starts_warm`)."""
    return os.environ.get("KNI_WARM_START", "1") != "0"


def _forkserver() -> Any:
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        from multiprocessing import forkserver
        forkserver.ensure_running()
        _context = ctx
    return _context


class WarmProcess:
    """A forked run process, with the part of ``subprocess.Popen`` that its callers use."""

    def __init__(self, process: Any, argv: Sequence[str]):
        self._process = process
        self.pid: int = process.pid
        self.args = ["workbench.runs.child", *argv]

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return None if self._process.is_alive() else self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.is_alive():
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def spawn_warm(argv: Sequence[str], env: dict[str, str], log_file: IO[bytes] | None) -> WarmProcess:
    """Fork ``child_main(argv)`` from the forkserver with ``env`` as its environment and its
    output in ``log_file`` (discarded without one)."""
    out = _Inherited(log_file.fileno()) if log_file is not None else None
    process = _forkserver().Process(target=_child, args=(list(argv), env, out), daemon=False)
    process.start()
    # multiprocessing joins the children it started when the launcher exits; a run process
    # outlives its launcher, as a cold one does (the run records its own end)
    multiprocessing.process._children.discard(process)
    return WarmProcess(process, argv)


class _Inherited:
    """A file descriptor of the launcher that the forked process receives (``multiprocessing``
    passes it through the forkserver's socket while it pickles the process's arguments), as a
    cold child inherits its stdout."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self) -> tuple:
        from multiprocessing import reduction
        return _received, (reduction.DupFd(self.fd),)


def _received(dup: Any) -> int:
    return dup.detach()


def _child(argv: list[str], env: dict[str, str], out: int | None) -> None:
    """The forked run process: what a cold one gets from its exec, then ``child_main``."""
    os.setsid()                               # as spawn's start_new_session: a Ctrl-C reaches the launcher only
    os.environ.clear()
    os.environ.update(env)
    fd = out if out is not None else os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)         # PYTHONUNBUFFERED came too late to apply
    threads = env.get("KNI_THREADS")
    if threads:                               # a cold process's BLAS read OMP_NUM_THREADS at its exec
        from threadpoolctl import threadpool_limits
        threadpool_limits(int(threads))
    from .child import child_main
    sys.exit(child_main(argv))
