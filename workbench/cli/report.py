"""``kni report``: the table, figures and page of a paper, regenerated from the stored runs
(:mod:`workbench.report`)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from kni_core.errors import KniError

from .. import analysis as cmp
from .common import consoles, db_option, fail, hide_password, open_store


def report_command(run_ids: List[int] = typer.Argument(None, help="Run ids (default: every run)."),
                   out: Path = typer.Option(..., "--out", help="Folder to write (replaced whole; written to a "
                                                               "temporary folder first)."),
                   recipe: Optional[str] = typer.Option(None, "--recipe", help="The runs of this recipe."),
                   all_: bool = typer.Option(False, "--all", help="Every run (the default)."),
                   sweep: Optional[int] = typer.Option(None, "--sweep", help="The runs of this sweep, with its "
                                                       "figures (validation AUC by key, parallel coordinates)."),
                   dataset: Optional[str] = typer.Option(None, "--dataset", help="Only runs of this dataset."),
                   status: Optional[List[str]] = typer.Option(None, "--status", help="Statuses that count "
                                                              "(default completed,pruned: finished runs; "
                                                              "'all'). The caption names the runs left out."),
                   at: str = typer.Option("best", "--at", help="best | last | N | original: the epoch each run "
                                                              "contributes."),
                   metric: Optional[List[str]] = typer.Option(None, "--metric", help="Table metrics, repeatable "
                                                              "(default test_auc and test_acc; top-N ones too)."),
                   reference: Optional[str] = typer.Option(None, "--reference", help="The column each cell is "
                                                           "tested against (a model, default KNI)."),
                   explain: Optional[List[int]] = typer.Option(None, "--explain", help="A KNI / NI run whose "
                                                               "neighbour-pair heatmap (kni explain RUN's pair) is "
                                                               "drawn; repeatable."),
                   pdf: bool = typer.Option(False, "--pdf", help="Also write each figure as PDF."),
                   json_out: bool = typer.Option(False, "--json", help="Print the report's summary as JSON."),
                   db: str = db_option()) -> None:
    """Write a report folder: table.tex (booktabs), table.md, table.csv, figures (PNG, SVG), an
    index.html that opens from disk, and report.json with every number it shows."""
    from ..analysis.selection import statuses_counted
    from ..report import write_report
    from ..report.data import REPORTED
    console = consoles(json_out)
    store = open_store(db)
    command = "kni " + " ".join(shlex.quote(hide_password(a)) for a in sys.argv[1:]) if sys.argv[1:] else "kni report"
    try:
        at_value = cmp.parse_at(at)
        # every run of the selection is read, so that the caption can name the ones not counted
        counted = statuses_counted(status, explicit_ids=False) if status else REPORTED
        runs = cmp.select_runs(store, ids=run_ids or [], recipe=recipe, all_=all_, dataset=dataset, status=["all"],
                               sweep=sweep)
        pts = cmp.points(store, runs, at_value)
        summary = write_report(store, pts, out, metrics=metric or ["test_auc", "test_acc"], at=at_value,
                               command=command, reference=reference, sweeps=[sweep] if sweep is not None else [],
                               pdf=pdf, explain=explain or [], statuses=counted)
    except KniError as e:
        fail(e)
    target = Path(out).expanduser().absolute()
    if json_out:
        print(json.dumps({"out": str(target), **summary}, indent=2))
        return
    files = sorted(p.name for p in target.iterdir())
    left_out = sum(summary["not_counted"].values())
    console.print(f"wrote the report of {len(pts) - left_out} run(s) in {len(summary['groups'])} group(s)"
                  + (f" ({left_out} not counted: " + ", ".join(f"{k} {s}" for s, k in sorted(
                      summary["not_counted"].items())) + ")" if left_out else "")
                  + f" to {escape(str(target))}: {', '.join(files)}", highlight=False, soft_wrap=True)
    console.print(f"[dim]open {escape(str(target / 'index.html'))}[/]", highlight=False)
