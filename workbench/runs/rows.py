"""Runs as rows and rows as typed records: a recipe seed's queued row, the labels it is listed
under, and the :class:`~kni_core.results.EpochResult` / :class:`~kni_core.results.FitSummary`
of stored rows (torch-free: the launcher and the views use them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from kni_core import models
from kni_core.config import RunConfig
from kni_core.results import EpochResult, FitSummary

from ..store.records import Epoch, NewRun, Run
from .provenance import Code, code


def model_label(cfg: RunConfig) -> str:
    """``KNI`` (with the knowledge graph), ``NI`` (user-item graph only), or the baseline's
    name: ``MF``, ``RippleNet``, ``KGCN``."""
    return models.label(cfg.model)


def dataset_label(cfg: RunConfig) -> str:
    d = cfg.dataset
    if d.path and d.name in (None, "synthetic"):   # a folder read instead of the generator (quickstart --set
        return Path(d.path).name                  # dataset.path=DIR): named by it, not "synthetic"
    if d.name == "synthetic":
        preset = (d.synthetic or {}).get("preset")
        return f"synthetic-{preset}" if preset else "synthetic"
    return d.name or "?"


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def epoch_result(seed: int, e: Epoch) -> EpochResult:
    """The :class:`EpochResult` of a stored epoch row (NULL metrics become NaN)."""
    return EpochResult(seed, e.epoch, _nan(e.train_loss), _nan(e.valid_auc), _nan(e.valid_logloss),
                       _nan(e.valid_acc), _nan(e.test_auc), _nan(e.test_logloss), _nan(e.test_acc),
                       _nan(e.train_seconds), _nan(e.eval_seconds))


def fit_summary(run: Run, epochs: Sequence[Epoch]) -> FitSummary | None:
    """The :class:`FitSummary` of a stored run (None without epochs)."""
    if not epochs:
        return None
    by_epoch = {e.epoch: e for e in epochs}
    best = by_epoch.get(run.best_epoch or -1) or epochs[-1]
    return FitSummary(run.seed, best.epoch, epoch_result(run.seed, best), len(epochs), bool(run.stopped_early))


def new_run(recipe_name: str, recipe_text: str, cfg: RunConfig, recipe_path: str | None = None,
            prov: Code | None = None) -> NewRun:
    """The queued row of one seed of a recipe (``prov``: the code it is queued with, default
    this process's)."""
    prov = prov if prov is not None else code()
    return NewRun(recipe=recipe_name, recipe_text=recipe_text, config_json=json.dumps(cfg.to_dict(), sort_keys=True),
                  config_hash=cfg.config_hash(), dataset=dataset_label(cfg), model=model_label(cfg), seed=cfg.seed,
                  device=cfg.device, max_epochs=cfg.train.epochs, select_on=cfg.train.select_on,
                  recipe_path=recipe_path, package_version=prov.version, git_commit=prov.commit,
                  provenance=prov.as_json())
