"""Writes a report folder (see the package docstring)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from .. import analysis as cmp
from .data import REPORTED, ReportData, ReportError, gather


def write_report(store: Any, pts: Sequence[cmp.RunPoint], out: str | os.PathLike, *, metrics: Sequence[str],
                 at: str | int, command: str, reference: str | None = None, sweeps: Sequence[int] = (),
                 pdf: bool = False, now: datetime | None = None, explain: Sequence[int] = (),
                 statuses: Sequence[str] | None = REPORTED) -> dict:
    """Write the report of ``pts`` into folder ``out`` (replacing it whole); returns the summary
    ``report.json`` holds. ReportError (nothing written) for a selection or folder that cannot.
    ``statuses``: the runs of ``pts`` that count (None: all; the others are named in the
    caption). ``explain``: runs whose neighbour-pair heatmap is drawn (:mod:`.explained`)."""
    report = gather(store, pts, metrics, at, reference, statuses)
    rankings = [cmp.rank_sweep(store, s) for s in sweeps]
    explained = []
    if explain:
        from .explained import explain_runs
        explained = explain_runs(store, list(explain))
    target = Path(out).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise ReportError(f"--out {out}: is a file, expected a folder for the report")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as e:
        raise ReportError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    try:
        from .figures import draw_all
        from .page import page
        from .tables import csv_text, latex, markdown, rows
        figures = draw_all(report, work, pdf, rankings, explained)
        generated = f"generated {(now or datetime.now(timezone.utc)):%Y-%m-%d %H:%M:%S} UTC"
        (work / "table.tex").write_text(latex(report), encoding="utf-8")
        (work / "table.md").write_text(markdown(report), encoding="utf-8")
        (work / "table.csv").write_text(csv_text(report), encoding="utf-8")
        (work / "index.html").write_text(page(report, figures, command, generated, store.where), encoding="utf-8")
        summary = _summary(report, figures, rows(report), command, generated, rankings)
        summary["explanations"] = [x.to_dict() for x in explained]
        (work / "report.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        _replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return summary


def _replace(work: Path, target: Path) -> None:
    """``work`` becomes ``target``; an earlier report there is removed only once the new one is in."""
    work.chmod(0o755)                          # mkdtemp's folder is private
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    work.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _summary(report: ReportData, figures: list[dict], table: list[dict], command: str, generated: str,
             rankings: list[Any]) -> dict:
    return {
        "command": command, "generated": generated, "metrics": report.metrics, "at": str(report.at),
        "columns_by": report.by, "reference": report.col_labels.get(report.reference) if report.reference else None,
        "not_counted": report.left_out,
        "table": table,
        "groups": [{"key": g.key, "label": g.label, "n": g.n, **report.provenance[g.key],
                    "values": {m: {str(p.run.seed): cmp.json_value(p.value(m)) for p in g.members}
                               for m in report.metrics}} for g in report.groups],
        "paired": [{"dataset": ds, "column": col, **t.to_dict()} for (ds, col), c in report.cells.items()
                   for t in c.test.values()],
        "figures": figures,
        "sweeps": [{"sweep": r.sweep.id, "points": cmp.sweep_rows(r)} for r in rankings],
    }
