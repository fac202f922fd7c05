"""The pruning hook of a run of a pruning sweep: after each stored epoch it reports the
validation AUC to the sweep's pruning study and stops the run when the pruner says so.

The decision is made in the run process (the run stops there) by Optuna's own pruners, over
the results of every other run of the sweep, which may run in other processes or machines:
the study lives in the run database (:mod:`workbench.store.journal`). Epoch N is reported as
step N - 1 (Optuna counts from 0), so the pruners' options read in epochs; a run is never
pruned after its last epoch. Pruning is advice: when the study cannot be read or written the
run logs a warning and trains on, never pruned on an error. Imports Optuna (an optional extra).
"""

from __future__ import annotations

import logging
from typing import Any

import optuna

from kni_core.errors import KniError

from ..recipe.sweep import PruneSpec, SweepSpec
from ..store.journal import storage, study_name
from ..store.records import Run
from ..store.repository import Store
from .errors import Pruned

log = logging.getLogger(__name__)

optuna.logging.set_verbosity(optuna.logging.WARNING)     # one line per trial is noise in run logs


def prune_study(store: Store, sweep_id: int, prune: PruneSpec) -> optuna.Study:
    return optuna.load_study(study_name=study_name(sweep_id, "prune"), storage=storage(store, sweep_id),
                             pruner=prune.make())


class PruneListener:
    """A :class:`~workbench.runs.execute.RunListener` that reports each epoch's validation AUC to
    the sweep's pruning study and raises :class:`~workbench.runs.errors.Pruned` when the pruner says
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
    """The pruning listener of ``run`` when its sweep prunes and the run is one of its search
    (None otherwise: a rerun seed, or a sweep that cannot be read, with a warning)."""
    if run.sweep_id is None:
        return None
    try:
        sweep = store.get_sweep(run.sweep_id)
        spec = SweepSpec.from_dict(sweep.spec_dict)
    except (KniError, KeyError, ValueError, TypeError) as e:
        log.warning("run %d: cannot read sweep %s (%s); no pruning", run.id, run.sweep_id, e)
        return None
    if spec.prune is None:
        return None
    if run.seed not in sweep.seed_list:
        # a seed of the ``rerun:`` section: it measures the chosen point and is never cut short
        # (judged against the survivors' median, a slow start of the best point would be)
        return None
    return PruneListener(store, run, spec.prune)
