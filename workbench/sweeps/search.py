"""A sweep's Optuna studies, created once by the process that starts the sweep (before any of
its runs, so runs never race to create them): ``sweep-ID-search`` (TPE, one trial per point,
asked and told by the driver) and ``sweep-ID-prune`` (one trial per run, see
:mod:`workbench.runs.pruning`). Both live in the run database (:mod:`workbench.store.journal`).

The search study also keeps what a resumed search needs to ask what the first driver would
have asked (:meth:`~workbench.sweeps.driver.SweepDriver.continuing`): the wave size and the
recipe's base configuration, as study attributes. Imports Optuna, an optional extra.
"""

from __future__ import annotations

from typing import Any

import optuna

from ..recipe.sweep import SweepSpec, TpeSpec
from ..store.journal import storage, study_name
from ..store.repository import Store

optuna.logging.set_verbosity(optuna.logging.WARNING)     # "a new study created": noise in a sweep's log


def create_studies(store: Store, sweep_id: int, spec: SweepSpec, facts: dict[str, Any] | None = None) -> None:
    """Create the sweep's studies once, before any of its runs starts (no race between runs);
    ``facts`` (JSON values) are kept with the search study."""
    st = storage(store, sweep_id)
    if spec.tpe is not None:
        study = optuna.create_study(study_name=study_name(sweep_id, "search"), storage=st, direction="maximize")
        for key, value in (facts or {}).items():
            study.set_user_attr(key, value)
    if spec.prune is not None:
        optuna.create_study(study_name=study_name(sweep_id, "prune"), storage=st, direction="maximize")


def _sampler(tpe: TpeSpec) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(seed=tpe.seed, n_startup_trials=tpe.n_startup_trials)


def search_study(store: Store, sweep_id: int, tpe: TpeSpec) -> optuna.Study:
    """The TPE study of a sweep (ask-and-tell; the sampler seeded with ``tpe.seed``)."""
    return optuna.load_study(study_name=study_name(sweep_id, "search"), storage=storage(store, sweep_id),
                             sampler=_sampler(tpe))


def search_facts(store: Store, sweep_id: int) -> dict[str, Any]:
    """What the sweep's driver kept with its search study (empty for a sweep started before
    drivers kept it, or without a search study)."""
    try:
        return dict(optuna.load_study(study_name=study_name(sweep_id, "search"),
                                      storage=storage(store, sweep_id)).user_attrs)
    except KeyError:                                     # Optuna: no such study
        return {}


def replay_study(tpe: TpeSpec) -> optuna.Study:
    """A new study in memory with the sampler a sweep's search started with: asked and told
    what the first driver asked and was told, in the same order, it is in the same state (the
    same trials, the sampler's generators as far on) and asks next what the first would have."""
    return optuna.create_study(direction="maximize", sampler=_sampler(tpe))
