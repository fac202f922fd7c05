"""The sweeps of :class:`~.repository.Store`: their rows and their Optuna journals."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Iterable, Sequence

from sqlalchemy import func, inspect, select, update
from sqlalchemy.exc import DBAPIError

from .engine import explain
from .errors import StoreError
from .records import Sweep, storable, utcnow
from .schema import SweepLog, SweepRow

SWEEPS = SweepRow.__table__


class SweepRecords:
    """The sweep methods of :class:`~.repository.Store` (which provides the sessions)."""

    def create_sweep(self, *, name: str, recipe_text: str, method: str, spec: dict, seeds: Sequence[int],
                     planned: int, prune: str | None = None, recipe_path: str | None = None) -> int:
        """Insert a sweep (its runs are created with :meth:`create_run` and its id)."""
        with self._write() as s:
            # the spec's key order is kept: a TPE search asks its space's keys in that order
            sweep = SweepRow(name=name, recipe_path=recipe_path, recipe_text=recipe_text, method=method,
                          spec=json.dumps(spec), seeds=json.dumps(list(seeds)),
                          planned=planned, prune=prune, created_at=utcnow())
            s.add(sweep)
            s.flush()
            return sweep.id

    # -- one driver at a time: kni resume --sweep claims the sweep ------------------------
    def claim_sweep(self, sweep_id: int, take_over: bool = False) -> None:
        """Claim the right to drive sweep ``sweep_id`` for this process (``kni resume --sweep``:
        two resumers would each ask and store the points the search goes on to). Refused
        (StoreError naming the holder) while another process holds it: one on this host that
        is alive, or one on another host (which cannot be checked from here) unless
        ``take_over``. Released by :meth:`release_sweep`; a dead holder's claim is taken."""
        from .liveness import process_matches, process_start, this_host
        from .schema import Meta
        key, me = _claim_key(sweep_id), {"pid": os.getpid(), "host": this_host(),
                                         "pid_start": process_start(os.getpid()), "since": utcnow().isoformat()}
        try:
            with self._write() as s:
                row = s.get(Meta, key)
                if row is not None:
                    held = _read_claim(row.value)
                    mine = held.get("host") == me["host"]
                    if mine and held.get("pid") == me["pid"]:
                        return
                    alive = process_matches(held.get("pid"), held.get("pid_start")) if mine else not take_over
                    if alive:
                        raise StoreError(f"sweep {sweep_id}: already being resumed by pid {held.get('pid')} on "
                                         f"{held.get('host')} (since {held.get('since', '?')}); nothing resumed"
                                         + ("" if mine else "; if that process is gone, kni resume --sweep "
                                            f"{sweep_id} --take-over"))
                    s.delete(row)
                    s.flush()
                s.add(Meta(key=key, value=json.dumps(me)))
        except StoreError as e:
            if "unique" in str(e).lower() or "duplicate key" in str(e).lower():       # a claim raced ours
                raise StoreError(f"sweep {sweep_id}: another process claimed it a moment ago; nothing resumed") \
                    from None
            raise

    def release_sweep(self, sweep_id: int) -> None:
        """Give up this process's claim on the sweep (nothing when another holds it)."""
        from .liveness import this_host
        from .schema import Meta
        with self._write() as s:
            row = s.get(Meta, _claim_key(sweep_id))
            held = _read_claim(row.value) if row is not None else {}
            if (held.get("pid"), held.get("host")) == (os.getpid(), this_host()):
                s.delete(row)

    def note_invalid_point(self, sweep_id: int, number: int) -> None:
        """Record that the search asked point ``number`` of the sweep and the recipe refused it
        (it has no runs, yet it was asked: the sweep is not missing it)."""
        from .schema import Meta
        key = f"sweep-invalid:{sweep_id}"
        with self._write() as s:
            row = s.get(Meta, key)
            points = set(_read_list(row.value)) if row is not None else set()
            points.add(int(number))
            if row is None:
                s.add(Meta(key=key, value=json.dumps(sorted(points))))
            else:
                row.value = json.dumps(sorted(points))

    def invalid_points(self, sweep_id: int) -> set[int]:
        """The points of the sweep its search asked that were no valid configuration."""
        from .schema import Meta
        with self._read() as s:
            row = s.get(Meta, f"sweep-invalid:{sweep_id}")
        return set(_read_list(row.value)) if row is not None else set()

    def finish_sweep(self, sweep_id: int) -> None:
        """Record that the process driving the sweep has ended (whatever its runs did)."""
        with self._write() as s:
            s.execute(update(SweepRow).where(SweepRow.id == sweep_id).values(finished_at=utcnow()))

    def _has_sweeps(self) -> bool:
        """Whether the layout has the sweeps tables (a read-only store may read an older one)."""
        if self.writer is not None:
            return True                         # writers upgrade on open
        with self.reader.connect() as conn:
            return "sweeps" in inspect(conn).get_table_names()

    def sweeps(self, ids: Iterable[int] | None = None) -> list[Sweep]:
        """Sweeps by id (every one by default), oldest first; none in a layout without them."""
        try:
            if not self._has_sweeps():
                return []
            q = select(SWEEPS).order_by(SWEEPS.c.id)
            if ids is not None:
                q = q.where(SWEEPS.c.id.in_(storable(ids)))
            with self._read() as s:
                return [Sweep(**row) for row in s.execute(q).mappings()]
        except (DBAPIError, sqlite3.Error) as e:
            raise explain(e, self.where) from None

    def get_sweep(self, sweep_id: int) -> Sweep:
        """The sweep ``sweep_id``; StoreError if there is none."""
        found = self.sweeps(ids=[sweep_id])
        if not found:
            known = ", ".join(str(w.id) for w in self.sweeps()[-10:])
            raise StoreError(f"no sweep with id {sweep_id} in {self.where}"
                             + (f" (sweeps: {known}; kni sweeps lists them)" if known else " (it holds no sweep)"))
        return found[0]

    def append_journal(self, sweep_id: int, logs: Sequence[dict]) -> None:
        """Append Optuna journal operations to a sweep's journal, numbered without gaps.

        Each append takes the next numbers in one transaction; two writers that pick the same
        number collide on the primary key and the loser retries, so a reader never sees a
        later operation before an earlier one (on PostgreSQL as on SQLite)."""
        if not logs:
            return
        blobs = [json.dumps(log, separators=(",", ":")) for log in logs]
        for attempt in range(50):
            try:
                with self._write() as s:
                    top = s.scalar(select(func.max(SweepLog.seq)).where(SweepLog.sweep_id == sweep_id))
                    start = 0 if top is None else top + 1
                    s.add_all(SweepLog(sweep_id=sweep_id, seq=start + i, log=b) for i, b in enumerate(blobs))
                return
            except StoreError as e:
                if "unique" not in str(e).lower() and "duplicate" not in str(e).lower() or attempt == 49:
                    raise
                time.sleep(0.01 * (attempt + 1))

    def read_journal(self, sweep_id: int, start: int = 0) -> list[dict]:
        """A sweep's journal operations numbered ``start`` and later, in order, up to the first gap."""
        out: list[dict] = []
        with self._read() as s:
            for seq, blob in s.execute(select(SweepLog.seq, SweepLog.log)
                                       .where(SweepLog.sweep_id == sweep_id, SweepLog.seq >= start)
                                       .order_by(SweepLog.seq)):
                if seq != start + len(out):
                    break
                out.append(json.loads(blob))
        return out


def _claim_key(sweep_id: int) -> str:
    return f"sweep-driver:{sweep_id}"


def _read_claim(value: str) -> dict:
    try:
        held = json.loads(value)
    except ValueError:
        return {}
    return held if isinstance(held, dict) else {}


def _read_list(value: str) -> list[int]:
    try:
        items = json.loads(value)
    except ValueError:
        return []
    return [int(i) for i in items if isinstance(i, int)] if isinstance(items, list) else []
