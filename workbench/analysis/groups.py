"""Groups of runs (by configuration, dataset, model or recipe), one run per seed, and the
settings in which configuration groups differ."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from kni_core.config import RunConfig, canonical, stable_hash
from kni_core.errors import KniError

from ..store.records import Run
from ..store.statuses import COMPLETED, LIVE
from .diff import flatten
from .metrics import GROUP_BY, CompareError, group_id
from .selection import RunPoint
from .stats import mean_std


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

    def data_versions(self) -> list[list[int]]:
        """The counted runs' ids by the source files they read (as recorded; see
        :func:`.provenance.same_files`): one list when they agree. Several: the same settings read
        files that changed between the runs, or another copy of the dataset, so the mean pools
        two datasets. (Not the prepared-data key: its recipe changes between versions of this
        code while the data stays the same.)"""
        from .provenance import read, same_files
        versions: list[tuple[dict, list[int]]] = []
        for m in self.members:
            files = read(m.run)["data_files"]
            if not isinstance(files, dict):            # not recorded (runs stored before provenance)
                continue
            match = next((v for v in versions if same_files(v[0], files)), None)
            if match is None:
                versions.append((dict(files), [m.run.id]))
            else:
                match[0].update(files)
                match[1].append(m.run.id)
        return sorted(ids for _, ids in versions)

    def data_note(self) -> str:
        """A line saying that the counted runs read different data, else ''."""
        versions = self.data_versions()
        if len(versions) < 2:
            return ""
        parts = "; ".join(f"run(s) {', '.join(map(str, ids))}" for ids in versions)
        return (f"its runs read {len(versions)} different versions of the data ({parts}): the dataset's files "
                "changed between them, or another copy was read (kni show RUN lists each run's files); the "
                "mean pools them")

    @property
    def seeds(self) -> list[int]:
        return sorted(m.run.seed for m in self.members)

    @property
    def training_seeds(self) -> list[int]:
        """The seeds whose counted run is still training: read at its best epoch so far."""
        return sorted(m.run.seed for m in self.members if m.run.status in LIVE)

    def values(self, metric: str) -> list[float | None]:
        return [m.value(metric) for m in self.members]

    def stat(self, metric: str) -> tuple[float, float]:
        """Mean and std over the members that have ``metric`` (:meth:`missing` names the others)."""
        return mean_std(self.values(metric))

    def missing(self, metric: str) -> list[RunPoint]:
        """The members without a finite ``metric`` (a top-N metric read where a run did not measure
        it, a run still training before its first top-N): its mean is over the rest."""
        return [m for m in self.members if not _finite_value(m.value(metric))]

    def by_seed(self, metric: str) -> dict[int, float]:
        """``{seed: value}`` of the members; a group holding several runs of one seed (several
        configurations, grouped by model, dataset or recipe) has no single value per seed, so it
        is refused rather than one of its runs silently kept."""
        out: dict[int, float] = {}
        runs: dict[int, list[int]] = {}
        for m in self.members:
            runs.setdefault(m.run.seed, []).append(m.run.id)
            v = m.value(metric)
            if v is not None and math.isfinite(v):
                out[m.run.seed] = v
        repeated = {seed: ids for seed, ids in runs.items() if len(ids) > 1}
        if repeated:
            seed, ids = min(repeated.items())
            raise CompareError(f"{self.label or self.id} holds {len(ids)} runs of seed {seed} (runs "
                               f"{', '.join(map(str, sorted(ids)))}: {len({m.run.config_hash for m in self.members})} "
                               "configurations): a paired test needs one run per seed; pair configuration "
                               "groups (group by config)")
        return out

    def distinct(self, attr: str) -> str:
        return ";".join(sorted({str(getattr(m.run, attr)) for m in self.members + self.without_point}))

    @property
    def pooled(self) -> bool:
        """Whether the group holds several configurations (grouped by model, dataset or recipe):
        its n counts runs, not seeds, and its std holds their differences too."""
        return len(self.distinct("config_hash").split(";")) > 1

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


def group_key(run: Run, by: str) -> str:
    """What runs are grouped by: the config hash, the dataset, the model label, the recipe, or
    (``settings``) the hash of the configuration without its dataset (the matrix columns)."""
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
        key = group_key(p.run, by)
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
    return flatten(cfg)


#: The order of sections in :func:`differing`: what tells models apart first, so that a text cut
#: at its limit keeps it (``model.kg`` was cut behind a row of ``eval.topk.*`` keys).
_SECTION_ORDER = ("model", "train", "eval")


def _section_rank(key: str) -> tuple[int, str]:
    section = key.split(".", 1)[0]
    return (_SECTION_ORDER.index(section) if section in _SECTION_ORDER else len(_SECTION_ORDER), key)


def differing(groups: Sequence[Group], limit: int | None = 80) -> list[str]:
    """For each group, ``key=value`` of the settings (dataset aside) that differ among ``groups``:
    model keys, then train, then eval and the rest; a key the group does not have is left out."""
    flats = [_settings(g) for g in groups]
    keys = sorted(set().union(*flats), key=_section_rank)
    varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    out = []
    for f in flats:
        text = ", ".join(f"{k}={json.dumps(f.get(k))}" for k in varying
                         if not k.startswith("dataset.") and f.get(k) is not None)
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


def _finite_value(v: float | None) -> bool:
    return v is not None and math.isfinite(v)
