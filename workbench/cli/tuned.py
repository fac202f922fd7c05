"""``kni compare --best-of-sweeps S1 S2 ...``: models compared at equal tuning budgets.

Each sweep is one model's budget (say TPE, 16 points x 1 seed, selected on validation, then the
best point rerun over 5 seeds: a ``rerun:`` section). The matrix is built from the point each
sweep chose, with the popularity floor beside it and a paired test of every cell against the
KNI cell of its dataset. Two sweeps of one model on one dataset (TPE against a grid) make the
columns sweeps rather than models, so that their choices are not averaged into one cell.
"""

from __future__ import annotations

import json
from typing import List, Optional

from rich import box
from rich.markup import escape
from rich.table import Table

from kni_core.errors import KniError

from .. import analysis as cmp
from ..present import duration, fmt
from .common import fail, out
from .tables import matrix_json, matrix_table


def compare_best_of_sweeps(store, sweep_ids: List[int], metric: str, at: str, status: Optional[List[str]],
                           json_out: bool) -> None:
    if not sweep_ids:
        fail("--best-of-sweeps: give the sweep ids (kni sweeps lists them), one per model")
    try:
        cmp.check_metric(metric)
        at_value = cmp.parse_at(at)
        store.refresh_crashed()
        choices = [cmp.best_of_sweep(store, s, status=status, at=at_value) for s in sweep_ids]
        empty = [c.sweep.id for c in choices if not c.pts]
        if empty:
            raise cmp.CompareError(f"--best-of-sweeps: sweep(s) {', '.join(map(str, empty))} have no point with a "
                                   "validation AUC yet (kni sweeps shows their state)")
        pts = [p for c in choices for p in c.pts]
        mat = cmp.tuned_matrix(choices, metric)
        floors = cmp.floors_for(store, [p.run for p in pts])
        tests = _paired_against_kni(mat, metric)
        warnings = cmp.budget_warnings(choices)
    except KniError as e:
        fail(e)
    if json_out:
        print(json.dumps({"metric": metric, "at": str(at_value), "sweeps": [c.to_dict(metric) for c in choices],
                          "warnings": warnings,
                          "matrix": matrix_json(mat, floors),
                          "paired": [{"dataset": ds, "reference": ref, "column": col, **r.to_dict()}
                                     for ds, ref, col, r in tests]},
                         indent=2))
        return
    console = out()
    console.print(_choices_table(choices, metric))
    for line in warnings:
        console.print(f"[yellow]warning:[/] {escape(line)}")
    console.print(matrix_table(mat, at_value, pts, floors))
    if tests:
        console.print(_paired_rows(tests, mat.col_labels, metric))


def _paired_against_kni(mat, metric: str) -> list:
    """A paired test of every cell against the KNI cell of its row (the first KNI sweep given,
    where columns are sweeps), over their shared seeds; a sweep that chose the reference's very
    configuration has nothing to test against it."""
    tests = []
    for ds in mat.rows:
        ref_col = next((col for col in mat.cols if (g := mat.cells.get((ds, col))) is not None and g.n
                        and g.members[0].run.model == "KNI"), None)
        if ref_col is None:
            continue
        ref = mat.cells[(ds, ref_col)]
        for col in mat.cols:
            g = mat.cells.get((ds, col))
            if col == ref_col or g is None or not g.n or g.key == ref.key or not set(ref.seeds) & set(g.seeds):
                continue
            tests.append((ds, ref_col, col, cmp.paired_test(ref, g, metric)))
    return tests


def _choices_table(choices: list, metric: str) -> Table:
    table = Table(title="each sweep's choice, on validation (the tuning budget it spent)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("sweep", "recipe", "method", "points", "trials", "time", "chosen point", "seeds", "valid auc", metric):
        table.add_column(col, justify="right" if col in ("sweep", "points", "trials", "seeds", "valid auc", metric)
                         else "left", overflow="fold")
    from ..recipe.sweep import params_text
    for c in choices:
        p = c.point
        table.add_row(str(c.sweep.id), escape(c.sweep.name), c.sweep.method, f"{c.points_run}/{c.sweep.planned}",
                      str(c.trials),
                      duration(c.seconds) if c.seconds is not None else "-",
                      escape(f"{p.number}: {params_text(p.params)}") if p else "-", str(p.n if p else 0),
                      fmt(p.stat("valid_auc")[0]) if p else "-", fmt(p.stat(metric)[0]) if p else "-")
    return table


def _paired_rows(tests: list, labels: dict, metric: str) -> Table:
    table = Table(title=f"KNI against each model, {metric}, paired over shared seeds", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("dataset", "A", "B", "seeds", "A - B", "95% CI", "sign-flip p", "verdict"):
        table.add_column(col, justify="left" if col in ("dataset", "A", "B", "verdict") else "right", overflow="fold")
    for ds, ref, col, r in tests:
        table.add_row(escape(ds), escape(labels.get(ref, ref)), escape(labels.get(col, col)), str(len(r.seeds)),
                      f"{r.diff:+.4f}", f"[{r.ci[0]:+.4f}, {r.ci[1]:+.4f}]", f"{r.p_value:.4g}",
                      escape(r.verdict_text()))
    return table
