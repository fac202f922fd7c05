"""AUC by stratum in comparisons: each stored bucket (:mod:`kni_core.strata`) as a metric.

A run stores its test AUC per user-degree bucket and per item-popularity third at its selected
epoch. Here each bucket becomes a metric named ``auc_users_<bucket>`` (``auc_users_1-2``,
``auc_users_>20``) or ``auc_items_<third>`` (``auc_items_head``), so groups, paired tests and
the export treat it as any other metric. It exists only at the selected epoch: at any other
``--at`` epoch a run has none.
"""

from __future__ import annotations

import re
from typing import Any

#: The stored lists, and the prefix of their metrics.
KINDS = {"auc_by_user_degree": "auc_users_", "auc_by_item_popularity": "auc_items_"}
THIRDS = ("head", "torso", "tail")
_STRATUM = re.compile(r"^auc_(users|items)_(.+)$")


def is_stratum_metric(metric: str) -> bool:
    return bool(_STRATUM.match(metric))


def stratum_order(metric: str) -> tuple[int, float, str]:
    """Users before items; user buckets by their lowest degree, items head, torso, tail."""
    m = _STRATUM.match(metric)
    assert m is not None
    kind, bucket = m.groups()
    if kind == "items":
        return 1, float(THIRDS.index(bucket)) if bucket in THIRDS else 9.0, bucket
    low = re.match(r"^>?(\d+)", bucket)
    return 0, (int(low.group(1)) + bucket.startswith(">")) if low else 1e9, bucket


def stratum_values(strata: dict) -> dict[str, float | None]:
    """``{metric: auc}`` of a stored strata dict (a run's or a floor's)."""
    out: dict[str, float | None] = {}
    for kind, prefix in KINDS.items():
        for b in strata.get(kind) or []:
            if isinstance(b, dict) and "bucket" in b:
                auc = b.get("auc")
                out[f"{prefix}{b['bucket']}"] = float(auc) if isinstance(auc, (int, float)) else None
    return out


def stratum_sizes(strata: dict) -> dict[str, dict[str, Any]]:
    """``{metric: {"rows", "positive_share", "users" or "items"}}`` of a stored strata dict."""
    out = {}
    for kind, prefix in KINDS.items():
        for b in strata.get(kind) or []:
            if isinstance(b, dict) and "bucket" in b:
                out[f"{prefix}{b['bucket']}"] = {k: v for k, v in b.items() if k not in ("bucket", "auc")}
    return out


def stratum_label(metric: str) -> str:
    """A column heading: ``users 1-2``, ``items head``."""
    m = _STRATUM.match(metric)
    assert m is not None
    return f"{m.group(1)} {m.group(2)}"
