"""Every group against its split's popularity floor (:mod:`kni_core.floor`): ``vs pop``.

A run process stores the floor of its split when the first run of that split starts. For runs
stored before, the floor is computed here on demand from the run's prepared data (reused from
the cache) and stored when the store may be written (a floor stored before the AUC by stratum
existed gains its strata the same way); when the data is not on this machine, or its files are
not the ones the run read, the floor is unknown (``-``), never guessed.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Iterable

from kni_core.errors import KniError
from kni_core.floor import FLOOR_METRICS, floor_key

from ..store.errors import StoreError
from ..store.records import Run
from .metrics import lower_is_better
from .provenance import read, same_files
from .strata import is_stratum_metric, stratum_values

if TYPE_CHECKING:
    from ..store.repository import Store
    from .groups import Group

log = logging.getLogger(__name__)


def run_floor_key(run: Run) -> str | None:
    try:
        return floor_key(json.loads(run.config_json).get("dataset") or {})
    except (ValueError, AttributeError):
        return None


def floors_for(store: Store, runs: Iterable[Run], compute: bool = True) -> dict[str, dict | None]:
    """``{split key: the floor's metrics, or None when it cannot be known}`` for the runs'
    splits; absent ones computed from a run's prepared data when ``compute``. Unknown, too, where
    a run read other source files than its split's floor was computed from (edited in place)."""
    stored = store.floors()
    out: dict[str, dict | None] = {}
    runs = list(runs)
    edges: dict[str, list[list[int]]] = {}       # split key -> the user buckets its runs are shown in
    for run in runs:
        key = run_floor_key(run)
        if key is not None and (e := run_edges(run)) is not None and e not in edges.setdefault(key, []):
            edges[key].append(e)
    for run in runs:
        key = run_floor_key(run)
        if key is None or key in out:
            continue
        have = stored[key]["metrics"] if key in stored else None
        if have is not None and (not compute or all(has_buckets(have, e) for e in edges.get(key, []))):
            out[key] = have
        elif compute:             # absent, stored before the strata were measured, or without these buckets
            out[key] = _compute(store, run, key, edges.get(key, [])) or have
        else:
            out[key] = None
    for run in runs:                    # a floor of other files than a run read is no floor of its split
        key = run_floor_key(run)
        if out.get(key) is not None and not same_files(out[key].get("files"), read(run)["data_files"]):
            log.info("no floor for %s: run %d read other source files than the floor was computed from",
                     run.dataset, run.id)
            out[key] = None
    return out


def run_edges(run: Run) -> list[int] | None:
    """The run's ``eval.strata`` edges (its user buckets), as stored."""
    try:
        e = (json.loads(run.config_json).get("eval") or {}).get("strata")
    except (ValueError, AttributeError):
        return None
    return [int(x) for x in e] if isinstance(e, list) and all(isinstance(x, int) for x in e) else None


def has_buckets(floor: dict, edges) -> bool:
    """Whether a stored floor holds the user buckets of ``edges`` (and the strata at all)."""
    from kni_core.strata import user_degree_buckets
    have = {b.get("bucket") for b in (floor.get("strata") or {}).get("auc_by_user_degree") or []
            if isinstance(b, dict)}
    return "strata" in floor and all(name in have for name, _lo, _hi in user_degree_buckets(edges))


def _compute(store: Store, run: Run, key: str, edge_sets: list[list[int]]) -> dict | None:
    from kni_core.config import RunConfig
    from kni_core.data import prepare
    from kni_core.floor import popularity_floor
    try:
        data = prepare(RunConfig.from_dict(json.loads(run.config_json)))
    except (KniError, ValueError, TypeError, OSError) as e:
        log.info("no floor for %s: its data cannot be prepared here (%s)", run.dataset, e)
        return None
    if not same_files(read(run)["data_files"], data.sources):    # edited since: not the run's split
        log.info("no floor for run %d: its source files are not the ones here any more", run.id)
        return None
    metrics = popularity_floor(data, edge_sets)
    before = store.floors().get(key)
    if before is not None and not same_files(before["metrics"].get("files"), data.sources):
        return metrics                           # the stored floor is of other files: keep it apart
    if not store.readonly:
        try:
            store.save_floor(key, run.dataset, metrics)
            return store.floors()[key]["metrics"]      # with the buckets stored before
        except StoreError:
            pass
    return metrics


def group_floor(group: Group, floors: dict[str, dict | None]) -> dict | None:
    """The floor of a group whose runs share one split (None for a group over several)."""
    keys = {run_floor_key(m.run) for m in group.members}
    return floors.get(keys.pop()) if len(keys) == 1 else None


def floor_value(floor: dict | None, metric: str) -> float | None:
    """The floor's ``metric``: one of FLOOR_METRICS, or a stratum's AUC (floors stored since the
    strata were measured); None when it has none."""
    if floor is None:
        return None
    if is_stratum_metric(metric):
        return stratum_values(floor.get("strata") or {}).get(metric)
    value = floor.get(metric) if metric in FLOOR_METRICS else None
    return value if isinstance(value, (int, float)) else None


def vs_floor(mean: float, floor: dict | None, metric: str) -> float | None:
    """``mean - floor`` on ``metric``; None when the floor or the metric has none."""
    value = floor_value(floor, metric)
    return None if value is None else mean - value


def below_floor(diff: float | None, metric: str) -> bool:
    """Whether a difference from the floor means worse than popularity."""
    return diff is not None and (diff > 0 if lower_is_better(metric) else diff < 0)
