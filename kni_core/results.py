"""The typed records a run produces, free of torch so stores and UIs can use them cheaply."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def metric(self, split: str, name: str) -> float:
        return getattr(self, f"{split}_{name}")


@dataclass(frozen=True)
class FitSummary:
    seed: int
    best_epoch: int
    best: EpochResult
    epochs_run: int
    stopped_early: bool
