"""Everything a report shows, computed once from the stored runs (the page, the tables, the
figures and ``report.json`` all read this, so they cannot disagree).

The table is the dataset x model matrix (the paper's Table 2 shape): columns by model, or by
configuration when two configurations of one model would share a cell. Each cell is a group of
seeds; it is marked when the paired test against the reference column of its row (``--reference
MODEL``, default KNI) says *significant* - the same test and verdict as ``kni compare --paired``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from kni_core.errors import KniError

from .. import analysis as cmp


class ReportError(KniError):
    """A selection a report cannot be made of (nothing written)."""


@dataclass
class Cell:
    group: cmp.Group
    mean: dict[str, float]
    std: dict[str, float]
    best: dict[str, bool] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)          # metric -> PairedResult against the reference

    @property
    def n(self) -> int:
        return self.group.n

    def significant(self, metric: str) -> bool:
        t = self.test.get(metric)
        return t is not None and t.verdict == "significant"


@dataclass
class ReportData:
    metrics: list[str]
    at: str | int
    pts: list[cmp.RunPoint]
    groups: list[cmp.Group]                    # configuration groups, in order
    rows: list[str]                            # datasets
    cols: list[str]
    col_labels: dict[str, str]
    cells: dict[tuple[str, str], Cell]
    reference: str | None                      # the reference column
    by: str                                    # "model" or "config"
    floors: dict[str, dict | None]
    provenance: dict[str, dict]                # group key -> versions, commits, datasets, flags

    def caption(self) -> str:
        seeds = sorted({c.n for c in self.cells.values()})
        n = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        select = sorted({p.run.select_on for p in self.pts})
        at = {"best": f"the epoch selected on {'/'.join(select)}", "last": "the last epoch",
              "original": "the original protocol's test-based epoch"}.get(str(self.at), f"epoch {self.at}")
        metrics = ", ".join(m.replace("_", " ") for m in self.metrics)
        text = (f"Mean $\\pm$ std over {n} seed{'s' if n != '1' else ''} of {metrics}, "
                f"each run read at {at}. Bold: the best of its dataset.")
        if self.reference is not None:
            text += (f" $^\\dagger$: different from {self.col_labels.get(self.reference, self.reference)} of the same "
                     f"dataset (paired sign-flip test over shared seeds, p < {cmp.ALPHA:g}, bootstrap 95\\% CI "
                     "excluding 0).")
        return text


def gather(store: Any, pts: Sequence[cmp.RunPoint], metrics: Sequence[str], at: str | int,
           reference: str | None = None) -> ReportData:
    """The report of ``pts`` (chosen at ``at``); ReportError for what cannot be reported."""
    if not pts:
        raise ReportError("no runs to report (kni runs lists them; --status all includes unfinished runs)")
    empty = [p.run.id for p in pts if p.point is None]
    if empty:
        raise ReportError(f"run(s) {', '.join(map(str, empty))} have no epoch at --at {at}; leave them out "
                          "(--status, run ids) or choose another --at")
    damaged = [f"run {p.run.id} ({'; '.join(p.run.damage + tuple(d for e in p.epochs for d in e.damage))})"
               for p in pts if p.run.damage or any(e.damage for e in p.epochs)]
    if damaged:
        raise ReportError(f"damaged rows cannot enter a report: {', '.join(damaged)}")
    for m in metrics:
        cmp.check_metric(m)
    by = "model"
    mat = cmp.matrix(pts, by, metrics[0])
    if any(len(g.distinct("config_hash").split(";")) > 1 for g in mat.cells.values()):
        by = "config"                          # one model, several configurations: a column each
        mat = cmp.matrix(pts, by, metrics[0])
    cells = {}
    for key, g in mat.cells.items():
        if g.n:
            stats = {m: g.stat(m) for m in metrics}
            cells[key] = Cell(g, {m: s[0] for m, s in stats.items()}, {m: s[1] for m, s in stats.items()})
    ref = _reference(mat, reference)
    for ds in mat.rows:
        for m in metrics:
            row = [c for (d, _), c in cells.items() if d == ds and math.isfinite(c.mean[m])]
            if row:
                pick = min if cmp.lower_is_better(m) else max
                top = pick(c.mean[m] for c in row)
                for c in row:
                    c.best[m] = c.mean[m] == top
        base = cells.get((ds, ref)) if ref is not None else None
        if base is None:
            continue
        for (d, col), c in cells.items():
            if d != ds or col == ref or not set(base.group.seeds) & set(c.group.seeds):
                continue
            for m in metrics:
                c.test[m] = cmp.paired_test(base.group, c.group, m)
    groups = cmp.group_points(pts, "config")
    floors = cmp.floors_for(store, [p.run for p in pts], compute=not store.readonly)
    return ReportData(list(metrics), at, list(pts), groups, mat.rows, mat.cols, mat.col_labels, cells, ref, by,
                      floors, {g.key: provenance(g) for g in groups})


def _reference(mat: cmp.Matrix, reference: str | None) -> str | None:
    """The column named ``reference`` (a model, recipe or label; default KNI), else None."""
    wanted = (reference or "KNI").lower()
    for col in mat.cols:
        label = mat.col_labels.get(col, col)
        if col.lower() == wanted or label.lower() == wanted or label.lower().startswith(wanted + " "):
            return col
    if reference is not None:
        raise ReportError(f"--reference {reference}: no such column; the columns are "
                          f"{', '.join(mat.col_labels.get(c, c) for c in mat.cols)}")
    return None


def provenance(group: cmp.Group) -> dict:
    """The code, environment and data a group's runs came from, flagging a group whose runs
    differ in code or data (:func:`workbench.analysis.provenance.differences`)."""
    from ..analysis.provenance import describe_code, describe_data, describe_environment, differences, read
    runs = [m.run for m in group.members]
    facts = [read(r) for r in runs]
    versions = sorted({p["package_version"] or "?" for p in facts})
    commits = sorted({p["git_commit"] or "?" for p in facts})

    def distinct(describe) -> list[str]:
        return sorted({describe(p) or "not recorded" for p in facts})

    differ = differences(facts)
    flags = []
    if differ["code"]:
        flags.append(f"its runs come from different code ({', '.join(differ['code'])})")
    if differ["data"]:
        flags.append(f"its runs read different data ({', '.join(differ['data'])})")
    if any(p["dirty"] for p in facts):
        flags.append("some runs ran from a working tree with uncommitted changes")
    return {"versions": versions, "commits": commits, "datasets": sorted({r.dataset for r in runs}),
            "code": distinct(describe_code), "environment": distinct(describe_environment),
            "data": distinct(describe_data), "differ": differ, "flags": flags,
            "runs": [r.id for r in runs], "seeds": [r.seed for r in runs],
            "config_hash": runs[0].config_hash if runs else None}
