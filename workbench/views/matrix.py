"""The dataset x model matrix as ``kni compare --matrix`` and the workbench's Matrix view both
show it: a popularity-floor column, each cell's mean ± std with its count, the ▼ of a cell worse
than its split's floor, and the captions that explain the marks. One layout, two renderers."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import analysis as cmp
from ..present import fmt, pm


@dataclass(frozen=True)
class MatrixCell:
    text: str
    below_floor: bool = False             # worse than the popularity floor of its split (drawn with ▼)


@dataclass
class MatrixView:
    columns: list[str]                    # "dataset", "pop (floor)" where the metric has one, the models
    rows: list[tuple[str, list[MatrixCell]]]
    captions: list[str] = field(default_factory=list)


def row_floor(mat: cmp.Matrix, ds: str, floors: dict) -> dict | None:
    """The floor of a matrix row: its cells' split, when they share one."""
    found = {id(f): f for c in mat.cols if (g := mat.cells.get((ds, c))) is not None and g.n
             and (f := cmp.group_floor(g, floors)) is not None}
    return next(iter(found.values())) if len(found) == 1 else None


def matrix_view(mat: cmp.Matrix, floors: dict) -> MatrixView:
    with_floor = mat.metric in cmp.FLOOR_METRICS or cmp.is_stratum_metric(mat.metric)
    columns = ["dataset", *(["pop (floor)"] if with_floor else []), *(mat.col_labels[c] for c in mat.cols)]
    rows: list[tuple[str, list[MatrixCell]]] = []
    below_any = partial = False
    for ds in mat.rows:
        cells = [MatrixCell(fmt(cmp.floor_value(row_floor(mat, ds, floors), mat.metric)))] if with_floor else []
        for c in mat.cols:
            g = mat.cells.get((ds, c))
            if g is None or not g.n:
                cells.append(MatrixCell("-"))
                continue
            mean, std = g.stat(mat.metric)
            mixed = "*" if g.pooled else ""
            ids = f" {' '.join(mat.cell_ids(ds, c))}" if mat.by == "config" else ""
            below = with_floor and cmp.below_floor(cmp.vs_floor(mean, cmp.group_floor(g, floors), mat.metric),
                                                   mat.metric)
            below_any = below_any or below
            training = "+" if g.training_seeds else ""
            lacking = len(g.missing(mat.metric))
            count = f"{g.n - lacking} of {g.n}" if 0 < lacking < g.n else f"{g.n}"
            partial = partial or bool(0 < lacking < g.n)
            text = f"{pm(mean, std, sep='±')} ({count}{training}){mixed}{ids}"
            cells.append(MatrixCell(("▼" if below else "") + text, below))
        rows.append((ds, cells))
    captions = []
    if mat.by == "config":
        captions.append("columns: the settings without the dataset; each cell ends with its group id "
                        "(as in kni compare)")
    if any(g.pooled for g in mat.cells.values() if g.n):
        captions.append("* the cell mixes several configurations: (n) counts runs, and the std holds their "
                        "differences as well as the seeds'")
    if any(g.training_seeds for g in mat.cells.values() if g.n):
        captions.append("(n+) some of the cell's runs are still training, read at their best epoch so far")
    if partial:
        captions.append("(k of n): a mean over the k of the cell's n runs that have the metric")
    if below_any:
        side = "above" if cmp.lower_is_better(mat.metric) else "below"
        captions.append(f"▼ worse than the popularity floor of its split ({side} it)")
    return MatrixView(columns, rows, captions)
