"""A sweep's Optuna studies, kept in the run database, and the pruning hook of a run process.

Why this design: the pruning decision must be made in the run process after each epoch (the
run stops there), by Optuna's own pruners (median, successive halving), over the results of
every other run of the sweep, which may run in other processes or on other machines. Optuna
keeps a study's state in a *storage*; its :class:`~optuna.storages.JournalStorage` replays an
append-only log of operations, and a log backend only has to append and read entries in one
total order. :class:`StoreJournal` is that backend over the run database's ``sweep_journal``
table (one numbered entry per operation, gap-free per sweep; :meth:`Store.append_journal`), so:

- one store holds everything: no second database file or server, the same migrations, and
  SQLite or PostgreSQL alike (what the run rows use, the studies use);
- the pruners' own state (successive halving's rungs) lives in the journal, exactly as Optuna
  keeps it; nothing of a pruner is re-implemented here;
- a run process that starts late, or on another machine, replays the journal and sees the
  same study.

Each sweep has up to two studies, both created by the process that starts the sweep:
``sweep-ID-prune`` (one trial per *run*, reporting its validation AUC after each epoch; a
completed run is told its validation AUC at its selected epoch, a pruned run *pruned*, a
failed or cancelled one *failed*) and ``sweep-ID-search`` (TPE: one trial per *point*, see
:mod:`workbench.sweep`).

A run reports epoch N as step N - 1 (Optuna counts steps from 0, as its examples do), so the
pruners' options read in epochs: ``n_warmup_steps: 2`` lets every run train 2 epochs before it
can be pruned, successive halving's ``min_resource: 2`` puts the first rung after epoch 2. A run
is never pruned after its last epoch (nothing is left to save: it completes). Which runs are
pruned depends on which runs have finished when a run asks (the order of the points and
``--jobs``); a run's own numbers never depend on it.

Pruning is advice: when the study cannot be read or written (a locked database past
:data:`PATIENCE` seconds, an Optuna error) the run logs a warning and trains on; it is never
pruned on an error.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend

from kni_core.errors import KniError

from .store import Run, Store, retry_write
from .sweep import Pruned, PruneSpec, SweepSpec, TpeSpec

log = logging.getLogger(__name__)

__all__ = ["StoreJournal", "storage", "study_name", "create_studies", "search_study", "prune_study",
           "PruneListener", "prune_listener", "PATIENCE"]

#: Seconds a journal write keeps retrying a locked or full database.
PATIENCE = 15.0

optuna.logging.set_verbosity(optuna.logging.WARNING)     # one line per trial is noise in run logs


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
    return f"sweep-{sweep_id}-{kind}"


def create_studies(store: Store, sweep_id: int, spec: SweepSpec) -> None:
    """Create the sweep's studies once, before any of its runs starts (no race between runs)."""
    st = storage(store, sweep_id)
    if spec.tpe is not None:
        optuna.create_study(study_name=study_name(sweep_id, "search"), storage=st, direction="maximize")
    if spec.prune is not None:
        optuna.create_study(study_name=study_name(sweep_id, "prune"), storage=st, direction="maximize")


def search_study(store: Store, sweep_id: int, tpe: TpeSpec) -> optuna.Study:
    """The TPE study of a sweep (ask-and-tell; the sampler seeded with ``tpe.seed``)."""
    sampler = optuna.samplers.TPESampler(seed=tpe.seed, n_startup_trials=tpe.n_startup_trials)
    return optuna.load_study(study_name=study_name(sweep_id, "search"), storage=storage(store, sweep_id),
                             sampler=sampler)


def prune_study(store: Store, sweep_id: int, prune: PruneSpec) -> optuna.Study:
    return optuna.load_study(study_name=study_name(sweep_id, "prune"), storage=storage(store, sweep_id),
                             pruner=prune.make())


class PruneListener:
    """A :class:`~workbench.execute.RunListener` that reports each epoch's validation AUC to
    the sweep's pruning study and raises :class:`~workbench.sweep.Pruned` when the pruner says
    so. Listed after the store's listener: the epoch is stored before the decision."""

    def __init__(self, store: Store, run: Run, prune: PruneSpec):
        self.store, self.run, self.prune = store, run, prune
        self.study: optuna.Study | None = None
        self.trial: optuna.Trial | None = None

    def _advice(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except (KniError, optuna.exceptions.OptunaError, ValueError, KeyError, OSError) as e:
            log.warning("run %d: pruning study: could not %s (%s); the run goes on unpruned", self.run.id, what, e)
            return None

    def started(self, start: Any) -> None:
        def begin() -> None:
            self.study = prune_study(self.store, self.run.sweep_id, self.prune)
            self.trial = self.study.ask()
            self.trial.set_user_attr("run_id", self.run.id)
        self._advice("join the study", begin)

    def epoch(self, result: Any) -> None:
        if self.trial is None:
            return
        trial = self.trial

        def decide() -> bool:
            trial.report(float(result.valid_auc), result.epoch - 1)     # Optuna counts steps from 0
            # after the last epoch there is nothing left to save: the run completes
            return result.epoch < self.run.max_epochs and trial.should_prune()
        if self._advice(f"report epoch {result.epoch}", decide):
            raise Pruned(f"pruned by the sweep's {self.prune.pruner} pruner after epoch {result.epoch} "
                         f"(valid AUC {result.valid_auc:.4f})")

    def finished(self, summary: Any) -> None:
        if self.trial is not None and self.study is not None:
            study, trial = self.study, self.trial
            self._advice("record the end", lambda: study.tell(trial, float(summary.best.valid_auc)))

    def failed(self, error: BaseException) -> None:
        if self.trial is None or self.study is None:
            return
        study, trial = self.study, self.trial
        state = optuna.trial.TrialState.PRUNED if isinstance(error, Pruned) else optuna.trial.TrialState.FAIL
        self._advice("record the end", lambda: study.tell(trial, state=state))


def prune_listener(store: Store, run: Run) -> PruneListener | None:
    """The pruning listener of ``run`` when its sweep prunes (None otherwise, or when the
    sweep cannot be read: then the run trains unpruned, with a warning)."""
    if run.sweep_id is None:
        return None
    try:
        spec = SweepSpec.from_dict(store.get_sweep(run.sweep_id).spec_dict)
    except (KniError, KeyError, ValueError, TypeError) as e:
        log.warning("run %d: cannot read sweep %s (%s); no pruning", run.id, run.sweep_id, e)
        return None
    return PruneListener(store, run, spec.prune) if spec.prune is not None else None
