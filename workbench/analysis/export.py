"""Rows for CSV and JSON: one per run or one per group, with the columns of docs/export.md."""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime
from typing import IO, Any, Sequence

from kni_core.floor import FLOOR_METRICS

from ..present import visible
from ..store.records import METRICS
from .floors import group_floor, vs_floor
from .groups import Group, group_points
from .metrics import stratum_columns, topk_columns, topk_order
from .provenance import read as read_provenance
from .selection import RunPoint
from .strata import stratum_order

#: The provenance a run row carries (the data files' digests: kni show --json).
EXPORTED_PROVENANCE = ("dirty", "diff_sha256", "python", "torch", "cuda", "data_key")
RUN_COLUMNS = ("run_id", "recipe", "dataset", "model", "config_hash", "seed", "status", "counts", "device", "select_on",
               "at", "epoch", *METRICS, "train_seconds", "eval_seconds", "best_epoch", "epochs", "max_epochs",
               "stopped_early", "seconds_per_epoch", "started_at", "finished_at", "package_version",
               "git_commit", *EXPORTED_PROVENANCE, "tags", "note", "group_tags", "group_note")
GROUP_COLUMNS = ("group", "group_by", "label", "recipe", "dataset", "model", "config_hash", "n", "seeds",
                 "training_seeds", "data_versions", "at",
                 *[f"{m}_{s}" for m in METRICS for s in ("mean", "std")], "epoch_mean", "epoch_std",
                 "train_seconds_per_epoch", "eval_seconds_per_epoch", "seconds_per_epoch", "run_ids", "tags", "note",
                 *[f"{prefix}{m}" for m in FLOOR_METRICS for prefix in ("pop_", "vs_pop_")])



def json_value(x: Any) -> Any:
    """JSON/CSV-safe value: NaN -> None, datetimes -> ISO."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, datetime):
        return x.isoformat(timespec="seconds")
    return x


def run_rows(pts: Sequence[RunPoint], at: str | int) -> list[dict]:
    counting = {id(m) for g in group_points(pts, "config") for m in g.members}
    rows = []
    for p in pts:
        r, e = p.run, p.point
        tr, ev = p.seconds_per_epoch()
        row = {"run_id": r.id, "recipe": r.recipe, "dataset": r.dataset, "model": r.model,
               "config_hash": r.config_hash, "seed": r.seed, "status": r.status, "counts": id(p) in counting,
               "device": r.device,
               "select_on": r.select_on, "at": str(at), "epoch": e.epoch if e else None,
               **{m: (getattr(e, m) if e else None) for m in METRICS},
               "train_seconds": e.train_seconds if e else None, "eval_seconds": e.eval_seconds if e else None,
               "best_epoch": r.best_epoch, "epochs": len(p.epochs), "max_epochs": r.max_epochs,
               "stopped_early": bool(r.stopped_early),
               "seconds_per_epoch": (tr + ev) if p.epochs and math.isfinite(tr + ev) else None,
               "started_at": r.started_at, "finished_at": r.finished_at,
               "package_version": r.package_version, "git_commit": r.git_commit,
               **{k: v for k, v in read_provenance(r).items() if k in EXPORTED_PROVENANCE},
               "tags": " ".join(r.tags), "note": r.note, "group_tags": " ".join(r.group_tags),
               "group_note": r.group_note, **p.topk, **p.strata}
        rows.append({k: json_value(v) for k, v in row.items()})
    return rows


def group_rows(groups: Sequence[Group], at: str | int, floors: dict[str, dict | None] | None = None) -> list[dict]:
    """One row per group; with ``floors`` (:func:`.floors.floors_for`), each metric beside the
    split's popularity floor (``pop_M``) and the group's difference from it (``vs_pop_M``)."""
    rows = []
    for g in groups:
        row: dict[str, Any] = {"group": g.key, "group_by": g.by,
                               "label": g.label + (f" [{g.differs}]" if g.differs else ""),
                               "recipe": g.distinct("recipe"), "dataset": g.distinct("dataset"),
                               "model": g.distinct("model"), "config_hash": g.distinct("config_hash"),
                               "n": g.n, "seeds": " ".join(map(str, g.seeds)),
                               "training_seeds": " ".join(map(str, g.training_seeds)),
                               "data_versions": len(g.data_versions()) or None, "at": str(at)}
        for m in METRICS:
            mean, std = g.stat(m)
            row[f"{m}_mean"], row[f"{m}_std"] = mean, std
        row["epoch_mean"], row["epoch_std"] = g.epoch_stat()
        tr, ev, tot = g.seconds()
        row.update(train_seconds_per_epoch=tr, eval_seconds_per_epoch=ev, seconds_per_epoch=tot,
                   run_ids=" ".join(str(m.run.id) for m in g.members))
        for m in sorted({k for p in g.members for k in p.topk}, key=topk_order):
            row[f"{m}_mean"], row[f"{m}_std"] = g.stat(m)
        for m in sorted({k for p in g.members for k in p.strata}, key=stratum_order):
            row[f"{m}_mean"], row[f"{m}_std"] = g.stat(m)
        runs = [m.run for m in g.members + g.without_point]
        row["tags"] = " ".join(sorted({t for r in runs for t in r.group_tags}))
        row["note"] = "; ".join(dict.fromkeys(r.group_note for r in runs if r.group_note)) or None
        floor = group_floor(g, floors) if floors is not None else None
        for m in FLOOR_METRICS:
            row[f"pop_{m}"] = floor.get(m) if floor else None
            row[f"vs_pop_{m}"] = vs_floor(row[f"{m}_mean"], floor, m)
        rows.append({k: json_value(v) for k, v in row.items()})
    return rows


def export_table(pts: Sequence[RunPoint], at: str | int, groups: Sequence[Group] | None = None,
                 floors: dict[str, dict | None] | None = None) -> tuple[list[dict], tuple[str, ...]]:
    """The rows and columns ``kni export`` writes (and the workbench's export): one per run, or
    with ``groups`` one per group, each top-N and stratum metric present as a column."""
    if groups is None:
        rows = run_rows(pts, at)
        return rows, (*RUN_COLUMNS, *topk_columns(rows), *stratum_columns(rows))
    rows = group_rows(groups, at, floors)
    suffixes = ("_mean", "_std")
    return rows, (*GROUP_COLUMNS, *topk_columns(rows, suffixes), *stratum_columns(rows, suffixes))


#: What a spreadsheet reads as the start of a formula in a text cell (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(text: str) -> str:
    """A text cell a spreadsheet cannot run and a terminal cannot act on: control characters
    made visible, and a leading ``= + - @``, tab or carriage return quoted with ``'`` (OWASP's
    advice), so a tag ``=HYPERLINK(...)`` arrives as text."""
    text = visible(text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    return text_cell(str(v))


def write_csv(rows: Sequence[dict], columns: Sequence[str], stream: IO[str]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])


def csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    write_csv(rows, columns, buf)
    return buf.getvalue()
