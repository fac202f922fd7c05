"""Resuming a run in its own row: the earlier attempts, and the row put back in the queue.

A resumed run keeps its id, group, seed and epochs; only its process changes. The attempt that
ended (its host, pid, start, end, status, error and the epochs it reached) is kept in
``attempts``; the run's row then describes the attempt under way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update

from .errors import StoreError
from .records import BEST_FIELDS, Attempt, Owner, Run, stopped_at, utcnow
from .schema import AttemptRow, EpochRow, RunRow, TopKRow
from .statuses import CANCELLED, COMPLETED, CRASHED, FAILED, QUEUED

#: The statuses a run may be resumed from.
RESUMABLE = (CRASHED, CANCELLED, FAILED)


class Attempts:
    """The resume methods of :class:`~.repository.Store` (which provides the sessions)."""

    def requeue_to_resume(self, run: Run, from_epoch: int, best: Any | None, new: Any | None = None) -> None:
        """Put ``run`` (as just read, ended) back in the queue to continue after ``from_epoch``:
        its ended attempt recorded, the epochs (and top-N rows) after ``from_epoch`` dropped
        (the resumed process computes them again, identically), its selection set to ``best``
        (the selected epoch of the state it continues from). With ``new``
        (:class:`workbench.runs.resume.NewConfig`) the run takes that configuration; one with
        more epochs may be a completed run, whose top-N rows of its end (computed again at its
        new end) go.
        Compare and set on the status: a run that changed meanwhile is left alone (StoreError)."""
        now = utcnow()
        extends = new is not None and new.epochs > run.max_epochs
        allowed = RESUMABLE + ((COMPLETED,) if extends else ())
        longer = {} if new is None else {"config_json": new.config_json, "config_hash": new.config_hash,
                                         "max_epochs": new.epochs}
        with self._write() as s:
            changed = s.execute(update(RunRow).where(RunRow.id == run.id, RunRow.status == run.status,
                                                     RunRow.status.in_(allowed))
                                .values(**longer, status=QUEUED, pid=None, pid_start=None, host=None, started_at=None,
                                        finished_at=None, error=None, traceback=None, progress=None,
                                        heartbeat_at=now, cancel_requested_at=None, stopped_early=False,
                                        best_epoch=best.epoch if best is not None else None,
                                        **{f"best_{f}": getattr(best, f) if best is not None else None
                                           for f in BEST_FIELDS}))
            if changed.rowcount != 1:
                raise StoreError(f"run {run.id}: it changed while being resumed (now "
                                 f"{s.scalar(select(RunRow.status).where(RunRow.id == run.id)) or 'removed'}); "
                                 "nothing resumed")
            number = (s.scalar(select(func.max(AttemptRow.attempt)).where(AttemptRow.run_id == run.id)) or 0) + 1
            s.add(AttemptRow(run_id=run.id, attempt=number, host=run.host, pid=run.pid, started_at=run.started_at,
                             ended_at=stopped_at(run), status=run.status, error=run.error,
                             epochs=run.n_epochs))
            s.execute(delete(EpochRow).where(EpochRow.run_id == run.id, EpochRow.epoch > from_epoch))
            s.execute(delete(TopKRow).where(TopKRow.run_id == run.id, TopKRow.epoch > from_epoch))
            if extends and run.best_epoch is not None and not _scheduled_topk(run, run.best_epoch):
                s.execute(delete(TopKRow).where(TopKRow.run_id == run.id, TopKRow.epoch == run.best_epoch))

    def attempts(self, run: Run) -> list[Attempt]:
        """Every attempt of ``run``, oldest first; the last is the current one (its row)."""
        earlier = self.ended_attempts(run_id=run.id).get(run.id, [])
        return earlier + [current_attempt(run, len(earlier) + 1)]

    def ended_attempts(self, *, run_id: int | None = None, sweep: int | None = None) -> dict[int, list[Attempt]]:
        """Run id -> its ended attempts (a resumed run's earlier ones), oldest first: one query
        for one run, a sweep's runs or (neither given) every run (the table is small)."""
        q = select(AttemptRow).order_by(AttemptRow.run_id, AttemptRow.attempt)
        if run_id is not None:
            q = q.where(AttemptRow.run_id == run_id)
        if sweep is not None:
            q = q.join(RunRow, RunRow.id == AttemptRow.run_id).where(RunRow.sweep_id == sweep)
        out: dict[int, list[Attempt]] = {}
        with self._read() as s:
            for r in s.scalars(q):
                out.setdefault(r.run_id, []).append(
                    Attempt(r.attempt, r.host, r.pid, r.started_at, r.ended_at, r.status, r.error, r.epochs))
        return out

    def record_last_state(self, run_id: int, size: int, seconds: float, owner: Owner | None = None) -> None:
        """The size and write time of the run's latest last-epoch state (into ``owner``'s row only)."""
        with self._write() as s:
            if s.execute(update(RunRow).where(*self._owned(run_id, owner))
                         .values(last_state_bytes=size, last_state_seconds=seconds)).rowcount == 0:
                self._not_ours(s, run_id, owner)


def current_attempt(run: Run, number: int) -> Attempt:
    """The attempt under way or last ended, as ``run``'s row describes it."""
    return Attempt(number, run.host, run.pid, run.started_at, stopped_at(run), run.status, run.error, run.n_epochs)


def _scheduled_topk(run: Run, epoch: int) -> bool:
    """Whether ``epoch``'s top-N rows came from ``eval.topk.every`` (kept) rather than from the
    run's end (computed again at the selected epoch of the longer run)."""
    every = ((run.config.get("eval") or {}).get("topk") or {}).get("every") or 0
    return bool(every) and epoch % every == 0
