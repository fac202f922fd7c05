"""The dataset x configuration matrix (the paper's Table 2 shape)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .groups import Group, group_points
from .metrics import CompareError, group_id
from .selection import RunPoint


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
