"""The tables ``kni compare`` prints that other commands print too: the matrix (with its
popularity floor) and the text naming the epoch each run contributes."""

from __future__ import annotations

from rich import box
from rich.markup import escape
from rich.table import Table

from .. import analysis as cmp
from ..present import fmt, pm


def at_text(at: str | int, pts: list[cmp.RunPoint]) -> str:
    if at == "best":
        splits = sorted({p.run.select_on for p in pts}) or ["valid"]
        return f"the best {'/'.join(splits)} epoch"
    if at == "original":
        return "the epoch the original protocol selects (test-based selection and stopping, replayed)"
    return "the last epoch" if at == "last" else f"epoch {at}"


def _row_floor(mat: cmp.Matrix, ds: str, floors: dict) -> dict | None:
    """The floor of a matrix row: its cells' split, when they share one."""
    found = {id(f): f for c in mat.cols if (g := mat.cells.get((ds, c))) is not None and g.n
             and (f := cmp.group_floor(g, floors)) is not None}
    return next(iter(found.values())) if len(found) == 1 else None


def matrix_table(mat: cmp.Matrix, at: str | int, pts: list[cmp.RunPoint], floors: dict) -> Table:
    table = Table(title=f"{mat.metric}: mean ± std (n) at {at_text(at, pts)}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("dataset")
    with_floor = mat.metric in cmp.FLOOR_METRICS or cmp.is_stratum_metric(mat.metric)
    if with_floor:
        table.add_column("pop (floor)", justify="right")
    for c in mat.cols:
        table.add_column(escape(mat.col_labels[c]), justify="right")
    below_any = partial = False
    for ds in mat.rows:
        cells = []
        if with_floor:
            floor = _row_floor(mat, ds, floors)
            cells.append(fmt(cmp.floor_value(floor, mat.metric)))
        for c in mat.cols:
            g = mat.cells.get((ds, c))
            if g is None or not g.n:
                cells.append("-")
                continue
            mean, std = g.stat(mat.metric)
            mixed = "*" if len(g.distinct("config_hash").split(";")) > 1 else ""
            ids = f" {' '.join(mat.cell_ids(ds, c))}" if mat.by == "config" else ""
            below = with_floor and cmp.below_floor(cmp.vs_floor(mean, cmp.group_floor(g, floors), mat.metric),
                                                   mat.metric)
            below_any = below_any or below
            training = "+" if g.training_seeds else ""
            lacking = len(g.missing(mat.metric))
            count = f"{g.n - lacking} of {g.n}" if 0 < lacking < g.n else f"{g.n}"
            partial = partial or bool(0 < lacking < g.n)
            text = f"{pm(mean, std, sep='±')} ({count}{training}){mixed}{ids}"
            cells.append(f"[bold red]▼{text}[/]" if below else text)
        table.add_row(escape(ds), *cells)
    captions = []
    if mat.by == "config":
        captions.append("columns: the settings without the dataset; each cell ends with its group id "
                        "(as in kni compare)")
    if any(len(g.distinct("config_hash").split(";")) > 1 for g in mat.cells.values() if g.n):
        captions.append("* the cell mixes several configurations")
    if any(g.training_seeds for g in mat.cells.values() if g.n):
        captions.append("(n+) some of the cell's runs are still training, read at their best epoch so far")
    if partial:
        captions.append("(k of n): a mean over the k of the cell's n runs that have the metric")
    if below_any:
        side = "above" if cmp.lower_is_better(mat.metric) else "below"
        captions.append(f"▼ worse than the popularity floor of its split ({side} it)")
    if captions:
        table.caption = "; ".join(captions)
        table.caption_justify = "left"
    return table


def matrix_json(mat: cmp.Matrix, floors: dict) -> dict:
    cells = []
    for (ds, c), g in mat.cells.items():
        mean, std = g.stat(mat.metric)
        floor = cmp.group_floor(g, floors)
        diff = cmp.vs_floor(mean, floor, mat.metric)
        cells.append({"dataset": ds, "column": c, "label": mat.col_labels.get(c, c), "n": g.n,
                      "mean": cmp.json_value(mean), "std": cmp.json_value(std),
                      "configs": g.distinct("config_hash").split(";"),
                      "groups": mat.cell_ids(ds, c),
                      "run_ids": [m.run.id for m in g.members],
                      "pop": cmp.json_value(cmp.floor_value(floor, mat.metric)),
                      "vs_pop": cmp.json_value(diff), "below_pop": cmp.below_floor(diff, mat.metric)})
    return {"metric": mat.metric, "rows": mat.rows, "columns": mat.cols, "cells": cells}
