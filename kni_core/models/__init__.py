"""The models behind ``model.name``, RecBole-style: one file per model, one small interface.

``kni`` is :class:`kni_core.model.KNI`, trained by :class:`kni_core.train.Trainer` itself (its
row-sparse optimizer and sampled evaluation). The baselines implement :class:`~.base.Recommender`
and are trained by :class:`~.trainer.ModelTrainer`, which ``Trainer(cfg, data)`` returns for
them: the same ``fit()``, early stopping, selection, top-N hook and records.

This module imports no torch: :data:`BASELINES` names the modules, loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..data.prepare import PreparedData
    from .base import Recommender

#: ``model.name`` -> (module, class) of the baselines.
BASELINES: dict[str, tuple[str, str]] = {
    "mf": ("kni_core.models.mf", "MF"),
    "ripplenet": ("kni_core.models.ripplenet", "RippleNet"),
    "kgcn": ("kni_core.models.kgcn", "KGCN"),
}

#: How each model is labelled in stored runs, comparisons and the TUI.
LABELS = {"mf": "MF", "ripplenet": "RippleNet", "kgcn": "KGCN"}


def build_model(cfg: "RunConfig", data: "PreparedData") -> "Recommender":
    """The baseline ``cfg.model.name`` built from the prepared data (its structures - ripple
    sets, sampled neighbours - drawn from ``dataset.split_seed``, shared by all run seeds as
    the original code's ``np.random.seed(555)`` is)."""
    name = cfg.model.name
    if name not in BASELINES:
        raise ValueError(f"model {name!r} is not a baseline (one of {', '.join(BASELINES)})")
    module, cls = BASELINES[name]
    return getattr(importlib.import_module(module), cls).build(cfg, data)
