"""Progress inside an epoch: what the run process measures, stores and readers show.

The run process feeds :class:`ProgressTracker` from the Trainer's progress hook (``phase``
``train`` / ``valid`` / ``test``, batches or evaluation chunks ``done`` of ``total``) and
stores :meth:`ProgressTracker.snapshot` as JSON in ``runs.progress`` at most once a second
(from a thread, so the training loop never waits for the database). Readers (``kni run``,
``kni runs``, the TUI) turn the stored JSON into text with :func:`describe` and
:func:`eta_text`, counting the seconds since it was written off the estimates.

Estimates: the current phase ends at its measured rate; the phases still to come in this
epoch take what they took in the previous epoch; every remaining epoch takes the mean
duration of the finished ones. Early stopping can only end a run sooner, so the run's
estimate is an upper bound ("at most"). During the first epoch the evaluation phases have
not been timed yet, so only the current phase has an estimate.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

PHASES = ("train", "valid", "test")


class ProgressTracker:
    """Turns ``(phase, done, total)`` calls into a snapshot with rates and estimates.

    Cheap enough to be called after every batch (a clock read and a few assignments);
    ``clock`` is injectable for tests."""

    def __init__(self, max_epochs: int, first_epoch: int = 1, clock: Callable[[], float] = time.monotonic):
        self.max_epochs = max_epochs
        self.clock = clock
        self.epoch = first_epoch
        self.phase: str | None = None
        self.done = 0
        self.total = 0
        self.phase_start = 0.0
        self.last = 0.0                            # when the latest step ended
        self.epoch_start: float | None = None
        self.durations: dict[str, float] = {}      # phase -> seconds, in the last finished epoch
        self.current: dict[str, float] = {}        # phase -> seconds, in this epoch so far
        self.epoch_seconds: list[float] = []
        self.version = 0                           # bumped on every change (the writer skips repeats)

    def start(self) -> None:
        """The clock of the first epoch starts now (after the data is loaded)."""
        self.epoch_start = self.last = self.clock()

    def update(self, phase: str, done: int, total: int) -> None:
        now = self.clock()
        if self.epoch_start is None:
            self.start()
        if phase != self.phase:
            # a phase starts when the previous one's last step ended (or the epoch began)
            if self.phase is not None:
                self.current[self.phase] = self.last - self.phase_start
                self.phase_start = self.last
            else:
                self.phase_start = self.epoch_start
            self.phase = phase
        self.done, self.total, self.last = done, total, now
        self.version += 1

    def epoch_done(self, epoch: int) -> None:
        """Epoch ``epoch`` is committed: remember how long it and its phases took."""
        now = self.clock()
        if self.phase is not None:
            self.current[self.phase] = self.last - self.phase_start
        if self.epoch_start is not None:
            self.epoch_seconds.append(now - self.epoch_start)
        self.durations = dict(self.current)
        self.current = {}
        self.epoch, self.phase, self.done, self.total = epoch + 1, None, 0, 0
        self.epoch_start = self.last = now
        self.version += 1

    def snapshot(self) -> dict[str, Any]:
        """The JSON stored in ``runs.progress``."""
        now = self.clock()
        rate = phase_left = epoch_left = run_left = mean = None
        if self.phase is not None:
            elapsed = now - self.phase_start
            if self.done > 0 and elapsed > 0:
                rate = self.done / elapsed
                phase_left = (self.total - self.done) / rate
        elif self.durations:                       # between epochs: nothing started yet
            phase_left = 0.0
        if phase_left is not None:
            later = PHASES[PHASES.index(self.phase) + 1:] if self.phase in PHASES else PHASES
            if all(p in self.durations for p in later):
                epoch_left = phase_left + sum(self.durations[p] for p in later)
        if self.epoch_seconds:
            mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        if epoch_left is not None and mean is not None:
            run_left = epoch_left + max(0, self.max_epochs - self.epoch) * mean
        return {"epoch": self.epoch, "epochs": self.max_epochs, "phase": self.phase, "done": self.done,
                "total": self.total, "rate": _round(rate), "phase_left": _round(phase_left),
                "epoch_left": _round(epoch_left), "run_left": _round(run_left), "epoch_mean": _round(mean),
                "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}


def _round(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 3)


@dataclass(frozen=True)
class Progress:
    """A stored snapshot, as read back."""

    epoch: int
    epochs: int
    phase: str | None
    done: int
    total: int
    rate: float | None
    phase_left: float | None
    epoch_left: float | None
    run_left: float | None
    epoch_mean: float | None
    at: datetime | None

    def fraction(self, now: datetime | None = None) -> float:
        """How far the current epoch is, 0..1: by time when earlier epochs were timed, else
        counting the three phases as equal thirds."""
        left = self.left("epoch_left", now)
        if left is not None and self.epoch_mean:
            return min(1.0, max(0.0, 1.0 - left / self.epoch_mean))
        if self.phase not in PHASES or not self.total:
            return 0.0
        k = PHASES.index(self.phase)
        return min(1.0, (k + self.done / self.total) / len(PHASES))

    def left(self, which: str, now: datetime | None = None) -> float | None:
        """``phase_left`` / ``epoch_left`` / ``run_left`` minus the seconds since it was written."""
        value = getattr(self, which)
        if value is None:
            return None
        if self.at is not None:
            value -= max(0.0, ((now or datetime.now(timezone.utc)) - self.at).total_seconds())
        return max(0.0, value)


def parse(text: str | None) -> Progress | None:
    """The :class:`Progress` stored in ``runs.progress`` (None when absent or unreadable)."""
    if not text:
        return None
    try:
        d = json.loads(text)
        at = datetime.fromisoformat(d["at"]) if d.get("at") else None
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        epochs = int(d["epochs"])
        return Progress(min(int(d["epoch"]), epochs), epochs, d.get("phase"), int(d.get("done") or 0),
                        int(d.get("total") or 0), d.get("rate"), d.get("phase_left"), d.get("epoch_left"),
                        d.get("run_left"), d.get("epoch_mean"), at)
    except (ValueError, TypeError, KeyError):
        return None


def clock_text(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h14m`` (``-`` when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def describe(p: Progress) -> str:
    """``train 40/79 12.3/s`` (the phase, its batches or evaluation chunks, its rate)."""
    if p.phase is None:
        return "starting"
    rate = f" {p.rate:.1f}/s" if p.rate else ""
    return f"{p.phase} {p.done}/{p.total}{rate}"


def eta_text(p: Progress, now: datetime | None = None) -> str:
    """The run's estimate (``≤4m10s``, an upper bound: early stopping may end it sooner), or
    during the first epoch the current phase's (``train 12s``)."""
    run = p.left("run_left", now)
    if run is not None:
        return f"≤{clock_text(run)}"
    epoch = p.left("epoch_left", now)
    if epoch is not None:
        return f"epoch {clock_text(epoch)}"
    phase = p.left("phase_left", now)
    return f"{p.phase} {clock_text(phase)}" if phase is not None and p.phase else "-"


def progress_cell(run: Any, status: str, now: datetime | None = None) -> str:
    """``3/20 51% ≤4m05s`` for a running run (its epoch, how far into it, the estimate of the
    time left), ``5/20`` (epochs stored) otherwise."""
    p = parse(run.progress) if status == "running" else None
    if p is None:
        return f"{run.n_epochs}/{run.max_epochs}"
    return f"{p.epoch}/{p.epochs} {100 * p.fraction(now):.0f}% {eta_text(p, now)}"


# --------------------------------------------------------------------------------------------
# the run process's side: a listener that times epochs and a thread that writes the snapshot


class ProgressWriter:
    """Writes the tracker's snapshot and the resource use to the run's row at most once per
    ``every`` seconds, from its own thread: a slow or locked database never stalls training."""

    def __init__(self, store: Any, run_id: int, tracker: ProgressTracker, every: float = 1.0, owner: Any = None):
        import threading
        self.store, self.run_id, self.tracker, self.every = store, run_id, tracker, every
        self.owner = owner                         # the claim's Owner: writes only into its row
        self.device: str | None = None
        self._written = -1
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"progress-{run_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.every + 5)

    def _loop(self) -> None:
        while not self._halt.wait(self.every):
            if self.tracker.version != self._written:
                self.write()

    def write(self, progress: bool = True) -> None:
        """Write now (also called at the end, before the run's final status)."""
        import logging

        from ..store.errors import RunGone, StoreError
        from .resources import sample
        with self._lock:
            version = self.tracker.version
            try:
                self.store.record_progress(self.run_id, self.tracker.snapshot() if progress else None,
                                           sample(self.device), owner=self.owner)
                self._written = version
            except RunGone:                  # removed or another attempt's: the run process stops
                self._halt.set()
            except StoreError as e:          # locked for a while: the next second tries again
                logging.getLogger(__name__).warning("progress of run %d: %s", self.run_id, e)


class ProgressListener:
    """A :class:`~workbench.runs.execute.RunListener` (placed before the one that writes the end)
    that times the epochs and records the resources at the start and before the end."""

    def __init__(self, tracker: ProgressTracker, writer: ProgressWriter):
        self.tracker, self.writer = tracker, writer

    def started(self, start: Any) -> None:
        self.tracker.start()
        self.writer.device = start.device
        self.writer.write()

    def epoch(self, result: Any) -> None:
        self.tracker.epoch_done(result.epoch)

    def finished(self, summary: Any) -> None:
        self.writer.write(progress=False)

    def failed(self, error: BaseException) -> None:
        try:
            self.writer.write(progress=False)
        except BaseException:                # noqa: BLE001 - the end must still be recorded
            pass
