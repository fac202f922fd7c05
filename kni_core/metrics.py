"""Evaluation metrics, as the original code computes them (scikit-learn's implementations)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metrics:
    auc: float
    logloss: float
    acc: float


def evaluate_scores(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Metrics:
    """ROC-AUC, log loss and accuracy with positives predicted at ``score >= threshold``.

    The original code sets ``threshold`` to the training set's positive rate.
    """
    # Imported here: scikit-learn pulls in scipy.stats (~1.2 s), which commands that load a
    # model without evaluating it (kni explain, kni recommend) should not pay for.
    from sklearn.metrics import log_loss, roc_auc_score

    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(np.unique(labels)) < 2:
        auc = float("nan")      # undefined with one class; keep the run going
    else:
        auc = float(roc_auc_score(labels, scores))
    ll = float(log_loss(labels, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0.0, 1.0]))
    acc = float(np.mean((scores >= threshold) == (labels == 1)))
    return Metrics(auc, ll, acc)
