"""What the workbench knows about the run database, kept fresh by cheap polls.

:class:`RunData` caches the run rows and the epochs of the runs some screen *watches*
(the run detail, the compared runs). A poll has two halves:

- :meth:`RunData.fetch` runs in a worker thread and only reads: the live runs (``queued``,
  ``running``), the rows that were live at the previous poll (to see them end), every row
  only on a full refresh (every few seconds: new finished rows, deletions by ``kni rm``),
  and for each watched run only the epoch rows newer than the last one cached. Every
  :data:`CRASH_CHECK_SECONDS` it also lets :meth:`Store.refresh_crashed` mark runs whose
  process vanished (the one write the store allows readers).
- :meth:`RunData.apply` runs on the UI thread, merges the result and says what changed.

Every text a run or sweep holds (names, notes, tags, errors, paths) reaches the views with its
control characters made visible (:func:`shown`): whatever a note holds, it cannot clear the
screen or retitle the terminal.

No UI code here: the module is tested without a terminal.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable

from ..present import visible
from ..store.errors import StoreError
from ..store.records import Epoch, Run, Sweep, utcnow
from ..store.repository import Store
from ..store.statuses import LIVE

#: Seconds between two full re-reads of the runs table.
FULL_SECONDS = 5.0
#: Seconds between two crash checks (refresh_crashed).
CRASH_CHECK_SECONDS = 10.0


def shown(record: Run | Sweep) -> Run | Sweep:
    """The record as the views show it: every text field with its control characters made
    visible (the store keeps the text as written)."""
    json_fields = ("config_json", "sweep_params", "spec")       # JSON escapes its control characters
    texts = {f.name: visible(v) for f in dataclasses.fields(record)
             if isinstance(v := getattr(record, f.name), str) and f.name not in json_fields}
    if isinstance(record, Run):
        texts.update(tags=tuple(map(visible, record.tags)), group_tags=tuple(map(visible, record.group_tags)))
    return dataclasses.replace(record, **texts)


def _signature(run: Run) -> tuple:
    return (run.status, run.n_epochs, run.best_epoch, run.best_valid_auc, run.best_test_auc, run.device,
            run.started_at, run.finished_at, run.heartbeat_at, run.error, run.pid, run.progress, run.note,
            tuple(run.tags), tuple(run.group_tags), run.group_note, run.peak_rss_mb, run.gpu_name)


@dataclass(frozen=True)
class PollRequest:
    full: bool
    crash_check: bool
    live: tuple[int, ...]                    # ids live at the previous poll
    watched: tuple[tuple[int, int, int], ...]   # (run id, last cached epoch, epochs the row counted)


@dataclass
class PollResult:
    request: PollRequest
    runs: list[Run] = field(default_factory=list)
    epochs: dict[int, list[Epoch]] = field(default_factory=dict)
    sweeps: list[Sweep] | None = None        # read on a full refresh
    error: str | None = None


@dataclass
class Change:
    """What a poll changed: ``runs`` (new or modified rows), ``removed`` and ``epochs``
    (watched runs with new epoch rows)."""

    runs: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)
    epochs: set[int] = field(default_factory=set)
    error: str | None = None

    def __bool__(self) -> bool:
        return bool(self.runs or self.removed or self.epochs)

    def touches(self, ids: Iterable[int]) -> bool:
        ids = set(ids)
        return bool(ids & (self.runs | self.removed | self.epochs))


class RunData:
    """The cache; see the module docstring. ``clock`` gives "now" (UTC) for elapsed times
    and effective statuses (tests pass a fixed one)."""

    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None):
        self.store = store
        self.clock = clock or utcnow
        self.runs: dict[int, Run] = {}
        self.epochs: dict[int, list[Epoch]] = {}
        self.sweeps: dict[int, Sweep] = {}
        self._watch: dict[int, int] = {}
        self._last_full = -math.inf
        self._last_crash = -math.inf
        self.error: str | None = None

    # -- polling ------------------------------------------------------------------------
    def request(self, force_full: bool = False) -> PollRequest:
        now = time.monotonic()
        full = force_full or now - self._last_full >= FULL_SECONDS
        crash = now - self._last_crash >= CRASH_CHECK_SECONDS
        if full:
            self._last_full = now
        if crash:
            self._last_crash = now
        live = tuple(i for i, r in self.runs.items() if r.status in LIVE)
        watched = tuple((i, self._last_epoch(i), self.runs[i].n_epochs if i in self.runs else -1)
                        for i in self._watch)
        return PollRequest(full, crash, live, watched)

    def fetch(self, req: PollRequest) -> PollResult:
        """Read what ``req`` asks for (thread-safe: touches no cached state)."""
        res = PollResult(req)
        try:
            if req.crash_check:
                try:
                    self.store.refresh_crashed(now=self.clock())   # the same "now" as status()
                except StoreError:
                    pass                      # read-only or locked: effective_status still shows it
            if req.full:
                res.runs = self.store.runs()
                res.sweeps = [shown(w) for w in self.store.sweeps()]
            else:
                res.runs = self.store.runs(status=LIVE)
                seen = {r.id for r in res.runs}
                ended = [i for i in req.live if i not in seen]
                if ended:
                    res.runs += self.store.runs(ids=ended)
            counts = {r.id: r.n_epochs for r in res.runs}
            for run_id, last, known in req.watched:
                n = counts.get(run_id, known)
                if n > last:
                    new = self.store.epochs(run_id, after=last)
                    if new:
                        res.epochs[run_id] = new
        except StoreError as e:
            res.error = visible(str(e))
        res.runs = [shown(r) for r in res.runs]
        return res

    def apply(self, res: PollResult) -> Change:
        """Merge a fetched result (UI thread)."""
        change = Change(error=res.error)
        self.error = res.error
        if res.error is not None:
            return change
        fetched = {r.id: r for r in res.runs}
        if res.sweeps is not None:
            self.sweeps = {w.id: w for w in res.sweeps}
        if res.request.full:
            change.removed = set(self.runs) - set(fetched)
            for i in change.removed:
                del self.runs[i]
                self.epochs.pop(i, None)
        else:
            # a row that was live and is now absent was deleted
            for i in res.request.live:
                if i not in fetched and i in self.runs:
                    change.removed.add(i)
                    del self.runs[i]
                    self.epochs.pop(i, None)
        for i, run in fetched.items():
            old = self.runs.get(i)
            if old is None or _signature(old) != _signature(run):
                change.runs.add(i)
            self.runs[i] = run
        for i, new in res.epochs.items():
            if i not in self._watch:
                continue
            cached = self.epochs.setdefault(i, [])
            last = cached[-1].epoch if cached else 0
            fresh = [e for e in new if e.epoch > last]
            if fresh:
                cached.extend(fresh)
                change.epochs.add(i)
        return change

    def poll_now(self, force_full: bool = False) -> Change:
        """A synchronous poll (start-up, tests)."""
        return self.apply(self.fetch(self.request(force_full)))

    # -- watching epochs ------------------------------------------------------------------
    def watch(self, ids: Iterable[int]) -> None:
        """Keep the epochs of ``ids`` cached (loads the missing ones now, in one query)."""
        missing = []
        for i in ids:
            self._watch[i] = self._watch.get(i, 0) + 1
            if i not in self.epochs:
                missing.append(i)
        if missing:
            try:
                for i, rows in self.store.epochs_of(missing).items():
                    self.epochs[i] = rows
            except StoreError as e:
                self.error = str(e)

    def unwatch(self, ids: Iterable[int]) -> None:
        for i in ids:
            n = self._watch.get(i, 0) - 1
            if n <= 0:
                self._watch.pop(i, None)
                self.epochs.pop(i, None)
            else:
                self._watch[i] = n

    def _last_epoch(self, run_id: int) -> int:
        rows = self.epochs.get(run_id)
        return rows[-1].epoch if rows else 0

    # -- views --------------------------------------------------------------------------
    def status(self, run: Run) -> str:
        """The status to show: a live row whose process is gone shows as crashed."""
        try:
            return Store.effective_status(run, now=self.clock())
        except Exception:                      # noqa: BLE001 - never break a repaint over it
            return run.status

    def live(self) -> list[Run]:
        return [r for r in self.runs.values() if self.status(r) in LIVE]

    def sorted_runs(self) -> list[Run]:
        return [self.runs[i] for i in sorted(self.runs)]
