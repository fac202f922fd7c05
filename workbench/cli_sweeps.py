"""Sweeps on the command line: ``kni run`` of a recipe with a ``sweep:`` section, ``kni sweeps``
and ``kni compare --sweep ID`` (see :mod:`workbench.sweep` and :mod:`workbench.compare`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kni_core.errors import KniError

from .cli import app
from .cli_runs import (JSON_HELP, STATUS_STYLE, _ago, _err_console, _fail, _fmt, _out, _pm, _run_launcher,
                       db_option, executor_session)
from .lazy import lazy_module
from .statuses import CANCELLED, COMPLETED, CRASHED, FAILED, LIVE, PRUNED, QUEUED

if TYPE_CHECKING:
    from .store import Store

# Imported on first use, so that `kni --help` and `kni runs` load neither NumPy nor SQLAlchemy
# for a module that only adds commands.
cmp: Any = lazy_module("workbench.compare")
store_module: Any = lazy_module("workbench.store")
sweep_module: Any = lazy_module("workbench.sweep")


# --------------------------------------------------------------------------------------------
# kni run RECIPE-WITH-A-SWEEP


def run_sweep(rec: Any, json_out: bool, checkpoint_dir: Optional[Path], jobs: int, db: str,
              console: Console, runner: Any = None) -> None:
    """The body of ``kni run`` for a sweep: every point x every seed through the Launcher, on
    ``runner`` (default: local child processes; a Ray executor for the whole sweep)."""
    from kni_core.data import prepare

    from .runner import provenance
    try:
        store = store_module.Store.open(db, create=True)
        if store.in_memory:
            raise store_module.StoreError("--db: an in-memory database cannot be shared with run processes")
    except KniError as error:
        _fail(error)
    assert rec.sweep is not None

    def prepared(cfg: Any) -> Any:
        data = prepare(cfg)
        if not json_out:
            s = data.stats
            console.print(f"[dim]data {'from the cache' if data.from_cache else 'prepared'}: "
                          f"{s.get('entities', '?'):,} entities, {s.get('train', '?'):,} / {s.get('valid', '?'):,} / "
                          f"{s.get('test', '?'):,} train / valid / test[/]", highlight=False)
        return data

    stop = {"requested": False}

    def launch(ids: list[int], configs: list) -> tuple[dict[int, str], bool]:
        statuses, launcher = _run_launcher(store, rec, configs, ids, json_out, checkpoint_dir, jobs, console, runner)
        stop["requested"] = stop["requested"] or bool(launcher.stop_requested)
        return statuses, bool(launcher.stop_requested)

    def queued(sweep_id: int, ids: list[int]) -> None:
        if not json_out:
            console.print(f"[bold]{rec.name}[/]: sweep {sweep_id}, run(s) {_span(ids)} queued in "
                          f"{escape(store.where)}, {jobs} at a time", highlight=False)

    driver = sweep_module.SweepDriver(store, rec, launch, jobs=jobs, prov=provenance(), on_queued=queued,
                                      prepare=prepared, executor=runner.name if runner is not None else "local")
    if not json_out:
        console.print(f"[bold]{rec.name}[/]: {escape(rec.sweep.describe(len(rec.seeds)))}", highlight=False)
    interrupted = False
    try:
        with executor_session(runner, json_out, console):
            driver.start()
            driver.run()
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: the sweep stops; queued runs are cancelled[/]")
    except KniError as error:
        _cancel(store, driver.run_ids)
        if driver.sweep_id is None:
            _fail(error)
        _err_console().print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    _cancel(store, driver.run_ids)
    if driver.sweep_id is None:
        raise typer.Exit(130)
    try:
        ranking = cmp.rank_sweep(store, driver.sweep_id)
        runs = store.runs(ids=driver.run_ids)
    except KniError as error:
        _fail(error)
    if json_out:
        print(json.dumps({"event": "sweep", "sweep_id": driver.sweep_id, "metric": ranking.metric,
                          "points": cmp.sweep_rows(ranking)}))
    else:
        _print_ranking(console if console.is_terminal else _out(), ranking, top=10)
        console.print(f"[dim]kni compare --sweep {driver.sweep_id} | kni runs --sweep {driver.sweep_id} | "
                      f"kni sweeps[/]", highlight=False)
    store.close()
    bad = [r for r in runs if r.status in (FAILED, CRASHED)]
    if interrupted or stop["requested"] or any(r.status == CANCELLED for r in runs):
        raise typer.Exit(130)
    if bad:
        raise typer.Exit(1)


def _cancel(store: Store, ids: list[int]) -> None:
    for i in ids:
        try:
            store.mark(i, CANCELLED, "cancelled before it started (the sweep stopped)", only_if=(QUEUED,))
        except KniError:
            return


def _span(ids: list[int]) -> str:
    if len(ids) > 3 and ids == list(range(ids[0], ids[0] + len(ids))):
        return f"{ids[0]}..{ids[-1]}"
    return ", ".join(map(str, ids))


# --------------------------------------------------------------------------------------------
# kni compare --sweep ID


METRIC_COLUMNS = ("valid_auc", "test_auc", "test_logloss", "test_acc")


def compare_sweep(store: Store, sweep_id: int, metric: str, at: str, status: Optional[List[str]],
                  dataset: Optional[str], json_out: bool) -> None:
    try:
        cmp.check_metric(metric)
        at_value = cmp.parse_at(at)
        store.refresh_crashed()
        ranking = cmp.rank_sweep(store, sweep_id, metric=metric, at=at_value, status=status, dataset=dataset)
    except KniError as e:
        _fail(e)
    if json_out:
        print(json.dumps({"sweep": store_module.sweep_to_dict(ranking.sweep), "metric": metric, "at": str(at_value),
                          "points": cmp.sweep_rows(ranking),
                          "effects": [{"key": e.key, "spread": cmp._j(e.spread),
                                       "levels": [{"value": v, "mean": cmp._j(m), "points": n}
                                                  for v, m, n in e.levels]} for e in ranking.effects]}, indent=2))
        return
    if not ranking.points:
        _fail(f"sweep {sweep_id} has no runs yet (kni sweeps lists it)")
    _print_ranking(_out(), ranking)


def _at_text(at: str | int) -> str:
    if at == "best":
        return "each run's selected epoch (validation unless select_on: test)"
    return "the last epoch" if at == "last" else f"epoch {at}"


def _print_ranking(console: Console, ranking: cmp.SweepRanking, top: int | None = None) -> None:
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
        row += [escape(sweep_module.params_text({k: p.params[k]})[len(k) + 1:]) if k in p.params else "-"
                for k in ranking.keys]
        row.append(str(p.n))
        row.append(_statuses_text(p.statuses))
        for m in cols:
            mean, std = p.stat(m)
            cell = _pm(mean, std)
            row.append(f"[green]{cell}[/]" if m == metric and rank == 1 and math.isfinite(mean)
                       and len(ranking.points) > 1 else cell)
        row.append(_pm(*(p.group.epoch_stat() if p.group else (math.nan, math.nan)), 1))
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
            t.add_row(e.key, _fmt(e.spread), escape("  ".join(f"{v}: {_fmt(m)} ({n})" for v, m, n in e.levels)))
        console.print(t)
    pruned = sum(p.pruned for p in ranking.points)
    if pruned:
        console.print(f"[dim]{pruned} counted run(s) were pruned: they count at their best epoch among the epochs "
                      "they ran[/]", highlight=False)


def _statuses_text(statuses: dict[str, int]) -> str:
    order = [COMPLETED, PRUNED, "running", QUEUED, FAILED, CANCELLED, CRASHED]
    parts = []
    for s in sorted(statuses, key=lambda s: order.index(s) if s in order else len(order)):
        style = STATUS_STYLE.get(s, "")
        parts.append(f"[{style}]{statuses[s]} {s}[/]" if style else f"{statuses[s]} {s}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# kni sweeps


def sweep_state(sweep: Any, runs: list) -> str:
    """running (a run is live), done (its driver ended), or interrupted (no live run, no end)."""
    if any(store_module.Store.effective_status(r) in LIVE for r in runs):
        return "running"
    return "done" if sweep.finished_at is not None else "interrupted"


@app.command("sweeps")
def sweeps_command(sweep_ids: List[int] = typer.Argument(None, help="Sweep ids (default: every sweep)."),
                   json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                   db: str = db_option()) -> None:
    """List sweeps: method, points, seeds, their runs by status and the best point so far.

    Reads only. kni compare --sweep ID ranks one sweep's points."""
    try:
        store = store_module.Store.open(db, readonly=True)
    except store_module.StoreError as e:
        if "no run database here" in str(e):
            print("[]") if json_out else _err_console().print(f"no sweeps yet ({escape(str(e))})")
            return
        _fail(e)
    try:
        sweeps = store.sweeps(ids=sweep_ids or None)
        missing = sorted(set(sweep_ids or []) - {w.id for w in sweeps})
        if missing:
            raise store_module.StoreError(f"no sweep with id {', '.join(map(str, missing))} in {store.where} "
                                          "(kni sweeps lists them)")
        rows = []
        for w in sweeps:
            runs = store.runs(sweep=w.id)
            ranking = cmp.rank_sweep(store, w.id)
            best = ranking.best
            counts: dict[str, int] = {}
            for r in runs:
                st = store_module.Store.effective_status(r)
                counts[st] = counts.get(st, 0) + 1
            points = len({r.sweep_point for r in runs})
            rows.append((w, runs, counts, points, best, ranking))
    except KniError as e:
        _fail(e)
    if json_out:
        out = []
        for w, runs, counts, points, best, ranking in rows:
            out.append({**store_module.sweep_to_dict(w), "state": sweep_state(w, runs), "points_started": points,
                        "runs": len(runs), "statuses": counts,
                        "best": None if best is None else {"point": best.number, "group": best.id,
                                                           "params": best.params, "n": best.n,
                                                           "valid_auc_mean": cmp._j(best.stat("valid_auc")[0]),
                                                           "valid_auc_std": cmp._j(best.stat("valid_auc")[1]),
                                                           "test_auc_mean": cmp._j(best.stat("test_auc")[0])}})
        print(json.dumps(out, indent=2))
        return
    if not rows:
        _out().print("no sweeps" + (" with these ids" if sweep_ids else f" in {store.where}"))
        return
    table = Table(title=f"sweeps in {store.where}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for col, just in (("id", "right"), ("name", "left"), ("method", "left"), ("points", "right"),
                      ("seeds", "left"), ("runs", "left"), ("best point (valid auc)", "left"), ("state", "left"),
                      ("created", "right")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for w, runs, counts, points, best, ranking in rows:
        seeds = w.seed_list
        seeds_text = ",".join(map(str, seeds)) if len(seeds) <= 5 else f"{seeds[0]}..{seeds[-1]}"
        method = w.method + (f", {w.prune} pruning" if w.prune else "")
        best_text = "-" if best is None else (f"{best.number}: {_pm(*best.stat('valid_auc'))} "
                                              f"[dim]{escape(sweep_module.params_text(best.params, 50))}[/]")
        state = sweep_state(w, runs)
        table.add_row(str(w.id), escape(w.name), method, f"{points}/{w.planned}", seeds_text, _statuses_text(counts),
                      best_text, f"[bold blue]{state}[/]" if state == "running" else state, _ago(w.created_at))
    _out().print(table)
