"""A sweep's Optuna studies, created once by the process that starts the sweep (before any of
its runs, so runs never race to create them): ``sweep-ID-search`` (TPE, one trial per point,
asked and told by the driver) and ``sweep-ID-prune`` (one trial per run, see
:mod:`workbench.runs.pruning`). Both live in the run database (:mod:`workbench.store.journal`).
Imports Optuna, an optional extra.
"""

from __future__ import annotations

import optuna

from ..recipe.sweep import SweepSpec, TpeSpec
from ..store.journal import storage, study_name
from ..store.repository import Store


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
