"""The tables ``kni compare`` prints that other commands print too: the matrix (with its
popularity floor) and the text naming the epoch each run contributes."""

from __future__ import annotations

from rich import box
from rich.markup import escape
from rich.table import Table

from .. import analysis as cmp
from ..views.matrix import matrix_view


def at_text(at: str | int, pts: list[cmp.RunPoint]) -> str:
    if at == "best":
        splits = sorted({p.run.select_on for p in pts}) or ["valid"]
        return f"the best {'/'.join(splits)} epoch"
    if at == "original":
        return "the epoch the original protocol selects (test-based selection and stopping, replayed)"
    return "the last epoch" if at == "last" else f"epoch {at}"


def matrix_table(mat: cmp.Matrix, at: str | int, pts: list[cmp.RunPoint], floors: dict) -> Table:
    view = matrix_view(mat, floors)
    table = Table(title=f"{mat.metric}: mean ± std (n) at {at_text(at, pts)}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, name in enumerate(view.columns):
        table.add_column(escape(name), justify="left" if i == 0 else "right")
    for ds, cells in view.rows:
        table.add_row(escape(ds), *[f"[bold red]{escape(c.text)}[/]" if c.below_floor else escape(c.text)
                                    for c in cells])
    if view.captions:
        table.caption = "; ".join(view.captions)
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
