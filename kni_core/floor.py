"""The floor of a dataset's split: what item popularity alone scores on it.

Every comparison is shown against it (a model below it has learned less than counting). It is
the ``pop`` model (:mod:`kni_core.models.pop`, ``count: positives``) on the split, with the same
numbers a ``pop`` run reports, computed from any prepared data of that split: every model sees
the same rows, whatever its graph. Its key names the split, not the model: the dataset settings
that decide which rows land where (``min_relation_triples`` and the other graph settings change
no row), and the floor's version. NumPy only: no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .config import stable_hash

if TYPE_CHECKING:
    from .data.prepare import PreparedData

#: The dataset settings that decide the split's rows.
SPLIT_SETTINGS = ("name", "path", "format", "split", "split_seed", "split_method", "rating_threshold", "synthetic")
#: Raised when the floor of one split would come out different (2: the calibration is fitted on
#: leave-one-out counts), so that a floor stored by an older version is not shown but computed again.
FLOOR_VERSION = 2
#: What the floor reports, as a run's best epoch does.
FLOOR_METRICS = ("valid_auc", "valid_logloss", "valid_acc", "test_auc", "test_logloss", "test_acc")


def floor_key(dataset: dict[str, Any]) -> str:
    """The key of a split's floor (from a run's ``dataset`` settings, as stored)."""
    return stable_hash({**{k: dataset.get(k) for k in SPLIT_SETTINGS}, "floor_version": FLOOR_VERSION})


def popularity_floor(data: PreparedData, edge_sets: Iterable[Sequence[int]] = ()) -> dict[str, Any]:
    """Popularity's valid and test metrics on ``data``'s split, under ``"strata"`` its test AUC by
    stratum (:mod:`kni_core.strata`: the user buckets of ``eval.strata``'s default edges and of
    each of ``edge_sets``, so that runs with their own buckets find the floor's), and under
    ``"files"`` the sha256 of the source files it was computed from: the key names the split by
    its settings, and the same settings over edited files are not the same split."""
    from .config import EvalConfig
    from .metrics import evaluate_scores
    from .models.pop import calibrated, fit
    from .strata import by_user_degree, strata

    probability = calibrated(*fit(data))[1]
    out: dict[str, Any] = {}
    for split in ("valid", "test"):
        rows = getattr(data, split)
        m = evaluate_scores(rows[:, 2], probability[rows[:, 1]], data.threshold)
        out.update({f"{split}_auc": m.auc, f"{split}_logloss": m.logloss, f"{split}_acc": m.acc})
    scores = probability[data.test[:, 1]]
    out["strata"] = strata(data, scores, EvalConfig().strata)
    for edges in edge_sets:
        out["strata"] = merge_strata(out["strata"], {"auc_by_user_degree": by_user_degree(data, data.test, scores,
                                                                                           edges)})
    out["files"] = dict(sorted(data.sources.items()))     # whose split this is: see floor_key
    return out


def merge_strata(strata: dict, more: dict) -> dict:
    """``strata`` with the buckets of ``more`` it lacks, by name: a bucket ("3-5" training rows)
    holds the same rows whatever the other edges, so one floor serves every run's buckets."""
    out = dict(strata)
    for kind, buckets in more.items():
        if isinstance(buckets, list):
            have = {b.get("bucket") for b in out.get(kind) or [] if isinstance(b, dict)}
            out[kind] = list(out.get(kind) or []) + [b for b in buckets if b.get("bucket") not in have]
    return out
