"""The typed records a run produces, free of torch so stores and UIs can use them cheaply."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class TopKResult:
    """Top-N metrics of one protocol at one epoch (``kni_core.topk``)."""

    protocol: str               # "sampled" (KGCN/MKR: sampled users) or "full" (every test user)
    epoch: int                  # the weights' epoch (the selected one unless eval.topk.every)
    users: int                  # users evaluated
    seed: int                   # seed of the user sample
    n_eval: int                 # sampled passes averaged per score (1: a model that does not sample)
    seconds: float
    metrics: dict               # "precision@10", "recall@20", "f1@5", "full_recall@20", "full_ndcg@20", ...

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EpochResult:
    """One epoch: the SQLite row, the TUI message, the ``--json`` line and the CSV row."""

    seed: int
    epoch: int                  # 1-based
    train_loss: float
    valid_auc: float
    valid_logloss: float
    valid_acc: float
    test_auc: float
    test_logloss: float
    test_acc: float
    train_seconds: float
    eval_seconds: float
    topk: tuple = ()            # TopKResult of this epoch's weights, when top-N ran on them
    strata: dict | None = None  # AUC by stratum (kni_core.strata), on the epochs that were the best so far

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not self.topk:
            d.pop("topk")
        d.pop("strata")           # stored with the run, not part of an epoch's record
        return d

    def metric(self, split: str, name: str) -> float:
        return getattr(self, f"{split}_{name}")


@dataclass(frozen=True)
class FitSummary:
    seed: int
    best_epoch: int
    best: EpochResult
    epochs_run: int
    stopped_early: bool
