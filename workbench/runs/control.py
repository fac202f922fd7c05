"""Stopping a run from outside: SIGTERM to its process on this host (only if it is still the
process that started then), a request through its row on another host, or - when its
process is gone - the crash recorded instead."""

from __future__ import annotations

import os
import signal

from ..store.liveness import (
    HEARTBEAT_SECONDS,
    crash_reason,
    is_abandoned,
    owner_alive,
    process_start,
)
from ..store.records import Run, utcnow
from ..store.repository import Store
from ..store.statuses import CANCELLED, LIVE, QUEUED


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
    (:meth:`~workbench.store.repository.Store.request_cancel`). A running row whose process is gone, or whose pid
    now belongs to another process (a reboot), or that has shown no sign of life for
    :func:`~workbench.store.liveness.abandoned_seconds` without a recorded process start, is marked
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
