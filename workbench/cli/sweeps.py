"""``kni sweeps`` and ``kni compare --sweep ID``: a sweep's points ranked, and which keys matter."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kni_core.errors import KniError

from .. import analysis as cmp
from ..present import ago, fmt, pm, status_style
from ..store.statuses import CANCELLED, COMPLETED, CRASHED, FAILED, LIVE, PRUNED, QUEUED
from .common import JSON_HELP, closed_at_the_end, db_option, err_console, fail, out

if TYPE_CHECKING:                                  # imported where used, so `kni --help` starts fast

    from ..store.repository import Store



# --------------------------------------------------------------------------------------------
# kni compare --sweep ID


METRIC_COLUMNS = ("valid_auc", "test_auc", "test_logloss", "test_acc")


def compare_sweep(store: Store, sweep_id: int, metric: str, at: str, status: Optional[List[str]],
                  dataset: Optional[str], json_out: bool) -> None:
    from ..store.records import sweep_to_dict
    try:
        cmp.check_metric(metric)
        at_value = cmp.parse_at(at)
        store.refresh_crashed()
        ranking = cmp.rank_sweep(store, sweep_id, metric=metric, at=at_value, status=status, dataset=dataset)
    except KniError as e:
        fail(e)
    if json_out:
        print(json.dumps({"sweep": sweep_to_dict(ranking.sweep), "metric": metric, "at": str(at_value),
                          "points": cmp.sweep_rows(ranking),
                          "effects": [{"key": e.key, "spread": cmp.json_value(e.spread),
                                       "levels": [{"value": v, "mean": cmp.json_value(m), "points": n}
                                                  for v, m, n in e.levels]} for e in ranking.effects]}, indent=2))
        return
    if not ranking.points:
        if dataset or status:
            fail(f"sweep {sweep_id} has no runs " + " and ".join(
                [*([f"of dataset {dataset}"] if dataset else []), *([f"with status {','.join(status)}"] if status
                                                                    else [])]) + " (kni runs --sweep lists its runs)")
        fail(f"sweep {sweep_id} has no runs yet (kni sweeps lists it)")
    print_ranking(out(), ranking)


def _at_text(at: str | int) -> str:
    if at == "best":
        return "each run's selected epoch (validation unless select_on: test)"
    return "the last epoch" if at == "last" else f"epoch {at}"


def print_ranking(console: Console, ranking: cmp.SweepRanking, top: int | None = None) -> None:
    from ..recipe.sweep import params_text
    sweep, metric = ranking.sweep, ranking.metric
    table = Table(title=f"sweep {sweep.id} ({sweep.name}, {sweep.method}): points ranked by {metric}, mean ± std "
                        f"over seeds at {_at_text(ranking.at)}",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("rank", justify="right")
    table.add_column("point", justify="right")
    table.add_column("group")
    for k in ranking.keys:
        table.add_column(k, overflow="fold")
    table.add_column("n", justify="right")
    table.add_column("runs", overflow="fold")
    cols = [metric] + [m for m in METRIC_COLUMNS if m != metric]
    for m in cols:
        table.add_column(m.replace("_", " "), justify="right", style="bold" if m == metric else None)
    table.add_column("epoch", justify="right")
    shown = ranking.points if top is None else ranking.points[:top]
    for rank, p in enumerate(shown, start=1):
        row = [str(rank), str(p.number), p.id]
        row += [escape(params_text({k: p.params[k]})[len(k) + 1:]) if k in p.params else "-"
                for k in ranking.keys]
        row.append(str(p.n))
        row.append(_statuses_text(p.statuses))
        for m in cols:
            mean, std = p.stat(m)
            cell = pm(mean, std, sep="±")
            row.append(f"[green]{cell}[/]" if m == metric and rank == 1 and math.isfinite(mean)
                       and len(ranking.points) > 1 else cell)
        row.append(pm(*(p.group.epoch_stat() if p.group else (math.nan, math.nan)), 1, sep="±"))
        table.add_row(*row)
    if top is not None and len(ranking.points) > top:
        table.caption = f"{len(ranking.points) - top} more point(s): kni compare --sweep {sweep.id}"
        table.caption_justify = "left"
    console.print(table)
    effects = [e for e in ranking.effects if e.levels]
    if effects:
        t = Table(title=f"which keys matter: mean {metric} of the points per value (points), and the spread "
                        "between the best and the worst value", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
        t.add_column("key")
        t.add_column("spread", justify="right")
        t.add_column("per value", overflow="fold")
        for e in effects:
            t.add_row(e.key, fmt(e.spread), escape("  ".join(f"{v}: {fmt(m)} ({n})" for v, m, n in e.levels)))
        console.print(t)
    lacking = sum(len(p.group.without_point) for p in ranking.points if p.group is not None)
    if lacking:
        console.print(f"[dim]{lacking} run(s) have no {_at_text(ranking.at)}: left out of the means[/]",
                      highlight=False)
    if not any(math.isfinite(p.stat(metric)[0]) for p in ranking.points):
        hint = " (top-N is measured only with eval.topk.enabled: true)" if cmp.is_topk_metric(metric) else ""
        console.print(f"[yellow]no run of the sweep has {metric} at {_at_text(ranking.at)}[/]{hint}", highlight=False)
    pruned = sum(p.pruned for p in ranking.points)
    if pruned:
        console.print(f"[dim]{pruned} counted run(s) were pruned: they count at their best epoch among the epochs "
                      "they ran[/]", highlight=False)


def _statuses_text(statuses: dict[str, int]) -> str:
    order = [COMPLETED, PRUNED, "running", QUEUED, FAILED, CANCELLED, CRASHED]
    parts = []
    for s in sorted(statuses, key=lambda s: order.index(s) if s in order else len(order)):
        style = status_style(s)
        parts.append(f"[{style}]{statuses[s]} {s}[/]" if style else f"{statuses[s]} {s}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# kni sweeps


def sweep_state(sweep: Any, runs: list, invalid: set[int] = frozenset()) -> str:
    """running (a run is live), interrupted (what ``kni resume --sweep`` goes on with: no end
    recorded, a crashed or cancelled run, points a TPE search never asked, or ``rerun:`` seeds a
    stop skipped), or done."""
    from ..store.liveness import effective_status
    states = {effective_status(r) for r in runs}
    if states & set(LIVE):
        return "running"
    from ..sweeps.resume import rerun_missing
    asked = max([r.sweep_point or 0 for r in runs] + list(invalid), default=0)     # invalid: asked, no run
    if sweep.finished_at is None or states & {CRASHED, CANCELLED} or asked < sweep.planned \
            or rerun_missing(sweep, runs):
        return "interrupted"
    return "done"


def sweeps_command(sweep_ids: List[int] = typer.Argument(None, help="Sweep ids (default: every sweep)."),
                   json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                   db: str = db_option()) -> None:
    """List sweeps: method, points, seeds, their runs by status and the best point so far.

    Reads only. kni compare --sweep ID ranks one sweep's points."""
    from ..recipe.sweep import params_text
    from ..store.errors import StoreError
    from ..store.liveness import effective_status
    from ..store.records import sweep_to_dict
    try:
        from ..store.repository import Store
        store = closed_at_the_end(Store.open(db, readonly=True))
    except StoreError as e:
        if "no run database here" in str(e):
            print("[]") if json_out else err_console().print(f"no sweeps yet ({escape(str(e))})")
            return
        fail(e)
    try:
        sweeps = store.sweeps(ids=sweep_ids or None)
        missing = sorted(set(sweep_ids or []) - {w.id for w in sweeps})
        if missing:
            raise StoreError(f"no sweep with id {', '.join(map(str, missing))} in {store.where} "
                                          "(kni sweeps lists them)")
        rows = []
        for w in sweeps:
            runs = store.runs(sweep=w.id)
            ranking = cmp.rank_sweep(store, w.id)
            best = ranking.best
            counts: dict[str, int] = {}
            for r in runs:
                st = effective_status(r)
                counts[st] = counts.get(st, 0) + 1
            points = len({r.sweep_point for r in runs})
            rows.append((w, runs, counts, points, best, ranking, store.invalid_points(w.id)))
    except KniError as e:
        fail(e)
    if json_out:
        rows_out = []
        for w, runs, counts, points, best, ranking, invalid in rows:
            rows_out.append({**sweep_to_dict(w), "state": sweep_state(w, runs, invalid), "points_started": points,
                        "points_invalid": sorted(invalid),
                        "runs": len(runs), "statuses": counts,
                        "best": None if best is None else {"point": best.number, "group": best.id,
                                                           "params": best.params, "n": best.n,
                                                           "valid_auc_mean": cmp.json_value(best.stat("valid_auc")[0]),
                                                           "valid_auc_std": cmp.json_value(best.stat("valid_auc")[1]),
                                                           "test_auc_mean": cmp.json_value(best.stat("test_auc")[0])}})
        print(json.dumps(rows_out, indent=2))
        return
    if not rows:
        out().print("no sweeps" + (" with these ids" if sweep_ids else f" in {store.where}"))
        return
    table = Table(title=f"sweeps in {store.where}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for col, just in (("id", "right"), ("name", "left"), ("method", "left"), ("points", "right"),
                      ("seeds", "left"), ("runs", "left"), ("best point (valid auc)", "left"), ("state", "left"),
                      ("created", "right")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for w, runs, counts, points, best, ranking, invalid in rows:
        seeds = w.seed_list
        seeds_text = ",".join(map(str, seeds)) if len(seeds) <= 5 else f"{seeds[0]}..{seeds[-1]}"
        method = w.method + (f", {w.prune} pruning" if w.prune else "")
        # the seed count beside the mean: after a rerun: the chosen point's 5-seed mean may rank
        # below a 1-seed point's single value (kni compare --best-of-sweeps reads the chosen one)
        best_text = "-" if best is None else (f"{best.number}: {pm(*best.stat('valid_auc'), sep='±')} "
                                              f"({best.n} seed{'s' if best.n != 1 else ''}) "
                                              f"[dim]{escape(params_text(best.params, 50))}[/]")
        state = sweep_state(w, runs, invalid)
        shown = f"{points}/{w.planned}" + (f" ({len(invalid)} invalid)" if invalid else "")
        table.add_row(str(w.id), escape(w.name), method, shown, seeds_text, _statuses_text(counts),
                      best_text, f"[bold blue]{state}[/]" if state == "running" else state, ago(w.created_at))
    out().print(table)
