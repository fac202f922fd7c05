"""The AUC by stratum of one run at its selected epoch (``kni show`` and the workbench's run
screen draw the same table), beside item popularity's on the same rows when its floor is stored."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.markup import escape
from rich.table import Table

from ..analysis import floor_value, stratum_label, stratum_sizes, stratum_values
from ..present import fmt

if TYPE_CHECKING:
    from ..store.records import Run


def strata_table(run: Run, floor: dict | None) -> Table:
    """The run's test AUC by stratum at its selected epoch, beside popularity's when stored."""
    values, sizes = stratum_values(run.strata_dict), stratum_sizes(run.strata_dict)
    pops = {m: floor_value(floor, m) for m in values}
    with_pop = any(v is not None for v in pops.values())
    table = Table(title=f"test AUC by stratum, epoch {run.best_epoch} (the selected epoch)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="users by their training rows; items by popularity, each third of the training "
                          "positives" + ("; pop: item popularity on the same rows" if with_pop else ""),
                  caption_justify="left")
    for col in ("stratum", "users/items", "rows", "positive share", "auc") + (("pop", "vs pop") if with_pop else ()):
        table.add_column(col, justify="left" if col == "stratum" else "right")
    for m, auc in values.items():
        size = sizes.get(m, {})
        share = size.get("positive_share")
        row = [escape(stratum_label(m)), str(size.get("users", size.get("items", "-"))),
               f"{size['rows']:,}" if "rows" in size else "-",
               f"{share:.1%}" if isinstance(share, float) else "-", fmt(auc)]
        if with_pop:
            pop = pops[m]
            diff = auc - pop if auc is not None and pop is not None else None
            row += [fmt(pop), "-" if diff is None else (f"[bold red]▼{diff:+.4f}[/]" if diff < 0 else f"{diff:+.4f}")]
        table.add_row(*row)
    return table
