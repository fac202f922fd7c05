"""The original code's model-selection rules, free of torch so readers of stored runs can
replay them (``kni compare --at original``), and the seeds of a run's evaluations."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def should_stop(aucs: Sequence[float], loglosses: Sequence[float], patience: int) -> bool:
    """Past ``patience`` epochs, stop when the newest AUC is below and the newest log loss
    above the mean of the previous ``patience`` epochs (the original's rule, 0 disables it)."""
    if patience <= 0 or len(aucs) <= patience + 1:
        return False
    window = slice(-(patience + 1), -1)
    return aucs[-1] < np.mean(aucs[window]) and loglosses[-1] > np.mean(loglosses[window])


def replay(aucs: Sequence[float], loglosses: Sequence[float], patience: int) -> tuple[int, int | None]:
    """Apply selection and early stopping to a recorded trajectory of one split.

    Returns ``(best index, stop index or None)``: the 0-based epoch the rule selects among
    the epochs it would have run, and where it stops (None: not within the recording).
    """
    for k in range(1, len(aucs) + 1):
        if should_stop(aucs[:k], loglosses[:k], patience):
            return int(np.argmax(aucs[:k])), k - 1
    return int(np.argmax(aucs)), None


#: Added to ``run seed * 100003 + epoch`` for the sampled passes of each evaluation at an epoch:
#: distinct streams per split (and for the top-N, ``kni_core.topk.topk_seed``).
EVAL_SEED_OFFSETS = {"valid": 0, "test": 50000, "topk": 70000}


def eval_seed(run_seed: int, epoch: int, what: str) -> int:
    """The generator seed of evaluation ``what`` (valid, test, topk) with epoch ``epoch``'s
    weights (:meth:`kni_core.train.Trainer.fit`): what ``kni explain --run-score`` and ``kni
    recommend --hit-rate`` take to give a stored run's own numbers again."""
    return run_seed * 100003 + epoch + EVAL_SEED_OFFSETS[what]
