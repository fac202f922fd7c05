"""``kni compare`` (groups, the matrix, paired tests; ``--sweep`` and ``--explain`` hand over to
their modules) and ``kni export`` (CSV). Both read only; docs/export.md has the rules and columns."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from kni_core.errors import KniError

from .. import analysis as cmp
from ..present import fmt, pm
from .common import JSON_HELP, db_option, err_console, fail, open_store, out
from .tables import at_text, matrix_json, matrix_table

if TYPE_CHECKING:                                  # imported where used, so `kni --help` starts fast

    from ..store.repository import Store



# --------------------------------------------------------------------------------------------
# kni compare / export


def _selection(store: Store, run_ids: List[int], recipe: Optional[str], all_: bool, dataset: Optional[str],
               status: Optional[List[str]], at: str,
               sweep: Optional[int] = None) -> tuple[list[cmp.RunPoint], str | int]:
    at_value = cmp.parse_at(at)
    runs = cmp.select_runs(store, ids=run_ids, recipe=recipe, all_=all_, dataset=dataset, status=status, sweep=sweep)
    return cmp.points(store, runs, at_value), at_value


def compare_command(run_ids: List[int] = typer.Argument(None, help="Run ids (default: every run); with "
                                                      "--best-of-sweeps, sweep ids."),
                    recipe: Optional[str] = typer.Option(None, "--recipe", help="The runs of this recipe."),
                    sweep: Optional[int] = typer.Option(None, "--sweep", help="Rank the points of this sweep "
                                                        "(kni sweeps lists them) and show which keys matter."),
                    all_: bool = typer.Option(False, "--all", help="Every run (the default without ids or --recipe)."),
                    dataset: Optional[str] = typer.Option(None, "--dataset", help="Only runs of this dataset."),
                    status: Optional[List[str]] = typer.Option(None, "--status", help="Statuses that count "
                                                               "(default completed,running,pruned; 'all': every "
                                                               "one)."),
                    group_by: Optional[str] = typer.Option(None, "--group-by", help="config | dataset | model | "
                                                           "recipe (default config; model with --matrix)."),
                    metric: Optional[str] = typer.Option(None, "--metric", help="Metric to rank, test and tabulate: "
                                                         "test_auc (the default; valid_auc with --sweep), valid_auc, "
                                                         "..., "
                                                         "or a top-N metric (recall@20, precision@10, f1@5, "
                                                         "full_recall@20, full_ndcg@20)."),
                    at: str = typer.Option("best", "--at", help="best | last | N | original (the original's "
                                               "test-based selection and "
                                               "early stopping, replayed on the stored test metrics): the epoch each "
                                               "run contributes."),
                    matrix: bool = typer.Option(False, "--matrix", help="Dataset x configuration table; columns "
                                                "by --group-by: model (default), recipe or config (its settings "
                                                "without the dataset)."),
                    strata: bool = typer.Option(False, "--strata", help="AUC by stratum instead: per split, "
                                                "each group's test AUC for users by training rows (1-2, 3-5, "
                                                "...) and items by popularity (head, torso, tail thirds), at "
                                                "the selected epoch, beside popularity's."),
                    best_of_sweeps: bool = typer.Option(False, "--best-of-sweeps", help="The ids given are "
                                                        "sweeps (tuning budgets): the matrix of the point each "
                                                        "chose on validation (its rerun seeds), beside pop, with "
                                                        "paired tests against KNI."),
                    paired: Optional[Tuple[str, str]] = typer.Option(None, "--paired", help="Two groups A B "
                                                                     "(config-hash prefixes or recipe names): "
                                                                     "a paired test over their shared seeds."),
                    explain: bool = typer.Option(False, "--explain", help="Instead: the early-summarization "
                                                 "statistic of each KNI/NI run with a saved model (attention on "
                                                 "the (user, item) cell itself over sampled test rows: mean, "
                                                 "quartiles), e.g. KNI vs NI."),
                    explain_rows: int = typer.Option(1000, "--explain-rows", min=1,
                                                     help="With --explain: test rows sampled per run (seed 0)."),
                    explain_samples: int = typer.Option(4, "--explain-samples", min=1,
                                                        help="With --explain: neighbourhood samples per row."),
                    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                    db: str = db_option()) -> None:
    """One row per group of seeds: n, mean ± std of AUC / logloss / accuracy, best epoch, time per epoch."""
    if explain:
        if sweep is not None or matrix or paired or group_by or metric:
            fail("--explain compares runs' attention: it takes run ids, --recipe, --all, --dataset or --status, "
                  "not --sweep, --matrix, --paired, --group-by or --metric")
        from .explain import compare_explain
        compare_explain(db, run_ids or [], recipe, all_, dataset, status, explain_rows, explain_samples, 0, json_out)
        return
    if best_of_sweeps:
        if sweep is not None or recipe or all_ or paired or strata or group_by:
            fail("--best-of-sweeps takes sweep ids (kni sweeps lists them), --metric, --status, --at and --json")
        from .tuned import compare_best_of_sweeps
        compare_best_of_sweeps(open_store(db), run_ids or [], metric or "test_auc", at, status, json_out)
        return
    if sweep is not None:
        from .sweeps import compare_sweep
        if run_ids or recipe or all_ or matrix or paired or group_by:
            fail("--sweep ranks one sweep's points; it takes no run ids, --recipe, --all, --matrix, --paired "
                  "or --group-by")
        compare_sweep(open_store(db), sweep, metric or "valid_auc", at, status, dataset, json_out)
        return
    metric = metric or "test_auc"
    group_by = group_by or ("model" if matrix else "config")
    store = open_store(db)
    try:
        if strata and (matrix or paired or at != "best"):
            raise cmp.CompareError("--strata shows the AUC by stratum stored at each run's selected epoch: it "
                                   "takes no --matrix, --paired or --at (compare one stratum with --metric "
                                   "auc_users_1-2, auc_items_tail, ...)")
        cmp.check_metric(metric, at)
        if group_by not in cmp.GROUP_BY:
            raise cmp.CompareError(f"--group-by: expected one of {', '.join(cmp.GROUP_BY)}; got {group_by!r}")
        store.refresh_crashed()
        pts, at_value = _selection(store, run_ids or [], recipe, all_, dataset, status, at)
        if not pts:
            raise cmp.CompareError("no runs to compare (kni runs lists them; --status all includes unfinished runs)")
        groups = cmp.group_points(pts, group_by)
        groups.sort(key=lambda g: _rank_key(g, metric))
        paired_result = None
        if paired:
            config_groups = cmp.group_points(pts, "config")
            a = cmp.resolve_group(config_groups, paired[0])
            b = cmp.resolve_group(config_groups, paired[1])
            paired_result = cmp.paired_test(a, b, metric)
        mat = None
        if matrix:
            mat = cmp.matrix(pts, group_by, metric)
        floors = cmp.floors_for(store, [p.run for p in pts])
    except KniError as e:
        fail(e)
    if strata:
        show_strata(groups, floors, json_out)
        return
    if json_out:
        result: dict[str, Any] = {"group_by": group_by, "metric": metric, "at": str(at_value),
                                  "groups": cmp.group_rows(groups, at_value, floors)}
        if paired_result is not None:
            result["paired"] = paired_result.to_dict()
        if mat is not None:
            result["matrix"] = matrix_json(mat, floors)
        if at_value == "original":
            result["truncated_runs"] = [p.run.id for p in pts if p.truncated]
        print(json.dumps(result, indent=2))
        return
    console = out()
    if mat is not None:
        console.print(matrix_table(mat, at_value, pts, floors))
    else:
        console.print(_groups_table(groups, metric, group_by, at_value, pts, floors))
    notes = []
    for g in groups:
        if g.data_note():
            console.print(f"[bold yellow]{escape(g.label or g.id)}: {escape(g.data_note())}[/]", highlight=False)
        notes += [f"{g.label}: {line}" for line in g.seed_notes()]
        if g.without_point:
            seeds = ", ".join(str(m.run.seed) for m in sorted(g.without_point, key=lambda m: m.run.seed))
            notes.append(f"{g.label}: seed(s) {seeds} left out: their counted run has no {at_text(at_value, pts)}"
                         f" (run(s) {', '.join(str(m.run.id) for m in g.without_point)})")
    truncated = [p.run.id for p in pts if p.truncated]
    if truncated:
        notes.append(f"runs {', '.join(map(str, truncated))} stopped (on their own split) before the original "
                     "rule would have: their value is the best test epoch among the epochs they ran")
    for n in notes:
        console.print(f"[dim]{escape(n)}[/]", highlight=False)
    if paired_result is not None:
        console.print(_paired_table(paired_result, at_value, pts))


def _rank_key(g: cmp.Group, metric: str) -> tuple:
    mean, _ = g.stat(metric)
    if not math.isfinite(mean):
        return (1, 0.0)
    return (0, mean if cmp.lower_is_better(metric) else -mean)


def _partial(g: cmp.Group, metric: str) -> str:
    """`` (k/n)`` after a mean over only k of the group's n runs (the others lack the metric)."""
    k = g.n - len(g.missing(metric))
    return f" ({k}/{g.n})" if 0 < k < g.n else ""


def _vs_pop(diff: float | None, metric: str) -> str:
    """A group's difference from its split's popularity floor; red with ▼ when worse than it
    (below on AUC and accuracy, above on logloss)."""
    if diff is None:
        return "-"
    return f"[bold red]▼{diff:+.4f}[/]" if cmp.below_floor(diff, metric) else f"{diff:+.4f}"


def _groups_table(groups: list[cmp.Group], metric: str, by: str, at: str | int, pts: list[cmp.RunPoint],
                  floors: dict) -> Table:
    split = "valid" if metric.startswith("valid") else "test"
    table = Table(title=f"compare by {by}: mean ± std over seeds at {at_text(at, pts)} (ranked by {metric})",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption="group: the group id, the first 8 characters of the config hash (as in kni runs and the "
                          "workbench)" if by == "config" else None, caption_justify="left")
    cols = [("group", "left"), ("recipe", "left"), ("dataset", "left"), ("model", "left")]
    if by == "config" and any(g.differs for g in groups):
        cols.append(("differs", "left"))
    cols += [("n", "right"), ("seeds", "left")]
    metric_cols = [f"{split}_auc", f"{split}_logloss", f"{split}_acc"]
    if metric not in metric_cols:
        metric_cols.insert(0, metric)
    for c, just in cols:
        table.add_column(c, justify=just, overflow="fold")  # type: ignore[arg-type]
    for m in metric_cols:
        table.add_column(m.replace("_", " "), justify="right", style="bold" if m == metric else None,
                         overflow="fold")
    with_floor = metric in cmp.FLOOR_METRICS or cmp.is_stratum_metric(metric)
    if with_floor:
        table.add_column("vs pop", justify="right", overflow="fold")
    table.add_column("epoch", justify="right", overflow="fold")
    table.add_column("s/epoch", justify="right", overflow="fold")
    best_mean = None
    for g in groups:
        mean = g.stat(metric)[0]
        if math.isfinite(mean):
            best_mean = mean if best_mean is None else (min(best_mean, mean) if cmp.lower_is_better(metric)
                                                        else max(best_mean, mean))
    for g in groups:
        row = [g.id, g.distinct("recipe"), g.distinct("dataset"),
               g.distinct("model")]
        if by == "config" and any(x.differs for x in groups):
            row.append(g.differs)
        seeds, training = g.seeds, set(g.training_seeds)
        shown = (",".join(f"{s}*" if s in training else str(s) for s in seeds) if len(seeds) <= 8
                 else f"{seeds[0]}..{seeds[-1]}" + (f" ({len(training)}*)" if training else ""))
        row += [str(g.n), shown]
        for m in metric_cols:
            mean, std = g.stat(m)
            cell = pm(mean, std, sep="±") + _partial(g, m)
            row.append(f"[green]{cell}[/]" if m == metric and best_mean is not None and mean == best_mean
                       and len(groups) > 1 else cell)
        if with_floor:
            row.append(_vs_pop(cmp.vs_floor(g.stat(metric)[0], cmp.group_floor(g, floors), metric), metric))
        e_mean, e_std = g.epoch_stat()
        row.append(pm(e_mean, e_std, 1, sep="±"))
        row.append(fmt(g.seconds()[2], 2))
        table.add_row(*row)
    notes = [table.caption] if table.caption else []
    if with_floor:
        notes.append(f"vs pop: the mean's difference from the {metric} of item popularity on the same split "
                     "(the floor)")
    if any(g.training_seeds for g in groups):
        notes.append("* still training: read at its best epoch so far (--status completed leaves such runs out)")
    mixed = [g.id for g in groups if g.pooled]
    if mixed:                                  # --group-by model / dataset / recipe: not a seed spread
        notes.append(f"{', '.join(mixed[:4])}{' ...' if len(mixed) > 4 else ''}: several configurations pooled "
                     f"(--group-by {by}), so n counts runs, not seeds, and the std holds their differences "
                     "as well as the seeds' (--group-by config keeps them apart)")
    if any(_partial(g, m) for g in groups for m in metric_cols):
        notes.append("(k/n): a mean over the k of the group's n runs that have the metric (top-N is measured "
                     "at the selected epoch, and every eval.topk.every epochs)")
    table.caption = "; ".join(notes) or None
    table.caption_justify = "left"
    return table


def show_strata(groups: list[cmp.Group], floors: dict, json_out: bool) -> None:
    """``kni compare --strata``: a table per split, a row per group and popularity's row first."""
    by_split: dict[str, list[cmp.Group]] = {}
    for g in groups:
        keys = {cmp.run_floor_key(m.run) for m in g.members}
        by_split.setdefault(keys.pop() if len(keys) == 1 else "", []).append(g)
    tables = []
    for key, members in by_split.items():
        floor = floors.get(key)
        metrics = cmp.stratum_columns([m.strata for g in members for m in g.members]
                                      + [cmp.stratum_values((floor or {}).get("strata") or {})])
        sizes = next((cmp.stratum_sizes(m.run.strata_dict) for g in members for m in g.members if m.strata), {})
        tables.append({"dataset": members[0].distinct("dataset"), "metrics": metrics, "sizes": sizes,
                       "pop": {m: cmp.floor_value(floor, m) for m in metrics} if floor else None,
                       "groups": [(g, {m: g.stat(m) for m in metrics}) for g in members]})
    if json_out:
        print(json.dumps([_strata_json(t) for t in tables], indent=2))
        return
    console = out()
    for t in tables:
        console.print(_strata_table(t))
    if not any(t["metrics"] for t in tables):
        console.print("[dim]no run has its AUC by stratum stored (runs from before it was measured)[/]")


def _short_label(g: cmp.Group, groups: list[cmp.Group]) -> str:
    """The group's label, with the settings that differ only when another group shares it (the
    strata tables put every model side by side: their differences are the models)."""
    shared = sum(x.label == g.label for x in groups) > 1
    return g.label + (f" [{g.differs}]" if shared and g.differs else "")


def _strata_json(t: dict) -> dict:
    def cell(m: str, mean: float, std: float) -> dict:
        pop = t["pop"][m] if t["pop"] else None
        return {"mean": cmp.json_value(mean), "std": cmp.json_value(std),
                "vs_pop": cmp.json_value(mean - pop) if pop is not None else None}
    return {"dataset": t["dataset"], "strata": [{"metric": m, **t["sizes"].get(m, {})} for m in t["metrics"]],
            "pop": t["pop"],
            "groups": [{"group": g.id, "label": g.label, "n": g.n, "run_ids": [x.run.id for x in g.members],
                        "auc": {m: cell(m, *v) for m, v in stats.items()}} for g, stats in t["groups"]]}


def _strata_table(t: dict) -> Table:
    table = Table(title=f"{t['dataset']}: test AUC by stratum, mean ± std over seeds at the selected epoch",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption="users by their training rows, items by popularity (thirds of the training positives); "
                          "under each stratum its test rows and their positive share; ▼ below popularity",
                  caption_justify="left")
    table.add_column("group")
    table.add_column("n", justify="right")
    for m in t["metrics"]:
        size = t["sizes"].get(m, {})
        share = size.get("positive_share")
        under = f"\n{size['rows']:,} rows" + (f", {share:.0%} +" if isinstance(share, float) else "") \
            if "rows" in size else ""
        table.add_column(escape(cmp.stratum_label(m)) + under, justify="right")
    if t["pop"] is not None:
        table.add_row("pop (floor)", "", *[fmt(t["pop"][m]) for m in t["metrics"]], style="dim")
    for g, stats in t["groups"]:
        cells = []
        for m in t["metrics"]:
            mean, std = stats[m]
            pop = t["pop"][m] if t["pop"] else None
            text = pm(mean, std, sep="±")
            cells.append(f"[bold red]▼{text}[/]" if pop is not None and math.isfinite(mean) and mean < pop
                         else text)
        table.add_row(escape(_short_label(g, [x for x, _ in t["groups"]])), str(g.n), *cells)
    return table


def _paired_table(r: cmp.PairedResult, at: str | int, pts: list[cmp.RunPoint]) -> Table:
    table = Table(title=f"paired {r.metric} at {at_text(at, pts)}: A - B over {len(r.seeds)} shared seed(s)",
                  title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("A", escape(r.a.label + (f" [{r.a_differs}]" if r.a_differs else "")))
    table.add_row("B", escape(r.b.label + (f" [{r.b_differs}]" if r.b_differs else "")))
    table.add_row("shared seeds", ", ".join(map(str, r.seeds)))
    table.add_row("mean A / B", f"{fmt(r.mean_a)} / {fmt(r.mean_b)}")
    table.add_row("difference", f"{r.diff:+.4f}  (std of the differences {fmt(r.diff_std)})")
    table.add_row("bootstrap 95% CI", f"\\[{r.ci[0]:+.4f}, {r.ci[1]:+.4f}]  ({cmp.BOOTSTRAP_RESAMPLES:,} resamples, "
                                      f"seed {cmp.BOOTSTRAP_SEED})")
    kind = (f"exact over {2 ** len(r.seeds):,} sign patterns" if r.exact
            else f"Monte Carlo, {cmp.MC_PATTERNS:,} patterns")
    table.add_row("sign-flip p", f"{r.p_value:.4g}  ({kind}, two-sided; smallest reachable {r.min_p:.4g})")
    table.add_row("seed noise", escape(r.noise_text()))
    style = {"significant": "green", "too few seeds": "yellow", "inconclusive": "yellow"}.get(r.verdict, "")
    text = escape(r.verdict_text())
    table.add_row("verdict", f"[{style}]{text}[/]" if style else text)
    return table


def export_command(run_ids: List[int] = typer.Argument(None, help="Run ids (default: every run)."),
                   csv_path: str = typer.Option(..., "--csv", help="Output file; '-' writes to stdout."),
                   groups_: bool = typer.Option(False, "--groups", help="One row per group instead of per run."),
                   recipe: Optional[str] = typer.Option(None, "--recipe", help="The runs of this recipe."),
                   sweep: Optional[int] = typer.Option(None, "--sweep", help="The runs of this sweep."),
                   all_: bool = typer.Option(False, "--all", help="Every run (the default)."),
                   dataset: Optional[str] = typer.Option(None, "--dataset", help="Only runs of this dataset."),
                   status: Optional[List[str]] = typer.Option(None, "--status", help="Statuses that count "
                                                              "(default completed,running,pruned; 'all')."),
                   group_by: str = typer.Option("config", "--group-by", help="config | dataset | model | recipe."),
                   at: str = typer.Option("best", "--at", help="best | last | N."),
                   json_out: bool = typer.Option(False, "--json", help="Print {path, rows, columns} as JSON."),
                   db: str = db_option()) -> None:
    """Write per-run (or --groups: per-group) rows as CSV; columns are documented in docs/export.md."""
    if json_out and csv_path == "-":
        fail("--json and --csv - both want stdout; give --csv a file")
    store = open_store(db)
    try:
        if group_by not in cmp.GROUP_BY:
            raise cmp.CompareError(f"--group-by: expected one of {', '.join(cmp.GROUP_BY)}; got {group_by!r}")
        store.refresh_crashed()
        pts, at_value = _selection(store, run_ids or [], recipe, all_, dataset, status, at, sweep)
        if groups_:
            rows, columns = cmp.export_table(pts, at_value, cmp.group_points(pts, group_by),
                                             cmp.floors_for(store, [p.run for p in pts]))
        else:
            rows, columns = cmp.export_table(pts, at_value)
    except KniError as e:
        fail(e)
    text = cmp.csv_text(rows, columns)
    if csv_path == "-":
        sys.stdout.write(text)
        return
    target = Path(csv_path).expanduser().absolute()
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as e:
        fail(f"--csv {csv_path}: cannot write ({e.strerror or e})")
    if json_out:
        print(json.dumps({"path": str(target), "rows": len(rows), "columns": list(columns)}))
    else:
        err_console().print(f"wrote {len(rows)} {'group' if groups_ else 'run'} row(s) to {escape(str(target))}",
                             highlight=False, soft_wrap=True)
