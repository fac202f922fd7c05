"""What a comparison can rank by and when: the metric names, the ``--at`` epoch, group ids."""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

from kni_core.errors import KniError

from ..store.records import METRICS
from ..store.statuses import COUNTED
from .strata import is_stratum_metric, stratum_order

GROUP_BY = ("config", "dataset", "model", "recipe")
#: Statuses that count unless --status says otherwise (a pruned run counts at its best epoch).
DEFAULT_STATUSES = COUNTED
GROUP_ID_LENGTH = 8


def group_id(config_hash: str) -> str:
    """The short id of a configuration group: the first characters of its config hash."""
    return config_hash[:GROUP_ID_LENGTH]


#: Top-N metric families, in column order (``kni_core.topk``).
TOPK_FAMILIES = ("precision", "recall", "f1", "full_recall", "full_ndcg")
_TOPK = re.compile(r"^(" + "|".join(TOPK_FAMILIES) + r")@([1-9][0-9]*)$")


class CompareError(KniError):
    """A selection or comparison that cannot be made (unknown group, no shared seeds...)."""


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


def is_topk_metric(metric: str) -> bool:
    return bool(_TOPK.match(metric))


def topk_order(metric: str) -> tuple[int, int]:
    m = _TOPK.match(metric)
    assert m is not None
    return TOPK_FAMILIES.index(m.group(1)), int(m.group(2))


def check_metric(metric: str, at: str | int = "best") -> str:
    """``metric`` if it names one that can be read ``--at at``, else CompareError saying why."""
    if metric not in METRICS and not is_topk_metric(metric) and not is_stratum_metric(metric):
        raise CompareError(f"--metric: expected one of {', '.join(METRICS)}, a top-N metric such as "
                           f"recall@20, precision@10, f1@5, full_recall@20, full_ndcg@20, or a stratum's AUC "
                           f"such as auc_users_1-2 or auc_items_tail; got {metric!r}")
    if is_stratum_metric(metric) and str(at) != "best":
        raise CompareError(f"--metric {metric}: the AUC by stratum is stored at each run's selected epoch only, "
                           f"so no run has it --at {at} (read it --at best)")
    return metric


def metric_columns(rows: Sequence[dict], suffixes: Sequence[str], is_metric: Callable[[str], bool],
                   order: Callable[[str], Any]) -> list[str]:
    """The columns of ``rows`` whose name is a metric ``is_metric`` accepts followed by one of
    ``suffixes``: each such metric with every suffix, the metrics sorted by ``order``."""
    names: set[str] = set()
    for row in rows:
        for key in row:
            for suffix in suffixes:
                base = key[:len(key) - len(suffix)] if key.endswith(suffix) else ""
                if is_metric(base):
                    names.add(base)
    return [f"{m}{s}" for m in sorted(names, key=order) for s in suffixes]


def topk_columns(rows: Sequence[dict], suffixes: Sequence[str] = ("",)) -> list[str]:
    """The top-N metric columns present in ``rows`` (``METRIC`` + each suffix), in family and K order."""
    return metric_columns(rows, suffixes, is_topk_metric, topk_order)


def stratum_columns(rows: Sequence[dict], suffixes: Sequence[str] = ("",)) -> list[str]:
    """The stratum metric columns present in ``rows`` (``METRIC`` + each suffix), in bucket order."""
    return metric_columns(rows, suffixes, is_stratum_metric, stratum_order)


def parse_at(at: str | int) -> str | int:
    """``best``, ``last``, ``original`` or a positive epoch number."""
    if isinstance(at, int):
        value = at
    else:
        s = str(at).strip().lower()
        if s in ("best", "last", "original"):
            return s
        if not s.isdigit():
            raise CompareError(f"--at: expected best, last, original or an epoch number; got {at!r}")
        value = int(s)
    if value < 1:
        raise CompareError(f"--at: epochs are numbered from 1; got {value}")
    return value
