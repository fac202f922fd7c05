"""Optuna's journal of a sweep's studies, kept in the run database's ``sweep_journal`` table.

Optuna's :class:`~optuna.storages.JournalStorage` replays an append-only log of operations; a
log backend only has to append and read entries in one total order. :class:`StoreJournal` is
that backend over the store (one numbered entry per operation, gap-free per sweep:
:meth:`Store.append_journal`), so one store holds the runs and the studies alike, on SQLite or
PostgreSQL, and a run process on another machine replays the same study (docs/sweeps.md).
Imports Optuna, an optional extra: only sweeps that search or prune import this module.
"""

from __future__ import annotations

from typing import Any, Iterable

from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend

from .errors import retry_write
from .repository import Store

#: Seconds a journal write keeps retrying a locked or full database.
PATIENCE = 15.0


class StoreJournal(BaseJournalBackend):
    """Optuna's journal of sweep ``sweep_id``, in the store's ``sweep_journal`` table."""

    def __init__(self, store: Store, sweep_id: int):
        self.store, self.sweep_id = store, sweep_id

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return self.store.read_journal(self.sweep_id, log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        retry_write(lambda: self.store.append_journal(self.sweep_id, logs), patience=PATIENCE)


def storage(store: Store, sweep_id: int) -> JournalStorage:
    return JournalStorage(StoreJournal(store, sweep_id))


def study_name(sweep_id: int, kind: str) -> str:
    """``sweep-ID-search`` (TPE, one trial per point) or ``sweep-ID-prune`` (one trial per run)."""
    return f"sweep-{sweep_id}-{kind}"
