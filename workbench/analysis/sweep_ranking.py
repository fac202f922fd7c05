"""A sweep's points ranked by their mean over seeds, and which swept keys matter."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..store.attempts import current_attempt
from ..store.records import METRICS, Attempt, Run, Sweep
from ..store.repository import Store
from ..store.statuses import COMPLETED, PRUNED
from .dataset_by_model import Matrix, matrix
from .export import json_value
from .groups import Group, group_points
from .metrics import group_id, lower_is_better
from .selection import RunPoint, points, statuses_counted

#: Key effects: a numeric key with more distinct values than this (a random or TPE search) is cut
#: into EFFECT_BINS bins of consecutive values, a value never in two; fewer, a level per value.
EFFECT_LEVELS = 5
EFFECT_BINS = 3


@dataclass
class SweepPoint:
    """One point of a sweep: its number, values, the group of its counted runs and the
    statuses of all its runs."""

    number: int
    params: dict
    group: Group | None                          # None: no run of the point counts (yet)
    runs: list[Run] = field(default_factory=list)

    @property
    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.runs:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def pruned(self) -> int:
        """Seeds whose counted run was pruned."""
        return sum(1 for m in (self.group.members if self.group else []) if m.run.status == PRUNED)

    @property
    def n(self) -> int:
        return self.group.n if self.group else 0

    def stat(self, metric: str) -> tuple[float, float]:
        return self.group.stat(metric) if self.group else (math.nan, math.nan)

    @property
    def config_hash(self) -> str:
        return self.runs[0].config_hash if self.runs else ""

    @property
    def id(self) -> str:
        return group_id(self.config_hash)


@dataclass
class KeyEffect:
    """How one swept key moves the metric: ``levels`` are (value or bin, mean of the points'
    means, number of points with a mean)."""

    key: str
    levels: list[tuple[str, float, int]]
    spread: float                                # best level - worst level (NaN with fewer than 2)


@dataclass
class SweepRanking:
    sweep: Sweep
    points: list[SweepPoint]                     # ranked, points without a value last
    keys: list[str]
    metric: str
    at: str | int
    effects: list[KeyEffect]

    @property
    def best(self) -> SweepPoint | None:
        return self.points[0] if self.points and math.isfinite(self.points[0].stat(self.metric)[0]) else None


def _rank(points: list[SweepPoint], metric: str) -> list[SweepPoint]:
    def key(p: SweepPoint) -> tuple:
        mean = p.stat(metric)[0]
        if not math.isfinite(mean):
            return (1, 0.0, p.number)
        return (0, mean if lower_is_better(metric) else -mean, p.number)
    return sorted(points, key=key)


def sweep_points(all_runs: Sequence[Run], pts: Sequence[RunPoint], metric: str) -> list[SweepPoint]:
    """The points of one sweep, ranked by ``metric``: ``all_runs`` are every run of the sweep
    (for the statuses), ``pts`` the runs that may count (with their epoch at ``--at``)."""
    by_number: dict[int, SweepPoint] = {}
    for r in sorted(all_runs, key=lambda r: r.id):
        number = r.sweep_point if r.sweep_point is not None else 0
        by_number.setdefault(number, SweepPoint(number, r.params, None)).runs.append(r)
    per_point: dict[int, list[RunPoint]] = {}
    for p in pts:                   # each point by its own runs: TPE may ask one configuration twice
        per_point.setdefault(p.run.sweep_point or 0, []).append(p)
    for number, mine in per_point.items():
        g = group_points(mine, "config")[0]
        member = (g.members or g.without_point)[0].run
        point = by_number.setdefault(number, SweepPoint(number, member.params, None))
        point.group = g
    return _rank(list(by_number.values()), metric)


def _level_label(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else json.dumps(v)


def key_effects(points: Sequence[SweepPoint], keys: Sequence[str], metric: str) -> list[KeyEffect]:
    """Per swept key, the mean of the points' means for each of its values (or value bins),
    sorted by spread, the keys that matter most first."""
    scored = [(p, p.stat(metric)[0]) for p in points]
    scored = [(p, m) for p, m in scored if math.isfinite(m)]
    out = []
    for key in keys:
        values = [(p.params.get(key), m) for p, m in scored if key in p.params]
        distinct = {json.dumps(v, sort_keys=True) for v, _ in values}
        numeric = values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in values)
        levels: list[tuple[str, float, int]] = []
        if numeric and len(distinct) > EFFECT_LEVELS:
            for chunk in np.array_split(np.array(sorted({v for v, _ in values}), dtype=object), EFFECT_BINS):
                part = [m for v, m in values if chunk[0] <= v <= chunk[-1]]
                label = f"{_level_label(chunk[0])}..{_level_label(chunk[-1])}"
                levels.append((label, float(np.mean(part)), len(part)))
        else:
            groups: dict[str, list[float]] = {}
            for v, m in sorted(values, key=lambda vm: vm[0]) if numeric else values:
                groups.setdefault(_level_label(v), []).append(m)
            levels = [(lbl, float(np.mean(ms)), len(ms)) for lbl, ms in groups.items()]
        means = [m for _, m, _ in levels]
        spread = (max(means) - min(means)) if len(means) > 1 else math.nan
        out.append(KeyEffect(key, levels, spread))
    out.sort(key=lambda e: (not math.isfinite(e.spread), -(e.spread if math.isfinite(e.spread) else 0.0)))
    return out


def stored_best(run: Run) -> Any:
    """The run's selected epoch as its row stores it (``best_*``), standing in for the epoch row
    where epoch rows are not at hand (the workbench's sweep views); None before any epoch. Only
    the metrics at the best epoch are there: ``--at best``, no seconds, no training loss."""
    if run.best_epoch is None:
        return None
    from types import SimpleNamespace
    return SimpleNamespace(epoch=run.best_epoch, train_loss=None, train_seconds=None, eval_seconds=None,
                           **{m: getattr(run, f"best_{m}") for m in METRICS if m != "train_loss"})


def rank_sweep(store: Store, sweep_id: int, *, metric: str = "valid_auc", at: str | int = "best",
               status: Sequence[str] | None = None, dataset: str | None = None) -> SweepRanking:
    """The points of sweep ``sweep_id`` ranked (see "Sweeps" in the module docstring)."""
    sweep = store.get_sweep(sweep_id)
    all_runs = store.runs(sweep=sweep_id, dataset=dataset)
    statuses = statuses_counted(status, explicit_ids=False)
    counted = [r for r in all_runs if statuses is None or r.status in statuses]
    pts = points(store, counted, at)
    ranked = sweep_points(all_runs, pts, metric)
    keys = list(dict.fromkeys(k for p in ranked for k in p.params))
    return SweepRanking(sweep, ranked, keys, metric, at, key_effects(ranked, keys, metric))


def sweep_rows(ranking: SweepRanking) -> list[dict]:
    """JSON rows of a ranking (``kni compare --sweep --json``)."""
    rows = []
    for rank, p in enumerate(ranking.points, start=1):
        row: dict[str, Any] = {"rank": rank, "point": p.number, "group": p.id, "config_hash": p.config_hash,
                               "params": p.params, "n": p.n, "seeds": p.group.seeds if p.group else [],
                               "pruned": p.pruned, "statuses": p.statuses,
                               "run_ids": [r.id for r in p.runs]}
        for m in METRICS:
            mean, std = p.stat(m)
            row[f"{m}_mean"], row[f"{m}_std"] = json_value(mean), json_value(std)
        e_mean, e_std = p.group.epoch_stat() if p.group else (math.nan, math.nan)
        row["epoch_mean"], row["epoch_std"] = json_value(e_mean), json_value(e_std)
        rows.append(row)
    return rows


@dataclass
class SweepChoice:
    """The point a tuning sweep chose and what the choice cost (``kni compare --best-of-sweeps``)."""

    sweep: Sweep
    point: SweepPoint | None                     # None: no point has a value yet
    points_run: int                              # points with at least one run: the budget spent
    seconds: float | None                        # time a run of it was running (running_seconds)
    pts: list[RunPoint]                          # the chosen point's counted runs

    @property
    def trials(self) -> int:
        """Runs the search spent: points run x search seeds (the rerun's seeds do not choose)."""
        return self.points_run * len(self.sweep.seed_list)

    def to_dict(self, metric: str) -> dict:
        p = self.point
        return {"sweep": self.sweep.id, "name": self.sweep.name, "method": self.sweep.method,
                "budget_points": self.sweep.planned, "points_run": self.points_run, "trials": self.trials,
                "seconds": self.seconds,
                "point": p.number if p else None, "params": p.params if p else None,
                "config_hash": p.config_hash if p else None, "n": p.n if p else 0,
                "seeds": [m.run.seed for m in p.group.members] if p and p.group else [],
                "valid_auc": json_value(p.stat("valid_auc")[0]) if p else None,
                metric: json_value(p.stat(metric)[0]) if p else None}


def best_of_sweep(store: Store, sweep_id: int, *, status: Sequence[str] | None = None,
                  at: str | int = "best") -> SweepChoice:
    """The point of a tuning sweep that its search chose, on validation only: the point that
    reran its ``rerun:`` seeds when the sweep has them (the driver picked it once the search was
    done, so later runs cannot move the choice), else the best point by mean validation AUC among
    those whose every search seed completed, the driver's rule (a point whose other seeds failed
    or were pruned would win on its survivors' mean)."""
    ranking = rank_sweep(store, sweep_id, metric="valid_auc", at=at, status=status)
    spec = ranking.sweep.spec_dict
    rerun = set(spec.get("rerun", {}).get("seeds", []))
    chosen = None
    if rerun:
        extra = rerun - set(ranking.sweep.seed_list)
        chosen = next((p for p in ranking.points if extra and extra & {r.seed for r in p.runs}), None)
    if chosen is None:                           # the driver's rule: every search seed completed
        seeds = ranking.sweep.seed_list
        chosen = next((p for p in ranking.points if math.isfinite(p.stat("valid_auc")[0])
                       and _completed_every_seed(p, seeds)), None)
    ended = store.ended_attempts(sweep=sweep_id)
    seconds = running_seconds([a for r in store.runs(sweep=sweep_id)
                               for a in ended.get(r.id, []) + [current_attempt(r, 0)]])
    pts = list(chosen.group.members) if chosen is not None and chosen.group is not None else []
    return SweepChoice(ranking.sweep, chosen, sum(1 for p in ranking.points if p.runs), seconds, pts)


def budget_warnings(choices: Sequence[SweepChoice]) -> list[str]:
    """What makes a comparison of sweeps' choices unequal: sweeps of one dataset that spent
    different numbers of trials (the model given more has the better chance), and sweeps whose
    runs chose their epoch on test, whose test numbers are then not held out."""
    warnings = []
    by_dataset: dict[str, list[SweepChoice]] = {}
    for c in choices:
        if c.pts:
            by_dataset.setdefault(c.pts[0].run.dataset, []).append(c)
    for ds, group in by_dataset.items():
        # a grid that ran every point searched its whole space: it could not have spent more
        whole = [c for c in group if c.sweep.method == "grid" and c.points_run >= c.sweep.planned]
        most = max(c.trials for c in group)
        unequal = [c for c in group if not (c in whole and c.trials < most)]
        if len({c.trials for c in unequal}) > 1:
            spent = ", ".join(f"sweep {c.sweep.id} ({c.pts[0].run.model}) {c.trials} = {c.points_run} point(s) x "
                              f"{len(c.sweep.seed_list)} seed(s)" for c in unequal)
            warnings.append(f"{ds}: the sweeps spent unequal tuning budgets, in search trials: {spent}; a model "
                            "given more trials has the better chance of a good point")
        schedules = {c.sweep.id: _schedule(c) for c in group}
        if len(set(schedules.values())) > 1:
            each = ", ".join(f"sweep {c.sweep.id} ({c.pts[0].run.model}) {schedules[c.sweep.id]}" for c in group)
            warnings.append(f"{ds}: the sweeps train a trial for different schedules ({each}): equal trials are "
                            "not equal training (each recipe keeps its model's own schedule)")
    on_test = [c.sweep.id for c in choices if any(p.run.select_on == "test" for p in c.pts)]
    if on_test:
        warnings.append(f"sweep(s) {', '.join(map(str, on_test))} select each run's epoch on test (select_on: test): "
                        "their test numbers are not held out and read optimistic")
    return warnings


def _schedule(choice: SweepChoice) -> str:
    """How long a trial of the sweep may train: its runs' epochs and early-stopping patience."""
    run = choice.pts[0].run
    try:
        patience = json.loads(run.config_json)["train"]["patience"]
    except (ValueError, KeyError, TypeError):
        patience = "?"
    return f"up to {run.max_epochs} epochs, patience {patience}"


def tuned_matrix(choices: Sequence[SweepChoice], metric: str) -> Matrix:
    """The dataset x model matrix of the sweeps' choices (``kni compare --best-of-sweeps``).

    A column per model, as the paper's table, while each model is tuned by one sweep per
    dataset. Where two of the sweeps tune one model on one dataset (TPE against a grid, two
    budgets), pooling their choices would average two configurations into one cell, so every
    column is then a sweep: ``KNI (sweep 3)``."""
    pts = [p for c in choices for p in c.pts]
    models = [(p.run.dataset, p.run.model) for c in choices for p in c.pts[:1]]
    if len(models) == len(set(models)):
        return matrix(pts, "model", metric)
    mat = matrix([], "model", metric)
    for c in choices:
        if not c.pts:
            continue
        col = f"sweep {c.sweep.id}"
        mat.cols.append(col)
        mat.col_labels[col] = f"{c.pts[0].run.model} (sweep {c.sweep.id})"
        ds = c.pts[0].run.dataset
        if ds not in mat.rows:
            mat.rows.append(ds)
        (mat.cells[(ds, col)],) = group_points(c.pts, "config")         # the chosen point: one configuration
    mat.by = "sweep"
    return mat


def _completed_every_seed(p: SweepPoint, seeds: Sequence[int]) -> bool:
    counted = {m.run.seed: m.run.status for m in (p.group.members + p.group.without_point if p.group else [])}
    return bool(seeds) and all(counted.get(s) == COMPLETED for s in seeds)


def running_seconds(attempts: Sequence[Attempt]) -> float | None:
    """How long at least one of ``attempts`` was running (the union of their start-to-end
    spans): a sweep interrupted and resumed hours later spent the hours between on nothing,
    and runs side by side spend their common time once. None when none has both ends."""
    spans = sorted((a.started_at, a.ended_at) for a in attempts if a.started_at and a.ended_at)
    if not spans:
        return None
    total, (start, end) = 0.0, spans[0]
    for s, e in spans[1:]:
        if s > end:
            total += (end - start).total_seconds()
            start, end = s, e
        else:
            end = max(end, e)
    return total + (end - start).total_seconds()
