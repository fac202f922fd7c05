"""AUC by stratum: where a model wins or loses, by how much the training data knows the user
and the item.

One AUC over a whole test split hides who a model serves. Here the test rows are cut two ways
and each part scored alone:

- by the user's training rows (its degree), into buckets bounded by ``eval.strata`` (default
  ``[2, 5, 20]``: 1-2, 3-5, 6-20 and more than 20 rows). On bc most users have 2 rows, and the
  test rows of users with at most 2 training rows are only 20% positive;
- by the item's popularity: head, torso and tail, each holding a third of the training
  positives (items ranked by their positives, ties by id).

A bucket whose rows hold one label has no AUC (``None``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from .data.prepare import PreparedData


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else None


def _bucket_rows(name: str, mask: np.ndarray, rows: np.ndarray, scores: np.ndarray, **extra) -> dict:
    labels = rows[mask, 2]
    return {"bucket": name, **extra, "rows": int(mask.sum()),
            "positive_share": float(labels.mean()) if len(labels) else None, "auc": _auc(labels, scores[mask])}


def user_degree_buckets(edges: Sequence[int]) -> list[tuple[str, int, float]]:
    """``(name, lowest, highest)`` training-row counts of each user bucket: ``1-2``, ``3-5``, ..., ``>20``."""
    out, lo = [], 1
    for hi in edges:
        out.append((f"{lo}-{hi}" if hi > lo else f"{lo}", lo, hi))
        lo = hi + 1
    out.append((f">{edges[-1]}" if edges else "all", lo, float("inf")))
    return out


def by_user_degree(data: PreparedData, rows: np.ndarray, scores: np.ndarray, edges: Sequence[int]) -> list[dict]:
    """AUC of ``rows`` (their ``scores``) per bucket of their user's training rows."""
    degree = np.bincount(data.train[:, 0], minlength=data.n_entity)[rows[:, 0]]
    out = []
    for name, lo, hi in user_degree_buckets(edges):
        mask = (degree >= lo) & (degree <= hi)
        out.append(_bucket_rows(name, mask, rows, scores, users=int(len(np.unique(rows[mask, 0])))))
    return out


def by_item_popularity(data: PreparedData, rows: np.ndarray, scores: np.ndarray) -> list[dict]:
    """AUC of ``rows`` per third of the training positives: head, torso and tail items."""
    positives = np.bincount(data.train[data.train[:, 2] == 1, 1], minlength=data.n_entity)
    order = np.lexsort((np.arange(len(positives)), -positives))        # most popular first, ties by id
    share = np.cumsum(positives[order]) / max(1, positives.sum())
    third = np.empty(len(positives), dtype=np.int64)
    third[order] = np.minimum(2, (np.concatenate([[0.0], share[:-1]]) * 3).astype(np.int64))
    item_third = third[rows[:, 1]]
    return [_bucket_rows(name, item_third == k, rows, scores, items=int(len(np.unique(rows[item_third == k, 1]))))
            for k, name in enumerate(("head", "torso", "tail"))]


def strata(data: PreparedData, scores: np.ndarray, edges: Sequence[int], split: str = "test") -> dict:
    """``{"auc_by_user_degree": [...], "auc_by_item_popularity": [...]}`` of ``split``'s scores."""
    rows = getattr(data, split)
    return {"split": split, "auc_by_user_degree": by_user_degree(data, rows, scores, edges),
            "auc_by_item_popularity": by_item_popularity(data, rows, scores)}
