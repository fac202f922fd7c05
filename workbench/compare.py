"""Groups of runs, honest statistics over seeds, and CSV export.

Selection and grouping
----------------------
The runs are chosen by id, by recipe name or all of them, optionally filtered by dataset;
by default only ``completed`` and ``running`` runs count (a running run contributes its
best epoch so far: live mean ± std), ``--status`` widens that. Runs are grouped by
``config`` (the config hash: everything but the seed and the device), ``dataset``,
``model`` (``KNI``/``NI``) or ``recipe`` (name). When one configuration holds several runs of
the same seed, the newest one (highest id) counts and the older ones are *superseded*.

Each run contributes one epoch, chosen by ``--at``: ``best`` (the best epoch on the run's
``select_on`` split, as training selected it), ``last`` (the last stored epoch), ``N``
(epoch N; runs that have not reached it are left out and counted) or ``original`` (the
original code's protocol replayed on the stored test metrics: best test AUC among the epochs
its test-based early stopping would have run; exact, since ``select_on`` never changes a
trajectory, except for runs that stopped earlier, which are reported as truncated).

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

CSV columns
-----------
``kni export --csv PATH`` (one row per run; ``-`` writes to stdout). Metrics are those of the
epoch chosen by ``--at``; empty cells are undefined values (no such epoch, NaN metric)::

    run_id            run id (kni show RUN_ID)
    recipe            recipe name
    dataset           dataset (registry name, folder name or synthetic-PRESET)
    model             KNI (with knowledge graph) or NI (model.kg: false)
    config_hash       hash of the resolved config without seed and device (the group key)
    seed              run seed
    status            queued, running, completed, failed, cancelled or crashed
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

``kni export --groups --csv PATH`` (one row per group)::

    group             group key: config hash, dataset, model or recipe name
    group_by          config, dataset, model or recipe
    label             human label (recipe and the settings that differ between groups)
    recipe, dataset, model, config_hash
                      the group's values, ';'-joined when a group mixes several
    n                 number of runs (seeds) that count
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

Numbers are written with Python's shortest round-trip representation, so reading them back
gives the stored values exactly.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Iterable, Sequence

import numpy as np

from kni_core import protocol
from kni_core.config import stable_hash
from kni_core.errors import KniError

from .store import COMPLETED, RUNNING, STATUSES, Epoch, Run, Store, StoreError

__all__ = ["CompareError", "METRICS", "GROUP_BY", "RUN_COLUMNS", "GROUP_COLUMNS", "parse_at", "RunPoint",
           "Group", "PairedResult", "mean_std", "sign_flip_pvalue", "bootstrap_ci", "paired_test", "points",
           "group_points", "resolve_group", "matrix", "run_rows", "group_rows", "write_csv", "select_runs",
           "lower_is_better", "EXACT_MAX_SEEDS", "MC_PATTERNS", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED"]

METRICS = ("train_loss", "valid_auc", "valid_logloss", "valid_acc", "test_auc", "test_logloss", "test_acc")
GROUP_BY = ("config", "dataset", "model", "recipe")
DEFAULT_STATUSES = (COMPLETED, RUNNING)
#: Up to this many shared seeds the permutation test enumerates every sign pattern.
EXACT_MAX_SEEDS = 20
MC_PATTERNS = 200_000
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0

RUN_COLUMNS = ("run_id", "recipe", "dataset", "model", "config_hash", "seed", "status", "device", "select_on",
               "at", "epoch", *METRICS, "train_seconds", "eval_seconds", "best_epoch", "epochs", "max_epochs",
               "stopped_early", "seconds_per_epoch", "started_at", "finished_at", "package_version",
               "git_commit", "tags", "note", "group_tags", "group_note")
GROUP_COLUMNS = ("group", "group_by", "label", "recipe", "dataset", "model", "config_hash", "n", "seeds", "at",
                 *[f"{m}_{s}" for m in METRICS for s in ("mean", "std")], "epoch_mean", "epoch_std",
                 "train_seconds_per_epoch", "eval_seconds_per_epoch", "seconds_per_epoch", "run_ids", "tags", "note")


class CompareError(KniError):
    """A selection or comparison that cannot be made (unknown group, no shared seeds...)."""


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise CompareError(f"--metric: expected one of {', '.join(METRICS)}; got {metric!r}")
    return metric


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

    def value(self, metric: str) -> float | None:
        return None if self.point is None else getattr(self.point, metric)

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
                dataset: str | None = None, status: Sequence[str] | None = None) -> list[Run]:
    """The runs a compare / export selection names (ids must exist)."""
    given = sum(bool(x) for x in (ids, recipe, all_))
    if given > 1:
        raise CompareError("give run ids, --recipe or --all, not several")
    statuses = _statuses(status, explicit_ids=bool(ids))
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
    return out


@dataclass
class Group:
    key: str
    by: str
    members: list[RunPoint] = field(default_factory=list)
    without_point: list[RunPoint] = field(default_factory=list)    # no epoch at --at
    superseded: list[RunPoint] = field(default_factory=list)       # older runs of a seed
    label: str = ""
    differs: str = ""

    @property
    def n(self) -> int:
        return len(self.members)

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
        cfg = json.loads(run.config_json)
        for k in ("seed", "device", "name", "dataset"):
            cfg.pop(k, None)
        return stable_hash(cfg)
    if by not in GROUP_BY:
        raise CompareError(f"--group-by: expected one of {', '.join(GROUP_BY)}; got {by!r}")
    return {"config": run.config_hash, "dataset": run.dataset, "model": run.model, "recipe": run.recipe}[by]


def group_points(pts: Sequence[RunPoint], by: str = "config") -> list[Group]:
    """Groups in order of first appearance; within a configuration the newest run of a seed counts."""
    groups: dict[str, Group] = {}
    for p in pts:
        key = _key(p.run, by)
        g = groups.setdefault(key, Group(key, by))
        if p.point is None:
            g.without_point.append(p)
        else:
            g.members.append(p)
    for g in groups.values():
        newest: dict[tuple[str, int], RunPoint] = {}
        for m in g.members:
            k = (m.run.config_hash, m.run.seed)
            if k in newest and newest[k].run.id > m.run.id:
                g.superseded.append(m)
                continue
            if k in newest:
                g.superseded.append(newest[k])
            newest[k] = m
        g.members = sorted(newest.values(), key=lambda m: (m.run.seed, m.run.id))
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


def _label(groups: list[Group]) -> None:
    """Labels; for configuration groups, also the settings that differ between them."""
    for g in groups:
        g.label = g.key if g.by not in ("config", "settings") else f"{g.distinct('recipe')} {g.key[:8]}"
    if not groups or groups[0].by not in ("config", "settings") or len(groups) < 2:
        return
    flats = []
    for g in groups:
        run = (g.members or g.without_point)[0].run
        cfg = json.loads(run.config_json)
        for k in ("seed", "device", "name"):
            cfg.pop(k, None)
        flats.append(_flat(cfg))
    keys = sorted(set().union(*flats))
    varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    for g, f in zip(groups, flats):
        parts = [f"{k}={json.dumps(f.get(k))}" for k in varying if not k.startswith("dataset.")]
        text = ", ".join(parts)
        g.differs = text if len(text) <= 80 else text[:77] + "..."


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
        names = ", ".join(f"{g.key[:8]} ({g.distinct('recipe')})" for g in groups) or "none"
        raise CompareError(f"--paired: no group {ref!r} among the selected runs; groups: {names}")
    names = ", ".join(f"{g.key[:8]} ({g.differs or g.distinct('recipe')})" for g in found)
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
    better: str | None          # "A", "B" or None (within noise)

    def to_dict(self) -> dict:
        return {"a": self.a.key, "a_label": self.a.label, "b": self.b.key, "b_label": self.b.label,
                "metric": self.metric, "n": len(self.seeds), "seeds": self.seeds, "a_values": self.a_values,
                "b_values": self.b_values, "mean_a": _j(self.mean_a), "mean_b": _j(self.mean_b),
                "diff": _j(self.diff), "diff_std": _j(self.diff_std), "p_value": _j(self.p_value),
                "p_exact": self.exact, "ci95": [_j(self.ci[0]), _j(self.ci[1])], "noise": _j(self.noise),
                "within_noise": self.within_noise, "better": self.better}


def paired_test(a: Group, b: Group, metric: str, *, resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = BOOTSTRAP_SEED) -> PairedResult:
    """Compare two groups over the seeds both have (see the module docstring)."""
    if a is b:
        raise CompareError("--paired: A and B are the same group")
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
    better = None
    if not within:
        a_wins = diff < 0 if lower_is_better(metric) else diff > 0
        better = "A" if a_wins else "B"
    return PairedResult(a, b, metric, seeds, xa, xb, mean_a, mean_b, diff, mean_std(d)[1], p, exact, ci,
                        noise, within, better)


@dataclass
class Matrix:
    metric: str
    rows: list[str]             # datasets
    cols: list[str]             # group keys
    cells: dict[tuple[str, str], Group]
    col_labels: dict[str, str]


def matrix(pts: Sequence[RunPoint], by: str, metric: str) -> Matrix:
    """Dataset rows x columns, each cell a Group of the runs of that dataset and column.

    Columns by ``model`` (KNI / NI, the paper's Table 2), ``recipe``, or ``config``: the
    configuration *without its dataset section*, so that the same settings run on several
    datasets share a column (labelled by model and the settings that differ between columns).
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
            labels[g.key] = f"{g.distinct('model')} {g.key[:6]}" + (f" [{g.differs}]" if g.differs else "")
    cells: dict[tuple[str, str], Group] = {}
    for ds in rows:
        for g in group_points([p for p in pts if p.run.dataset == ds], key):
            cells[(ds, g.key)] = g
    return Matrix(metric, rows, cols, cells, labels)


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
    rows = []
    for p in pts:
        r, e = p.run, p.point
        tr, ev = p.seconds_per_epoch()
        row = {"run_id": r.id, "recipe": r.recipe, "dataset": r.dataset, "model": r.model,
               "config_hash": r.config_hash, "seed": r.seed, "status": r.status, "device": r.device,
               "select_on": r.select_on, "at": str(at), "epoch": e.epoch if e else None,
               **{m: (getattr(e, m) if e else None) for m in METRICS},
               "train_seconds": e.train_seconds if e else None, "eval_seconds": e.eval_seconds if e else None,
               "best_epoch": r.best_epoch, "epochs": len(p.epochs), "max_epochs": r.max_epochs,
               "stopped_early": bool(r.stopped_early),
               "seconds_per_epoch": (tr + ev) if p.epochs and math.isfinite(tr + ev) else None,
               "started_at": r.started_at, "finished_at": r.finished_at,
               "package_version": r.package_version, "git_commit": r.git_commit,
               "tags": " ".join(r.tags), "note": r.note, "group_tags": " ".join(r.group_tags),
               "group_note": r.group_note}
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
