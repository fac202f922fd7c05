"""What a run process does besides training: it writes its own rows (one commit per epoch,
retried while the database is locked or full), beats its heartbeat from a thread, and turns
SIGTERM / SIGINT into ``cancelled`` without cutting an epoch's commit in half.

The lifecycle (``queued -> running -> completed | failed | cancelled | crashed | pruned``) and
what each end keeps are described in docs/cli.md (Statuses) and docs/storage.md.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import traceback as tb
from contextlib import contextmanager
from typing import Callable, Iterator

from kni_core.results import EpochResult, FitSummary

from ..store.errors import RunGone, StoreError, retry_write, write_patience
from ..store.liveness import HEARTBEAT_SECONDS
from ..store.records import Owner
from ..store.repository import Store
from ..store.statuses import CANCELLED, COMPLETED, FAILED, PRUNED
from .errors import Cancelled, Pruned

log = logging.getLogger(__name__)

#: Seconds a run process keeps trying to record its end after a cancel or a database failure.
END_PATIENCE = 10.0





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
    """A :class:`~workbench.runs.execute.RunListener` that writes the run's rows: one commit per epoch.

    ``owner`` (the claim's :class:`~workbench.store.records.Owner`) goes with every write, so
    only the attempt that owns the row writes it. Once a write (or the heartbeat) finds the row
    gone or another attempt's, ``gone`` holds why and nothing more is written."""

    def __init__(self, store: Store, run_id: int, select_on: str, guard: SignalGuard | None = None,
                 owner: Owner | None = None):
        self.store = store
        self.run_id = run_id
        self.select_on = select_on
        self.guard = guard or SignalGuard()
        self.owner = owner
        self.best: EpochResult | None = None
        self.ended = False
        self.gone: RunGone | None = None

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

        try:
            result = retry_write(attempt, patience=patience, on_wait=waiting)
        except RunGone as e:
            self.gone = self.gone or e
            raise
        if warned:
            log.warning("run %d: %s stored after retrying", self.run_id, what)
        return result

    def started(self, start) -> None:       # RunStart
        device = start.device
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if device.startswith("cuda") and visible:
            device = f"{device} (CUDA_VISIBLE_DEVICES={visible})"
        from .provenance import environment
        facts = environment(start.data)
        self._write("the start", lambda: self.store.record_start(self.run_id, device, start.data_stats, facts,
                                                                 owner=self.owner))
        if start.data is not None:
            self._keep_floor(start)

    def _keep_floor(self, start) -> None:
        """Store the popularity floor of the run's split, the first time a run of it starts
        (comparisons show every group against it; computing it takes milliseconds here)."""
        from kni_core.floor import floor_key, popularity_floor

        from ..analysis.floors import has_buckets
        from ..analysis.provenance import same_files
        from .rows import dataset_label
        key = floor_key(start.config.to_dict()["dataset"])
        try:
            stored = self.store.floors().get(key)
            if stored is None or (not has_buckets(stored["metrics"], start.config.eval.strata)
                                  and same_files(stored["metrics"].get("files"), start.data.sources)):
                self.store.save_floor(key, dataset_label(start.config),
                                      popularity_floor(start.data, [start.config.eval.strata]))
        except StoreError as e:               # advice for comparisons, never a reason to fail the run
            log.warning("run %d: could not store the floor of its split (%s)", self.run_id, e)

    def epoch(self, result: EpochResult) -> None:
        # the same rule as Trainer.fit: strictly better on the selection split
        if self.best is None or result.metric(self.select_on, "auc") > self.best.metric(self.select_on, "auc"):
            self.best = result
        best = self.best
        self._write(f"epoch {result.epoch}", lambda: self.store.add_epoch(self.run_id, result, best, owner=self.owner))

    def finished(self, summary: FitSummary) -> None:
        self._write("the end", lambda: self.store.finish(self.run_id, COMPLETED, best=summary.best,
                                                         stopped_early=summary.stopped_early, owner=self.owner))
        self.ended = True
        self.guard.fired = True               # a signal from now on changes nothing: ignore it

    def failed(self, error: BaseException) -> None:
        self.guard.fired = True              # no further Cancelled while recording the end
        self.ended = True
        if isinstance(error, RunGone) or self.gone is not None:    # nothing left that is ours to record into
            return
        if isinstance(error, Pruned):        # a normal end: the pruner's reason is kept as the note
            best = self.best
            self._write("the pruning", lambda: self.store.finish(self.run_id, PRUNED, error=str(error), best=best,
                                                                 owner=self.owner),
                        patience=END_PATIENCE)
            return
        if isinstance(error, (Cancelled, KeyboardInterrupt)):
            how = error.args[0] if isinstance(error, Cancelled) and error.args else "SIGINT"
            self._write("the cancellation", lambda: self.store.finish(self.run_id, CANCELLED,
                                                                      error=f"cancelled by {how}", owner=self.owner),
                        patience=END_PATIENCE)
        else:
            text = "".join(tb.format_exception(type(error), error, error.__traceback__))
            message = f"{type(error).__name__}: {error}"
            # the database just failed for a while: do not wait as long again
            patience = END_PATIENCE if isinstance(error, StoreError) else None
            self._write("the failure", lambda: self.store.finish(self.run_id, FAILED, error=message,
                                                                 traceback=text, owner=self.owner), patience=patience)


class Heartbeat(threading.Thread):
    """Refreshes the heartbeat of ``owner``'s row every ``every`` seconds; calls
    ``on_gone(error)`` once if the row disappears or another attempt owns it
    (:class:`~workbench.store.errors.RunGone`), ``on_cancel`` once when ``kni cancel`` asked
    through the row (a run on another host than the one cancelling it). Failures are logged
    once per outage (the next beat retries)."""

    def __init__(self, store: Store, run_id: int, every: float = HEARTBEAT_SECONDS,
                 on_gone: Callable[[RunGone], None] | None = None, on_cancel: Callable[[], None] | None = None,
                 owner: Owner | None = None):
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.store, self.run_id, self.every, self.on_gone = store, run_id, every, on_gone
        self.on_cancel, self.owner = on_cancel, owner
        self.halt = threading.Event()

    def run(self) -> None:
        failing = False
        while not self.halt.wait(self.every):
            try:
                beat = self.store.heartbeat(self.run_id, owner=self.owner)
                if beat and self.on_cancel is not None and self.store.cancel_requested(self.run_id) \
                        and not self.halt.is_set():
                    self.on_cancel()
                    return
            except RunGone as e:              # removed, or superseded: nothing of it is ours any more
                if self.on_gone is not None and not self.halt.is_set():
                    self.on_gone(e)
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
