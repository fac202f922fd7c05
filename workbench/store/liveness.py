"""Whether a live run's process still lives: heartbeats, pids and process start times.

A live row (queued or running) names the process that owns it (``pid`` on ``host``) and
carries a heartbeat. A pid alone proves nothing after a reboot (pids are reused), so the
owner's start time is recorded with it (``pid_start``: the kernel's boot id and the start
tick of ``/proc/PID/stat``). The rules that turn a silent row into *crashed* are in
docs/storage.md (Crash detection); they are applied here, to plain records.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from .errors import env_seconds
from .records import Run, utcnow
from .statuses import CRASHED, LIVE

#: Seconds between two heartbeats of a run process.
HEARTBEAT_SECONDS = 5.0
#: Default age after which a heartbeat counts as stale (see :func:`stale_seconds`).
STALE_SECONDS = 30.0
#: A heartbeat older than this many stale thresholds means crashed, whatever the pid says.
ABANDONED_FACTOR = 10
#: ... and never less than this many seconds (12 missed heartbeats).
ABANDONED_MIN_SECONDS = 12 * HEARTBEAT_SECONDS
#: A heartbeat dated further ahead than this is clock skew (another host's clock, or this one
#: set back), not a fresh beat: it proves nothing.
SKEW_SECONDS = 60.0


def this_host() -> str:
    return socket.gethostname()


def stale_seconds() -> float:
    """Heartbeat age after which a live run whose process is gone counts as crashed."""
    return env_seconds("KNI_STALE_SECONDS", STALE_SECONDS)


def abandoned_seconds(stale: float | None = None) -> float:
    """Heartbeat age after which a live run counts as crashed even if its pid seems alive."""
    stale = stale_seconds() if stale is None else stale
    return max(ABANDONED_FACTOR * stale, ABANDONED_MIN_SECONDS)


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                      # exists, owned by someone else
    except OSError:
        return False
    fields = _proc_stat(pid)             # a killed but unreaped child is a zombie: dead
    return fields is None or fields[0] != "Z"


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` from field 3 (state) on; None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=1)
def _boot_id() -> str:
    """What tells this boot from the others (the kernel's random boot id; else the boot time)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        pass
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return "btime-" + line.split()[1]
    except OSError:
        pass
    return "unknown-boot"


def process_start(pid: int | None) -> str | None:
    """``BOOT_ID:TICKS`` of live process ``pid`` (``TICKS``: /proc/PID/stat field 22, its start
    in clock ticks since boot); None where unknown (no /proc, no such process, a zombie).
    With the pid it names one process across reboots and pid reuse."""
    if not pid or pid <= 0:
        return None
    fields = _proc_stat(pid)
    if fields is None or len(fields) < 20 or fields[0] == "Z":
        return None
    return f"{_boot_id()}:{fields[19]}"


def process_matches(pid: int | None, start: str | None) -> bool:
    """Whether ``pid`` on this host is alive and, when ``start`` is known, the process that
    started then (not another one that got the pid after a reboot)."""
    if not pid_alive(pid):
        return False
    if start is None:
        return True                      # recorded where /proc was missing: the pid is all we have
    now = process_start(pid)
    return now is None or now == start   # None: /proc hides it (hidepid); trust the pid


# --------------------------------------------------------------------------------------------
# the rules, on records


def _age(run: Run, now: datetime) -> float:
    ref = run.heartbeat_at or run.started_at or run.created_at
    return (now - ref).total_seconds() if ref is not None else float("inf")


def _heartbeat_damaged(run: Run) -> bool:
    return any(note.startswith("heartbeat_at:") for note in run.damage)


def owner_alive(run: Run) -> bool | None:
    """Whether the process owning ``run``'s row lives: True/False on this host (pid and, where
    recorded, start time), None for a row of another host (cannot tell from here)."""
    if run.host != this_host():
        return None
    return process_matches(run.pid, run.pid_start)


def is_abandoned(run: Run, now: datetime | None = None, stale: float | None = None) -> bool:
    """A live row without a heartbeat for :func:`abandoned_seconds`: crashed whatever its pid says."""
    return run.status in LIVE and _age(run, now or utcnow()) >= abandoned_seconds(stale)


def looks_dead(run: Run, now: datetime, stale: float) -> bool:
    """Whether a live row counts as crashed now (its heartbeat stale and its owner gone, or
    abandoned). A heartbeat in the future says nothing of the owner: on this host its pid
    decides; from another host, within :data:`SKEW_SECONDS` it counts as fresh, beyond as stale.
    A damaged heartbeat counts as stale."""
    if run.status not in LIVE:
        return False
    age = _age(run, now)
    if age < 0:
        if age >= -SKEW_SECONDS and run.host != this_host():
            return False
        return owner_alive(run) is not True
    if age < stale and not _heartbeat_damaged(run):
        return False
    if is_abandoned(run, now, stale):
        return True
    return owner_alive(run) is not True          # gone here, or stale on another host


def crash_reason(run: Run, now: datetime, stale: float | None = None) -> str:
    """Why a live row counts as crashed (stored as its error)."""
    age = _age(run, now)
    owner = f"pid {run.pid} on {run.host}"
    if age < 0:
        skew = f"its last heartbeat is dated {-age:.0f} s in the future (clock skew or a clock set back)"
        if run.host != this_host():
            return (f"{skew}, more than {SKEW_SECONDS:.0f} s: it proves nothing of {owner}; no end was recorded "
                    f"(if the run still lives it revives at its next heartbeat)")
        return f"the process that owned it ({owner}) is gone and {skew}; no end was recorded"
    if _heartbeat_damaged(run) and not is_abandoned(run, now, stale):
        return f"its heartbeat is damaged (unreadable) and its process ({owner}) is gone; no end was recorded"
    if is_abandoned(run, now, stale):
        alive = owner_alive(run)
        what = (f"it ran on {run.host}" if alive is None
                else f"pid {run.pid} exists but has not written for that long (stopped, or another process "
                     f"that got the pid)" if alive
                else f"its pid {run.pid} now belongs to another process" if pid_alive(run.pid)
                else f"its process (pid {run.pid}) is gone")
        return (f"no heartbeat for {age:.0f} s (more than {abandoned_seconds(stale):.0f} s: frozen or gone) and "
                f"{what}; no end was recorded (killed, out of memory, power cut or reboot)")
    if run.host == this_host() and pid_alive(run.pid):
        return (f"the process that owned it ({owner}) is gone: that pid now belongs to another process "
                f"(last heartbeat {age:.0f} s ago); no end was recorded (reboot or kill -9)")
    return (f"the process ({owner}) is gone and its last heartbeat was {age:.0f} s ago; no end was recorded "
            f"(killed, out of memory or power cut)")


def effective_status(run: Run, stale: float | None = None, now: datetime | None = None) -> str:
    """The status a reader should show: a live row whose process is gone is crashed."""
    if run.status in LIVE and looks_dead(run, now or utcnow(), stale_seconds() if stale is None else stale):
        return CRASHED
    return run.status
