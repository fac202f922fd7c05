"""Everything a report shows, computed once from the stored runs (the page, the tables, the
figures and ``report.json`` all read this, so they cannot disagree).

The table is the dataset x model matrix (the paper's Table 2 shape): columns by model, or by
configuration when two configurations of one model would share a cell. Each cell is a group of
seeds; it is marked when the paired test against the reference column of its row (``--reference
MODEL``, default KNI) says *significant* - the same test and verdict as ``kni compare --paired``.
By default a report counts only runs that ended normally (:data:`REPORTED`); the caption says
which runs were left out.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from kni_core.errors import KniError

from .. import analysis as cmp
from ..analysis.diff import flatten
from ..store.statuses import COMPLETED, PRUNED

#: The statuses a report counts unless told otherwise: a paper's table holds finished runs. A
#: running run would enter at its best epoch so far and a crashed one at its last, as if done; a
#: pruned run ended normally (its sweep's pruner) and counts at its best epoch, as in kni compare.
REPORTED = (COMPLETED, PRUNED)


class ReportError(KniError):
    """A selection a report cannot be made of (nothing written)."""


def latex_escape(text: str) -> str:
    """``text`` as LaTeX text-mode source: specials escaped, ``< > |`` spelled out (OT1 fonts
    print them as other glyphs), unprintable characters dropped."""
    out = []
    for ch in text:
        if ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch in _LATEX_WORDS:
            out.append(_LATEX_WORDS[ch])
        elif ch.isprintable():
            out.append(ch)
    return "".join(out)


_LATEX_WORDS = {"~": "\\textasciitilde{}", "^": "\\textasciicircum{}", "\\": "\\textbackslash{}",
                "<": "\\textless{}", ">": "\\textgreater{}", "|": "\\textbar{}"}


def plot_text(text: str) -> str:
    """``text`` as matplotlib draws it literally: a ``$`` pair would start mathtext (and a name
    with ``$...$`` in it that is no valid TeX raise)."""
    return text.replace("$", "\\$")


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
    # status (or "superseded": an older run of a seed that counts) -> runs of the selection not counted
    left_out: dict[str, int] = field(default_factory=dict)

    @property
    def counted(self) -> int:
        """The runs that enter the table's means."""
        return sum(c.n for c in self.cells.values())

    def caption(self, tex: bool = False) -> str:
        """The table's caption as LaTeX source (``tex``) or as plain text (Markdown, HTML)."""
        e = latex_escape if tex else str
        # in LaTeX text mode OT1 fonts print "<" as an inverted exclamation mark: math mode
        pm, dagger, pct, below = (("$\\pm$", "$^\\dagger$", "\\%", f"$p < {cmp.ALPHA:g}$") if tex
                                  else ("±", "†", "%", f"p < {cmp.ALPHA:g}"))
        seeds = sorted({c.n for c in self.cells.values()})
        n = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        select = sorted({p.run.select_on for p in self.pts})
        at = {"best": f"the epoch selected on {'/'.join(select)}", "last": "the last epoch",
              "original": "the original protocol's test-based epoch"}.get(str(self.at), f"epoch {self.at}")
        metrics = ", ".join(m.replace("_", " ") for m in self.metrics)
        text = (f"Mean {pm} std over {n} seed{'s' if n != '1' else ''} of {e(metrics)}, "
                f"each run read at {e(at)}. Bold: the best of its dataset.")
        if self.reference is not None:
            text += (f" {dagger}: different from {e(self.col_labels.get(self.reference, self.reference))} of the "
                     f"same dataset (paired sign-flip test over shared seeds, {below}, bootstrap 95{pct} CI "
                     "excluding 0).")
            tests = [t for c in self.cells.values() for t in c.test.values()]
            few = sum(t.verdict == "too few seeds" for t in tests)
            if few:                                # a missing dagger there says nothing
                need = cmp.seeds_needed(cmp.ALPHA)
                which = "every test" if few == len(tests) else f"{few} of the {len(tests)} tests"
                text += (f" No {dagger} is possible with fewer than {need} shared seeds (the smallest p of the "
                         f"exact test over n seeds is {'$2/2^n$' if tex else '2/2^n'}): {which} had fewer.")
        counted = Counter(m.run.status for c in self.cells.values() for m in c.group.members)
        if set(counted) - {COMPLETED}:             # name what else entered the means
            text += " Runs counted: " + ", ".join(f"{k} {s}" for s, k in sorted(counted.items())) + "."
        if self.left_out:
            total = sum(self.left_out.values())
            text += (f" {total} run{'s' if total != 1 else ''} not counted: "
                     + ", ".join(f"{k} {s}" for s, k in sorted(self.left_out.items())) + ".")
        return text


def gather(store: Any, pts: Sequence[cmp.RunPoint], metrics: Sequence[str], at: str | int,
           reference: str | None = None, statuses: Sequence[str] | None = None) -> ReportData:
    """The report of ``pts`` (chosen at ``at``) counting the runs of ``statuses`` (None: every
    run); ReportError for what cannot be reported."""
    left_out = dict(Counter(p.run.status for p in pts if statuses is not None and p.run.status not in statuses))
    pts = [p for p in pts if statuses is None or p.run.status in statuses]
    if not pts:
        none = f" of status {'/'.join(statuses)}" if statuses is not None else ""
        raise ReportError(f"no runs{none} to report (kni runs lists them; --status all includes unfinished runs)")
    empty = [p.run.id for p in pts if p.point is None]
    if empty:
        raise ReportError(f"run(s) {', '.join(map(str, empty))} have no epoch at --at {at}; leave them out "
                          "(--status, run ids) or choose another --at")
    damaged = [f"run {p.run.id} ({'; '.join(p.run.damage + tuple(d for e in p.epochs for d in e.damage))})"
               for p in pts if p.run.damage or any(e.damage for e in p.epochs)]
    if damaged:
        raise ReportError(f"damaged rows cannot enter a report: {', '.join(damaged)}")
    for m in metrics:
        cmp.check_metric(m, at)
    by = "model"
    mat = cmp.matrix(pts, by, metrics[0])
    if any(len(_configs(g)) > 1 for g in mat.cells.values()):
        by = "config"                          # one model, several configurations: a column each
        mat = cmp.matrix(pts, by, metrics[0])
    ref = _reference(mat, reference)
    cols, labels, cell_groups, split_by = _one_config_per_cell(pts, mat)
    cells = {}
    for key, g in cell_groups.items():
        if g.n:
            for m in metrics:                  # a cell's mean is over every run its caption counts, or none
                lacking = g.missing(m)
                if 0 < len(lacking) < g.n:
                    raise ReportError(f"{m} at --at {at}: run(s) {', '.join(str(p.run.id) for p in lacking)} of "
                                      f"{labels.get(key[1], key[1])} on {key[0]} have no value, so its mean "
                                      f"would be over {g.n - len(lacking)} of its {g.n} runs (AUC by stratum and "
                                      "top-N are measured at each run's selected epoch: --at best, or leave "
                                      "those runs out)")
            stats = {m: g.stat(m) for m in metrics}
            cells[key] = Cell(g, {m: s[0] for m, s in stats.items()}, {m: s[1] for m, s in stats.items()})
    for ds in mat.rows:
        row = {col: c for (d, col), c in cells.items() if d == ds}
        for m in metrics:
            finite = [c for c in row.values() if math.isfinite(c.mean[m])]
            if finite:
                pick = min if cmp.lower_is_better(m) else max
                top = pick(c.mean[m] for c in finite)
                for c in finite:
                    c.best[m] = c.mean[m] == top
        if ref is None:
            continue
        # a cell is tested against the reference run on the same data: where a row's cells differ
        # in their dataset sections (split_seed...), the reference cell that agrees on those keys
        varying = {k for col in row for k in split_by.get(col, ())}
        bases = [c for col, c in row.items() if _settings_of(col) == ref]
        for col, c in row.items():
            if _settings_of(col) == ref:
                continue
            base = next((b for b in bases if all(_dataset(b).get(k) == _dataset(c).get(k) for k in varying)), None)
            if base is None:
                continue
            for m in metrics:
                if set(base.group.by_seed(m)) & set(c.group.by_seed(m)):     # both have the metric on a seed
                    c.test[m] = cmp.paired_test(base.group, c.group, m)
    groups = cmp.group_points(pts, "config")
    # computed where the stored floor is missing or out of date (kni_core.floor.FLOOR_VERSION):
    # a read-only store is not written, the report still shows it
    floors = cmp.floors_for(store, [p.run for p in pts])
    for g in cell_groups.values():             # a seed counts once: its older runs are named, not hidden
        for name, runs in (("superseded", g.superseded), ("repeated seed", g.pending)):
            if runs:
                left_out[name] = left_out.get(name, 0) + len(runs)
    return ReportData(list(metrics), at, list(pts), groups, mat.rows, cols, labels, cells, ref, by,
                      floors, {g.key: provenance(g) for g in groups}, left_out)


def _configs(g: cmp.Group) -> set[str]:
    return {m.run.config_hash for m in g.members + g.without_point}


#: Separates a column's settings key from the dataset values that split it (see below).
_SPLIT = "|"


def _settings_of(col: str) -> str:
    return col.split(_SPLIT, 1)[0]


def _dataset(cell: Cell) -> dict[str, Any]:
    return _flat_dataset(cell.group.members[0].run)


def _flat_dataset(run: Any) -> dict[str, Any]:
    return flatten(json.loads(run.config_json).get("dataset") or {}, "dataset.")


def _one_config_per_cell(pts: Sequence[cmp.RunPoint], mat: cmp.Matrix) -> tuple[
        list[str], dict[str, str], dict[tuple[str, str], cmp.Group], dict[str, list[str]]]:
    """The matrix's columns, labels and cells, with each cell that still holds several
    configurations (columns by config leave the dataset section out, so runs on two splits or
    test sets of one dataset meet in a cell) split into a column per configuration, labelled
    with the dataset values that differ (``KNI [dataset.split_seed=7]``); and the keys that
    split each such column.

    Splitting, not refusing: two splits of one dataset are a legitimate selection (a check over
    test sets); pooled, each seed would hold two runs on different test sets (the mean of both,
    "over 2n seeds", and no paired test); as columns, each is a configuration group over its own
    seeds and the reference is the cell of the same split."""
    cols: dict[str, None] = {}
    labels = dict(mat.col_labels)
    cells: dict[tuple[str, str], cmp.Group] = {}
    split_by: dict[str, list[str]] = {}
    for (ds, col), g in mat.cells.items():
        if len(_configs(g)) == 1:
            cells[(ds, col)] = g
            continue
        mine = [p for p in pts if p.run.dataset == ds and cmp.group_key(p.run, "settings") == col]
        parts = cmp.group_points(mine, "config")
        flats = [_flat_dataset((x.members + x.without_point)[0].run) for x in parts]
        keys = sorted(k for k in set().union(*flats) if len({json.dumps(f.get(k)) for f in flats}) > 1)
        for part, flat in zip(parts, flats):
            values = ", ".join(f"{k}={json.dumps(flat.get(k))}" for k in keys)
            key = col + _SPLIT + values
            split_by[key] = keys
            base = mat.col_labels.get(col, col)
            labels[key] = f"{base[:-1]}, {values}]" if base.endswith("]") else f"{base} [{values}]"
            cells[(ds, key)] = part
    for col in mat.cols:                       # each column's parts right after it, in order of appearance
        cols.update({c: None for (_, c) in cells if _settings_of(c) == col and _SPLIT not in c})
        cols.update({c: None for (_, c) in cells if _settings_of(c) == col and _SPLIT in c})
    return list(cols), labels, cells, split_by


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
