"""Groups of runs, honest statistics over seeds, and CSV export.

Selection and grouping
----------------------
The runs are chosen by id, by recipe name or all of them, optionally filtered by dataset;
by default only ``completed`` and ``running`` runs count (a running run contributes its
best epoch so far: live mean ± std), ``--status`` widens that. Runs are grouped by
``config`` (the config hash: everything but the seed and the device), ``dataset``,
``model`` (``KNI``/``NI``/``MF``/``RippleNet``/``KGCN``) or ``recipe`` (name).

A group is named by its *group id*: the first 8 characters of the config hash
(:func:`group_id`), the same id in ``kni runs``, ``kni show``, ``kni compare``, ``kni export``
and every view of the workbench; ``--paired`` and the workbench accept any prefix of it.

One run per seed. Within a configuration each seed counts once, by this rule:

- the newest *completed* run of the seed counts;
- a seed without a completed run counts with its newest run (live, while it trains);
- so a seed that is re-run keeps its completed run until the re-run completes: the re-run is
  listed as *pending* ("seed 2: run 7 still training, completed run 4 counts"), and a re-run
  that fails, is cancelled or crashes never replaces a completed run;
- every other run of the seed is *superseded* (older than the run that counts).

The counted run represents its seed whatever ``--at`` asks for; when it has no such epoch the
seed is left out (and reported), never replaced by another run of the seed. ``kni export``
follows the same rule: ``--groups`` rows are built from the counted runs only, and per-run rows
list every selected run with ``counts`` saying whether its values enter its group.

Each run contributes one epoch, chosen by ``--at``: ``best`` (the best epoch on the run's
``select_on`` split, as training selected it), ``last`` (the last stored epoch), ``N``
(epoch N; runs that have not reached it are left out and counted) or ``original`` (the
original code's protocol replayed on the stored test metrics: best test AUC among the epochs
its test-based early stopping would have run; exact, since ``select_on`` never changes a
trajectory, except for runs that stopped earlier, which are reported as truncated).

Top-N metrics
-------------
Runs with ``eval.topk`` store top-N results (``workbench.store``, table ``topk``). They are
metrics like the others for ``--metric``, groups, the matrix and paired tests: ``precision@K``,
``recall@K``, ``f1@K`` (KGCN/MKR's protocol: 100 sampled test users) and ``full_recall@K``,
``full_ndcg@K`` (full ranking), each the value stored for the epoch ``--at`` chose (the selected
epoch with ``--at best``; other epochs only have one with ``eval.topk.every``). A run without
it counts as missing for that metric.

Sweeps
------
``kni compare --sweep ID`` (:func:`rank_sweep`) takes the runs of one sweep; each *point* is a
configuration group (one config hash), named by its number in the sweep and the values of the
swept keys. Points are ranked by ``--metric`` (default ``valid_auc``: ranking on the test set
would select on it), mean ± std over the seeds at ``--at`` (default: each run's best epoch,
which training selects on validation). A *pruned* run counts like a completed one at its best
epoch among the epochs it ran (so a pruned point ranks by what it reached; the table says how
many of its seeds were pruned); a completed run of the same seed counts before it. Failed,
cancelled and crashed runs do not count and are counted per point. *Which keys matter*
(:func:`key_effects`): for each swept key, the mean of the points' means per value of the key
(numeric keys with more than :data:`EFFECT_LEVELS` values are cut into that many equal-count
bins) and the spread between the best and the worst value; a larger spread means the key moves
the metric more (over these points: it is a summary, not a test).

Statistics
----------
- mean and *sample* standard deviation (``ddof = 1``; undefined for one seed);
- ``--paired A B`` compares two configuration groups (a config-hash prefix or a recipe name
  that has one configuration among the selected runs) over the seeds *both* have:
  the difference of means ``A - B`` (equal to the mean of the per-seed differences), an exact
  two-sided sign-flip permutation p-value (all ``2^n`` sign patterns of the ``n`` paired
  differences; p = share of patterns whose |mean| is at least the observed |mean|; beyond
  :data:`EXACT_MAX_SEEDS` seeds a seeded Monte Carlo over :data:`MC_PATTERNS` patterns), and a
  percentile bootstrap 95% interval of the mean difference (:data:`BOOTSTRAP_RESAMPLES`
  resamples of the seeds with a ``numpy`` Generator seeded with :data:`BOOTSTRAP_SEED`).
  A difference whose size is below the larger of the two groups' seed standard deviations
  (over the shared seeds) is marked *within noise*.
- the paired *verdict* follows the test, at :data:`ALPHA` = 0.05: "A better" (or B) only when
  p < 0.05 *and* the bootstrap interval excludes 0; "no significant difference at 0.05" when
  p >= 0.05; "inconclusive" when p < 0.05 but the interval holds 0. With ``n`` shared seeds the
  exact test cannot go below p = 2 / 2^n (all differences of one sign), so with 5 seeds or fewer
  (2/32 = 0.0625) no difference can be significant: the verdict says so, with that smallest p and
  the number of seeds that would be needed (6).

CSV columns
-----------
``kni export --csv PATH`` (one row per run; ``-`` writes to stdout). Metrics are those of the
epoch chosen by ``--at``; empty cells are undefined values (no such epoch, NaN metric)::

    run_id            run id (kni show RUN_ID)
    recipe            recipe name
    dataset           dataset (registry name, folder name or synthetic-PRESET)
    model             KNI (with knowledge graph), NI (model.kg: false), MF, RippleNet or KGCN
    config_hash       hash of the resolved config without seed and device (the group key)
    seed              run seed
    status            queued, running, completed, failed, cancelled, crashed or pruned
    counts            true when the row's values enter its group's mean ± std: the run is the one
                      counted for its seed in its configuration (see "One run per seed") and it
                      has an epoch at --at; false for superseded runs, pending re-runs and runs
                      without that epoch
    device            device the run used (cuda:0, cpu, ...)
    select_on         split that selects the best epoch (valid or test)
    at                the --at choice: best, last or an epoch number
    epoch             the epoch whose metrics follow
    train_loss        training loss of that epoch (mean BCE + L2 term)
    valid_auc, valid_logloss, valid_acc, test_auc, test_logloss, test_acc
                      metrics of that epoch
    train_seconds     training time of that epoch
    eval_seconds      evaluation time (valid + test) of that epoch
    best_epoch        the run's best epoch
    epochs            epochs stored
    max_epochs        train.epochs of the config
    stopped_early     true when early stopping ended the run
    seconds_per_epoch mean of train_seconds + eval_seconds over the stored epochs
    started_at, finished_at   UTC, ISO 8601
    package_version, git_commit   provenance of the code that ran it
    tags, note        the run's tags (space-separated) and note (kni tag / kni note)
    group_tags, group_note    the tags and note of the run's group (kni tag --group)
    then, when any exported run has top-N results, one column per top-N metric stored
    (precision@K, recall@K, f1@K, full_recall@K, full_ndcg@K in that order and by K): its
    value at the chosen epoch, empty when the run has none there

``kni export --groups --csv PATH`` (one row per group)::

    group             group key: config hash (its first 8 characters are the group id), dataset,
                      model or recipe name
    group_by          config, dataset, model or recipe
    label             human label (recipe and the settings that differ between groups)
    recipe, dataset, model, config_hash
                      the group's values, ';'-joined when a group mixes several
    n                 number of runs (seeds) that count (one run per seed, see above)
    seeds             their seeds, space-separated
    at                the --at choice
    METRIC_mean, METRIC_std   for METRIC in train_loss, valid_auc, valid_logloss, valid_acc,
                      test_auc, test_logloss, test_acc (sample std; empty for n = 1)
    epoch_mean, epoch_std     the chosen epoch (the best epoch with --at best)
    train_seconds_per_epoch, eval_seconds_per_epoch, seconds_per_epoch
                      means over every stored epoch of the group's runs
    run_ids           ids of the runs that count, space-separated
    tags, note        the group's tags and note (kni tag --group, kni note --group); grouped by
                      dataset, model or recipe: those of its configurations ('; '-joined notes)
    then METRIC_mean, METRIC_std for each top-N metric any group has (as above)

Numbers are written with Python's shortest round-trip representation, so reading them back
gives the stored values exactly.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Iterable, Sequence

import numpy as np

from kni_core import protocol
from kni_core.config import RunConfig, canonical, stable_hash
from kni_core.errors import KniError

from .store import COMPLETED, LIVE, PRUNED, RUNNING, STATUSES, Epoch, Run, Store, StoreError, Sweep

__all__ = ["CompareError", "METRICS", "TOPK_FAMILIES", "is_topk_metric", "topk_columns", "GROUP_BY",
           "RUN_COLUMNS", "GROUP_COLUMNS", "parse_at", "RunPoint",
           "group_id", "GROUP_ID_LENGTH", "ALPHA", "min_pvalue", "seeds_needed",
           "Group", "PairedResult", "mean_std", "sign_flip_pvalue", "bootstrap_ci", "paired_test", "points",
           "group_points", "resolve_group", "matrix", "run_rows", "group_rows", "write_csv", "select_runs",
           "lower_is_better", "EXACT_MAX_SEEDS", "MC_PATTERNS", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED",
           "SweepPoint", "KeyEffect", "SweepRanking", "sweep_points", "key_effects", "rank_sweep", "EFFECT_LEVELS",
           "stored_best", "sweep_rows"]

METRICS = ("train_loss", "valid_auc", "valid_logloss", "valid_acc", "test_auc", "test_logloss", "test_acc")
GROUP_BY = ("config", "dataset", "model", "recipe")
#: Statuses that count unless --status says otherwise (a pruned run counts at its best epoch).
DEFAULT_STATUSES = (COMPLETED, RUNNING, PRUNED)
#: Up to this many shared seeds the permutation test enumerates every sign pattern.
EXACT_MAX_SEEDS = 20
MC_PATTERNS = 200_000
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
#: Significance level of the paired verdict.
ALPHA = 0.05

RUN_COLUMNS = ("run_id", "recipe", "dataset", "model", "config_hash", "seed", "status", "counts", "device", "select_on",
               "at", "epoch", *METRICS, "train_seconds", "eval_seconds", "best_epoch", "epochs", "max_epochs",
               "stopped_early", "seconds_per_epoch", "started_at", "finished_at", "package_version",
               "git_commit", "tags", "note", "group_tags", "group_note")
GROUP_COLUMNS = ("group", "group_by", "label", "recipe", "dataset", "model", "config_hash", "n", "seeds", "at",
                 *[f"{m}_{s}" for m in METRICS for s in ("mean", "std")], "epoch_mean", "epoch_std",
                 "train_seconds_per_epoch", "eval_seconds_per_epoch", "seconds_per_epoch", "run_ids", "tags", "note")


#: Characters of the config hash that name a group everywhere (kni runs, kni compare, the workbench).
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


def check_metric(metric: str) -> str:
    if metric not in METRICS and not is_topk_metric(metric):
        raise CompareError(f"--metric: expected one of {', '.join(METRICS)}, or a top-N metric such as "
                           f"recall@20, precision@10, f1@5, full_recall@20, full_ndcg@20; got {metric!r}")
    return metric


def topk_columns(rows: Sequence[dict], suffixes: Sequence[str] = ("",)) -> list[str]:
    """The top-N metric columns present in ``rows`` (``METRIC`` + each suffix), in family and K order."""
    names: set[str] = set()
    for row in rows:
        for key in row:
            for suffix in suffixes:
                base = key[:len(key) - len(suffix)] if key.endswith(suffix) else ""
                if is_topk_metric(base):
                    names.add(base)
    return [f"{m}{s}" for m in sorted(names, key=topk_order) for s in suffixes]


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


# --------------------------------------------------------------------------------------------
# statistics


def _finite(values: Iterable[float | None]) -> np.ndarray:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1) of the finite values; NaN where undefined."""
    arr = _finite(values)
    if arr.size == 0:
        return math.nan, math.nan
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return mean, std


def sign_flip_pvalue(diffs: Sequence[float], *, exact_max: int = EXACT_MAX_SEEDS, n_random: int = MC_PATTERNS,
                     seed: int = 0) -> tuple[float, bool]:
    """Two-sided paired sign-flip permutation p-value of mean(diffs) = 0.

    Returns ``(p, exact)``. With ``n <= exact_max`` every one of the ``2^n`` sign patterns is
    evaluated (the identity included, so p >= 2^-n); otherwise ``n_random`` seeded random
    patterns plus the observed one (p = (hits + 1) / (n_random + 1))."""
    d = np.asarray(diffs, dtype=float)
    n = d.size
    if n == 0:
        raise CompareError("no paired differences")
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)
    if n <= exact_max:
        hits = 0
        total = 1 << n
        bits = np.arange(n)
        chunk = 1 << 16
        for start in range(0, total, chunk):
            codes = np.arange(start, min(total, start + chunk))
            signs = 1.0 - 2.0 * ((codes[:, None] >> bits) & 1)
            means = np.abs(signs @ d) / n
            hits += int(np.count_nonzero(means >= observed - tol))
        return hits / total, True
    rng = np.random.default_rng(seed)
    hits = 0
    remaining = n_random
    while remaining:
        k = min(remaining, 1 << 14)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(k, n))
        hits += int(np.count_nonzero(np.abs(signs @ d) / n >= observed - tol))
        remaining -= k
    return (hits + 1) / (n_random + 1), False


def min_pvalue(n: int, *, exact_max: int = EXACT_MAX_SEEDS, n_random: int = MC_PATTERNS) -> float:
    """The smallest p-value :func:`sign_flip_pvalue` can return for ``n`` paired differences.

    Exact test: 2 / 2^n (only the observed pattern and its mirror are as extreme, when every
    difference has the same sign). Monte Carlo: 1 / (n_random + 1)."""
    if n < 1:
        return 1.0
    return 2.0 / (1 << n) if n <= exact_max else 1.0 / (n_random + 1)


def seeds_needed(alpha: float = ALPHA) -> int:
    """The fewest paired seeds whose exact test can reach p < ``alpha``."""
    n = 1
    while min_pvalue(n) >= alpha:
        n += 1
    return n


def bootstrap_ci(diffs: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (resampling the seeds)."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        raise CompareError("no paired differences")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------------
# runs -> points -> groups


@dataclass
class RunPoint:
    """A run, its epochs and the one epoch ``--at`` chose (None when it has none)."""

    run: Run
    epochs: list[Epoch]
    point: Epoch | None
    truncated: bool = False      # --at original: the run stopped before the replayed rule would
    topk: dict = field(default_factory=dict)    # top-N metrics stored for the chosen epoch

    def value(self, metric: str) -> float | None:
        if self.point is None:
            return None
        if is_topk_metric(metric):
            return self.topk.get(metric)
        return getattr(self.point, metric)

    def seconds_per_epoch(self) -> tuple[float, float]:
        """Mean training and evaluation seconds over the stored epochs."""
        return (mean_std(e.train_seconds for e in self.epochs)[0],
                mean_std(e.eval_seconds for e in self.epochs)[0])


def replay_original(run: Run, epochs: Sequence[Epoch]) -> tuple[Epoch, bool]:
    """The epoch the original code would report: selection *and* early stopping on test.

    ``select_on`` never changes a run's trajectory (evaluation has its own seeded generator),
    so replaying the rule on the stored test metrics gives exactly what a ``select_on: test``
    run reports - unless the stored run ended first (its own early stop), flagged ``True``.
    """
    patience = int(run.config.get("train", {}).get("patience", 10))
    aucs = [e.test_auc if e.test_auc is not None else float("nan") for e in epochs]
    lls = [e.test_logloss if e.test_logloss is not None else float("nan") for e in epochs]
    best, stop = protocol.replay(aucs, lls, patience)
    truncated = stop is None and len(epochs) < run.max_epochs and run.status != RUNNING
    return epochs[best], truncated


def choose_epoch(run: Run, epochs: Sequence[Epoch], at: str | int) -> Epoch | None:
    if not epochs:
        return None
    if at == "last":
        return epochs[-1]
    if at == "original":
        return replay_original(run, epochs)[0]
    if at == "best":
        target = run.best_epoch
    else:
        target = int(at)
    return next((e for e in epochs if e.epoch == target), None)


def select_runs(store: Store, *, ids: Sequence[int] = (), recipe: str | None = None, all_: bool = False,
                dataset: str | None = None, status: Sequence[str] | None = None,
                sweep: int | None = None) -> list[Run]:
    """The runs a compare / export selection names (ids must exist)."""
    given = sum(bool(x) for x in (ids, recipe, all_, sweep is not None))
    if given > 1:
        raise CompareError("give run ids, --recipe, --sweep or --all, not several")
    statuses = _statuses(status, explicit_ids=bool(ids))
    if sweep is not None:
        store.get_sweep(sweep)                            # a clear error for an unknown sweep
        return store.runs(sweep=sweep, dataset=dataset, status=statuses)
    if ids:
        missing = store.missing(ids)
        if missing:
            raise StoreError(f"no run with id {', '.join(map(str, missing))} in {store.where} (kni runs lists them)")
        runs = store.runs(ids=ids, dataset=dataset)
        return [r for r in runs if statuses is None or r.status in statuses]
    runs = store.runs(recipe=recipe, dataset=dataset, status=statuses)
    if recipe and not runs:
        known = sorted({r.recipe for r in store.runs()})
        hint = f"; recipes with runs: {', '.join(known)}" if known else ""
        raise CompareError(f"--recipe {recipe}: no {'/'.join(statuses or STATUSES)} runs{hint}")
    return runs


def _statuses(status: Sequence[str] | None, explicit_ids: bool) -> tuple[str, ...] | None:
    if not status:
        return None if explicit_ids else DEFAULT_STATUSES
    out: list[str] = []
    for s in status:
        for part in str(s).split(","):
            part = part.strip().lower()
            if part == "all":
                return None
            if part not in STATUSES:
                raise CompareError(f"--status: expected one of {', '.join(STATUSES)} or all; got {part!r}")
            out.append(part)
    return tuple(out)


def points(store: Store, runs: Sequence[Run], at: str | int) -> list[RunPoint]:
    epochs = store.epochs_of(r.id for r in runs)
    out = [RunPoint(r, epochs[r.id], choose_epoch(r, epochs[r.id], at)) for r in runs]
    if at == "original":
        for p in out:
            p.truncated = bool(p.epochs) and replay_original(p.run, p.epochs)[1]
    topk = store.topk_of(r.id for r in runs)
    for p in out:
        if p.point is not None:
            for t in topk[p.run.id]:
                if t.epoch == p.point.epoch:
                    p.topk.update(t.metrics)
    return out


@dataclass
class Group:
    key: str
    by: str
    members: list[RunPoint] = field(default_factory=list)          # the runs that count
    without_point: list[RunPoint] = field(default_factory=list)    # counted for their seed, no epoch at --at
    superseded: list[RunPoint] = field(default_factory=list)       # older runs of a seed
    pending: list[RunPoint] = field(default_factory=list)          # newer runs of a seed not (yet) counted
    label: str = ""
    differs: str = ""

    @property
    def n(self) -> int:
        return len(self.members)

    @property
    def id(self) -> str:
        """The group id shown everywhere: a short config hash, or the dataset / model / recipe."""
        return group_id(self.key) if self.by in ("config", "settings") else self.key

    def counted_for(self, p: RunPoint) -> RunPoint | None:
        """The run that counts for ``p``'s seed in ``p``'s configuration."""
        return next((m for m in self.members + self.without_point
                     if m.run.seed == p.run.seed and m.run.config_hash == p.run.config_hash), None)

    def seed_notes(self) -> list[str]:
        """One line per run of a repeated seed that does not count, and why (sorted by seed)."""
        notes = []
        for p in sorted(self.pending + self.superseded, key=lambda q: (q.run.seed, q.run.id)):
            counted = self.counted_for(p)
            if counted is None:
                continue
            c = counted.run
            if any(p is q for q in self.pending):
                doing = "still training" if p.run.status in LIVE else p.run.status
                notes.append(f"seed {p.run.seed}: run {p.run.id} {doing}, {c.status} run {c.id} counts")
            else:
                notes.append(f"seed {p.run.seed}: run {p.run.id} superseded by the newer {c.status} run {c.id}")
        return notes

    @property
    def seeds(self) -> list[int]:
        return sorted(m.run.seed for m in self.members)

    def values(self, metric: str) -> list[float | None]:
        return [m.value(metric) for m in self.members]

    def stat(self, metric: str) -> tuple[float, float]:
        return mean_std(self.values(metric))

    def by_seed(self, metric: str) -> dict[int, float]:
        out = {}
        for m in self.members:
            v = m.value(metric)
            if v is not None and math.isfinite(v):
                out[m.run.seed] = v
        return out

    def distinct(self, attr: str) -> str:
        return ";".join(sorted({str(getattr(m.run, attr)) for m in self.members + self.without_point}))

    def epoch_stat(self) -> tuple[float, float]:
        return mean_std(m.point.epoch for m in self.members if m.point is not None)

    def seconds(self) -> tuple[float, float, float]:
        """Mean training, evaluation and total seconds per epoch over every stored epoch."""
        epochs = [e for m in self.members for e in m.epochs]
        tr = mean_std(e.train_seconds for e in epochs)[0]
        ev = mean_std(e.eval_seconds for e in epochs)[0]
        tot = mean_std((e.train_seconds or 0.0) + (e.eval_seconds or 0.0) for e in epochs
                       if e.train_seconds is not None or e.eval_seconds is not None)[0]
        return tr, ev, tot


def _key(run: Run, by: str) -> str:
    if by == "settings":                       # the configuration without the dataset (matrix columns)
        cfg = canonical(json.loads(run.config_json))
        for k in ("seed", "device", "name", "dataset"):
            cfg.pop(k, None)
        return stable_hash(cfg)
    if by not in GROUP_BY:
        raise CompareError(f"--group-by: expected one of {', '.join(GROUP_BY)}; got {by!r}")
    return {"config": run.config_hash, "dataset": run.dataset, "model": run.model, "recipe": run.recipe}[by]


def counted_run(runs: Sequence[RunPoint]) -> RunPoint:
    """Of the runs of one seed in one configuration, the one that counts: the newest completed
    run, else the newest run (see "One run per seed" in the module docstring)."""
    completed = [p for p in runs if p.run.status == COMPLETED]
    return max(completed or runs, key=lambda p: p.run.id)


def group_points(pts: Sequence[RunPoint], by: str = "config") -> list[Group]:
    """Groups in order of first appearance; one run per seed and configuration counts."""
    groups: dict[str, Group] = {}
    seeds: dict[str, dict[tuple[str, int], list[RunPoint]]] = {}
    for p in pts:
        key = _key(p.run, by)
        groups.setdefault(key, Group(key, by))
        seeds.setdefault(key, {}).setdefault((p.run.config_hash, p.run.seed), []).append(p)
    for key, g in groups.items():
        for runs in seeds[key].values():
            counted = counted_run(runs)
            for p in runs:
                if p is not counted:
                    (g.pending if p.run.id > counted.run.id else g.superseded).append(p)
            (g.members if counted.point is not None else g.without_point).append(counted)
        g.members.sort(key=lambda m: (m.run.seed, m.run.id))
    out = list(groups.values())
    _label(out)
    return out


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _settings(g: Group) -> dict[str, Any]:
    """A group's configuration, flat, without seed, device and name; keys added since its runs
    were stored read as their defaults (so an older run does not differ by ``null``)."""
    run = (g.members or g.without_point)[0].run
    raw = json.loads(run.config_json)
    try:
        cfg = RunConfig.from_dict(raw).to_dict()
    except (KniError, TypeError, ValueError):
        cfg = canonical(raw)
    for k in ("seed", "device", "name"):
        cfg.pop(k, None)
    return _flat(cfg)


def differing(groups: Sequence[Group], limit: int | None = 80) -> list[str]:
    """For each group, ``key=value`` of the settings (dataset aside) that differ among ``groups``."""
    flats = [_settings(g) for g in groups]
    keys = sorted(set().union(*flats))
    varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    out = []
    for f in flats:
        text = ", ".join(f"{k}={json.dumps(f.get(k))}" for k in varying if not k.startswith("dataset."))
        out.append(text if limit is None or len(text) <= limit else text[:limit - 3] + "...")
    return out


def _label(groups: list[Group]) -> None:
    """Labels; for configuration groups, also the settings that differ between them."""
    for g in groups:
        g.label = g.key if g.by not in ("config", "settings") else f"{g.distinct('recipe')} {g.id}"
    if not groups or groups[0].by not in ("config", "settings") or len(groups) < 2:
        return
    for g, text in zip(groups, differing(groups)):
        g.differs = text


def resolve_group(groups: Sequence[Group], ref: str) -> Group:
    """A configuration group by config-hash prefix, exact group key or recipe name."""
    exact = [g for g in groups if g.key == ref]
    if exact:
        return exact[0]
    by_hash = [g for g in groups if g.by == "config" and g.key.startswith(ref)]
    by_recipe = [g for g in groups if ref in g.distinct("recipe").split(";")]
    found = by_hash or by_recipe
    if len(found) == 1:
        return found[0]
    if not found:
        names = ", ".join(f"{g.id} ({g.distinct('recipe')})" for g in groups) or "none"
        raise CompareError(f"--paired: no group {ref!r} among the selected runs; groups: {names}")
    names = ", ".join(f"{g.id} ({g.differs or g.distinct('recipe')})" for g in found)
    raise CompareError(f"--paired: {ref!r} names several configurations ({names}); give a config hash prefix")


@dataclass
class PairedResult:
    a: Group
    b: Group
    metric: str
    seeds: list[int]
    a_values: list[float]
    b_values: list[float]
    mean_a: float
    mean_b: float
    diff: float                 # mean(A) - mean(B) over the shared seeds
    diff_std: float             # sample std of the per-seed differences
    p_value: float
    exact: bool
    ci: tuple[float, float]
    noise: float                # max of the two groups' seed std over the shared seeds
    within_noise: bool
    better: str | None          # "A" or "B" when the difference is significant, else None
    verdict: str = ""           # "significant", "not significant", "inconclusive" or "too few seeds"
    min_p: float = 1.0          # the smallest p-value reachable with these many seeds
    alpha: float = ALPHA
    a_differs: str = ""         # the settings in which A and B differ (each side's values)
    b_differs: str = ""

    def verdict_text(self) -> str:
        """The verdict in words, with the numbers it rests on (shared by kni compare and the workbench)."""
        n = len(self.seeds)
        ci = f"[{self.ci[0]:+.4f}, {self.ci[1]:+.4f}]"
        if self.verdict == "too few seeds":
            return (f"no verdict possible: with {n} shared seed{'s' if n != 1 else ''} the smallest reachable "
                    f"p is 2/2^{n} = {self.min_p:.4g} >= {self.alpha:g}; {seeds_needed(self.alpha)} or more "
                    f"shared seeds can show a difference")
        if self.verdict == "significant":
            return f"{self.better} better: p = {self.p_value:.4g} < {self.alpha:g} and the 95% CI {ci} excludes 0"
        if self.verdict == "inconclusive":
            return f"inconclusive: p = {self.p_value:.4g} < {self.alpha:g} but the 95% CI {ci} includes 0"
        return f"no significant difference at {self.alpha:g} (p = {self.p_value:.4g}, 95% CI {ci})"

    def noise_text(self) -> str:
        if not math.isfinite(self.noise):
            return "one shared seed: no estimate of the seed noise"
        if self.within_noise:
            return f"|difference| {abs(self.diff):.4f} < seed std {self.noise:.4f}: within the seed noise"
        return f"|difference| {abs(self.diff):.4f} >= seed std {self.noise:.4f}"

    def to_dict(self) -> dict:
        return {"a": self.a.key, "a_id": self.a.id, "a_label": self.a.label, "b": self.b.key, "b_id": self.b.id,
                "b_label": self.b.label, "a_differs": self.a_differs, "b_differs": self.b_differs,
                "metric": self.metric, "n": len(self.seeds), "seeds": self.seeds,
                "a_values": self.a_values, "b_values": self.b_values, "mean_a": _j(self.mean_a),
                "mean_b": _j(self.mean_b), "diff": _j(self.diff), "diff_std": _j(self.diff_std),
                "p_value": _j(self.p_value), "p_exact": self.exact, "min_p": _j(self.min_p), "alpha": self.alpha,
                "ci95": [_j(self.ci[0]), _j(self.ci[1])], "noise": _j(self.noise),
                "within_noise": self.within_noise, "verdict": self.verdict, "verdict_text": self.verdict_text(),
                "better": self.better}


def paired_test(a: Group, b: Group, metric: str, *, resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = BOOTSTRAP_SEED) -> PairedResult:
    """Compare two groups over the seeds both have (see the module docstring)."""
    if a is b or (a.by == b.by and a.key == b.key):
        raise CompareError(f"--paired: A and B are the same group ({a.id}); choose two different groups")
    va, vb = a.by_seed(metric), b.by_seed(metric)
    seeds = sorted(set(va) & set(vb))
    if not seeds:
        raise CompareError(f"--paired: {a.label} (seeds {a.seeds}) and {b.label} (seeds {b.seeds}) share no seed")
    xa = [va[s] for s in seeds]
    xb = [vb[s] for s in seeds]
    d = np.array(xa) - np.array(xb)
    p, exact = sign_flip_pvalue(d, seed=seed)
    ci = bootstrap_ci(d, resamples=resamples, seed=seed)
    mean_a, std_a = mean_std(xa)
    mean_b, std_b = mean_std(xb)
    noise = max(std_a, std_b) if len(seeds) > 1 else math.nan
    diff = float(d.mean())
    within = not (abs(diff) >= noise)            # also True when the noise is unknown (n = 1)
    min_p = min_pvalue(len(seeds))
    better = None
    if min_p >= ALPHA:
        verdict = "too few seeds"
    elif p >= ALPHA:
        verdict = "not significant"
    elif ci[0] <= 0.0 <= ci[1]:
        verdict = "inconclusive"
    else:
        verdict = "significant"
        a_wins = diff < 0 if lower_is_better(metric) else diff > 0
        better = "A" if a_wins else "B"
    a_differs, b_differs = differing([a, b], limit=None)
    return PairedResult(a, b, metric, seeds, xa, xb, mean_a, mean_b, diff, mean_std(d)[1], p, exact, ci,
                        noise, within, better, verdict, min_p, a_differs=a_differs, b_differs=b_differs)


@dataclass
class Matrix:
    metric: str
    rows: list[str]             # datasets
    cols: list[str]             # column keys (model or recipe name; for config: a hash of the settings)
    cells: dict[tuple[str, str], Group]
    col_labels: dict[str, str]
    by: str = "model"

    def cell_ids(self, dataset: str, col: str) -> list[str]:
        """The group ids of the configurations in a cell (one, unless the cell mixes several)."""
        g = self.cells.get((dataset, col))
        if g is None:
            return []
        return [group_id(h) for h in dict.fromkeys(m.run.config_hash for m in g.members + g.without_point)]


def matrix(pts: Sequence[RunPoint], by: str, metric: str) -> Matrix:
    """Dataset rows x columns, each cell a Group of the runs of that dataset and column.

    Columns by ``model`` (KNI / NI, the paper's Table 2), ``recipe``, or ``config``: the
    configuration *without its dataset section*, so that the same settings run on several
    datasets share a column, labelled by model and the settings that differ between columns.
    Such a column has no id of its own: each of its cells is one configuration group, named by
    its group id (:meth:`Matrix.cell_ids`), as everywhere else.
    """
    if by == "dataset":
        raise CompareError("--matrix: rows are datasets already; group the columns by config, model or recipe")
    key = "settings" if by == "config" else by
    rows: list[str] = []
    for p in pts:
        if p.run.dataset not in rows:
            rows.append(p.run.dataset)
    cols_groups = group_points(pts, key)
    cols = [g.key for g in cols_groups]
    labels = {g.key: g.label for g in cols_groups}
    if key == "settings":
        for g in cols_groups:
            labels[g.key] = f"{g.distinct('model')} " + (f"[{g.differs}]" if g.differs else g.distinct("recipe"))
    cells: dict[tuple[str, str], Group] = {}
    for ds in rows:
        for g in group_points([p for p in pts if p.run.dataset == ds], key):
            cells[(ds, g.key)] = g
    return Matrix(metric, rows, cols, cells, labels, by)


# --------------------------------------------------------------------------------------------
# rows and CSV


def _j(x: Any) -> Any:
    """JSON/CSV-safe value: NaN -> None, datetimes -> ISO."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, datetime):
        return x.isoformat(timespec="seconds")
    return x


def run_rows(pts: Sequence[RunPoint], at: str | int) -> list[dict]:
    counting = {id(m) for g in group_points(pts, "config") for m in g.members}
    rows = []
    for p in pts:
        r, e = p.run, p.point
        tr, ev = p.seconds_per_epoch()
        row = {"run_id": r.id, "recipe": r.recipe, "dataset": r.dataset, "model": r.model,
               "config_hash": r.config_hash, "seed": r.seed, "status": r.status, "counts": id(p) in counting,
               "device": r.device,
               "select_on": r.select_on, "at": str(at), "epoch": e.epoch if e else None,
               **{m: (getattr(e, m) if e else None) for m in METRICS},
               "train_seconds": e.train_seconds if e else None, "eval_seconds": e.eval_seconds if e else None,
               "best_epoch": r.best_epoch, "epochs": len(p.epochs), "max_epochs": r.max_epochs,
               "stopped_early": bool(r.stopped_early),
               "seconds_per_epoch": (tr + ev) if p.epochs and math.isfinite(tr + ev) else None,
               "started_at": r.started_at, "finished_at": r.finished_at,
               "package_version": r.package_version, "git_commit": r.git_commit,
               "tags": " ".join(r.tags), "note": r.note, "group_tags": " ".join(r.group_tags),
               "group_note": r.group_note, **p.topk}
        rows.append({k: _j(v) for k, v in row.items()})
    return rows


def group_rows(groups: Sequence[Group], at: str | int) -> list[dict]:
    rows = []
    for g in groups:
        row: dict[str, Any] = {"group": g.key, "group_by": g.by,
                               "label": g.label + (f" [{g.differs}]" if g.differs else ""),
                               "recipe": g.distinct("recipe"), "dataset": g.distinct("dataset"),
                               "model": g.distinct("model"), "config_hash": g.distinct("config_hash"),
                               "n": g.n, "seeds": " ".join(map(str, g.seeds)), "at": str(at)}
        for m in METRICS:
            mean, std = g.stat(m)
            row[f"{m}_mean"], row[f"{m}_std"] = mean, std
        row["epoch_mean"], row["epoch_std"] = g.epoch_stat()
        tr, ev, tot = g.seconds()
        row.update(train_seconds_per_epoch=tr, eval_seconds_per_epoch=ev, seconds_per_epoch=tot,
                   run_ids=" ".join(str(m.run.id) for m in g.members))
        for m in sorted({k for p in g.members for k in p.topk}, key=topk_order):
            row[f"{m}_mean"], row[f"{m}_std"] = g.stat(m)
        runs = [m.run for m in g.members + g.without_point]
        row["tags"] = " ".join(sorted({t for r in runs for t in r.group_tags}))
        row["note"] = "; ".join(dict.fromkeys(r.group_note for r in runs if r.group_note)) or None
        rows.append({k: _j(v) for k, v in row.items()})
    return rows


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_csv(rows: Sequence[dict], columns: Sequence[str], stream: IO[str]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])


def csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    write_csv(rows, columns, buf)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# sweeps

#: Numeric keys with more distinct values than this are cut into this many bins (key effects).
EFFECT_LEVELS = 3


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
    for g in group_points(pts, "config"):
        member = (g.members or g.without_point)[0].run
        point = by_number.setdefault(member.sweep_point or 0, SweepPoint(member.sweep_point or 0, member.params, None))
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
            ordered = sorted(values, key=lambda vm: vm[0])
            for chunk in np.array_split(np.arange(len(ordered)), EFFECT_LEVELS):
                part = [ordered[i] for i in chunk]
                if part:
                    label = f"{_level_label(part[0][0])}..{_level_label(part[-1][0])}"
                    levels.append((label, float(np.mean([m for _, m in part])), len(part)))
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
    statuses = _statuses(status, explicit_ids=False)
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
            row[f"{m}_mean"], row[f"{m}_std"] = _j(mean), _j(std)
        e_mean, e_std = p.group.epoch_stat() if p.group else (math.nan, math.nan)
        row["epoch_mean"], row["epoch_std"] = _j(e_mean), _j(e_std)
        rows.append(row)
    return rows
