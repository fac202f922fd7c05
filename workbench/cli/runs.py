"""``kni runs | show | rm | cancel``: the stored runs, one run in full, removing and cancelling.

``runs`` and ``show`` open the database read-only (they never write, and work in a read-only
folder); ``rm`` and ``cancel`` write."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kni_core.errors import KniError

from ..present import ago, duration, fmt, tags_text
from ..store.statuses import LIVE, PRUNED, RUNNING, STATUSES
from .common import (
    JSON_HELP,
    check_statuses,
    closed_at_the_end,
    db_option,
    err_console,
    fail,
    now,
    open_store,
    out,
    status_text,
)

if TYPE_CHECKING:                                  # imported where used, so `kni --help` starts fast

    from ..store.records import Epoch, Run, TopK
    from ..store.repository import Store



# --------------------------------------------------------------------------------------------
# kni runs


def runs_command(status: Optional[List[str]] = typer.Option(None, "--status", help="Only runs with this status "
                                                            "(repeatable): " + ", ".join(STATUSES) + "."),
                 dataset: Optional[str] = typer.Option(None, "--dataset", help="Only runs of this dataset."),
                 recipe: Optional[str] = typer.Option(None, "--recipe", help="Only runs of this recipe (name)."),
                 tag: Optional[List[str]] = typer.Option(None, "--tag", help="Only runs with this tag, on the run "
                                                         "or on its group (repeatable: every tag given)."),
                 sweep: Optional[int] = typer.Option(None, "--sweep", help="Only runs of this sweep (kni sweeps)."),
                 json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                 db: str = db_option()) -> None:
    """List runs with their live status and progress (runs whose process vanished show as crashed).

    Reads only: the database is opened read-only and never changed."""
    from ..store.errors import StoreError
    from ..store.records import run_seconds, run_to_dict
    from ..store.repository import Store
    statuses = check_statuses(status)
    try:
        store = closed_at_the_end(Store.open(db, readonly=True))
    except StoreError as e:
        if "no run database here" in str(e):
            if json_out:
                print("[]")
            else:
                err_console().print(f"no runs yet ({escape(str(e))})")
            return
        fail(e)
    try:
        if sweep is not None:
            store.get_sweep(sweep)
        runs = store.runs(status=statuses or None, dataset=dataset, recipe=recipe, sweep=sweep)
    except KniError as e:
        fail(e)
    if tag:
        runs = [r for r in runs if set(tag) <= set(r.tags) | set(r.group_tags)]
    if json_out:
        print(json.dumps([run_to_dict(r, Store.effective_status(r)) for r in runs], indent=2))
        return
    title = f"runs in {store.where}" + (" (read-only snapshot: the folder is not writable)" if store.snapshot else "")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col, just in (("id", "right"), ("recipe", "left"), ("dataset", "left"), ("model", "left"),
                      ("seed", "right"), ("status", "left"), ("epochs", "right"), ("progress", "left"),
                      ("ETA", "right"), ("best", "right"), ("test auc", "right"), ("tags", "left"),
                      ("group", "left"), ("time", "right")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for r in runs:
        st = Store.effective_status(r)
        recipe_cell = r.recipe + (f" [dim]s{r.sweep_id}.p{r.sweep_point}[/]" if r.sweep_id is not None else "")
        table.add_row(str(r.id), recipe_cell, r.dataset, r.model, str(r.seed), _status_cell(r, st),
                      f"{r.n_epochs}/{r.max_epochs}", *_progress_cells(r, st), str(r.best_epoch or "-"),
                      fmt(r.best_test_auc), escape(tags_text(r)), r.config_hash[:8],
                      duration(run_seconds(r, now())))
    if runs:
        out().print(table)
        damaged = [r for r in runs if r.damage]
        if damaged:
            err_console().print(f"[red]{len(damaged)} run(s) with damaged values, shown as '-': "
                                 + "; ".join(f"run {r.id}: {', '.join(r.damage)}" for r in damaged[:5])
                                 + (" ..." if len(damaged) > 5 else "") + "[/] (kni show RUN says more)",
                                 highlight=False, soft_wrap=True)
    else:
        out().print("no runs match" + (" (filters: " + ", ".join(
            f"{k} {v}" for k, v in (("--status", ",".join(statuses)), ("--dataset", dataset), ("--recipe", recipe),
                                    ("--tag", ",".join(tag or [])), ("--sweep", sweep))
            if v is not None and v != "") + ")" if (statuses or dataset or recipe or tag or sweep is not None) else ""))


def _status_cell(run: Run, status: str) -> Text:
    """The status; a live run also says when its process last gave a sign of life."""
    cell = status_text(status)
    if status in LIVE:
        cell.append(f", beat {ago(run.heartbeat_at)}", style="dim")
    if run.damage:                      # unreadable or out-of-range values (store docs)
        cell.append(" damaged", style="bold red")
    return cell


def _progress_cells(run: Run, status: str) -> tuple[str, str]:
    """(``train 51%``, ``≤4m05s``) for a running run with stored progress, else blanks."""
    from ..runs.progress import eta_text, parse
    p = parse(run.progress) if status == RUNNING else None
    if p is None:
        return ("", "")
    where = f"{p.phase} {100 * p.done // max(1, p.total)}%" if p.phase else "starting"
    return (where, eta_text(p))


def progress_text(run: Run) -> str | None:
    """``epoch 3/20: train 40/79 12.3/s, epoch left 10s, run ETA ≤4m05s`` for a running run."""
    from ..runs.progress import clock_text, describe, eta_text, parse
    p = parse(run.progress) if run.status == RUNNING else None
    if p is None:
        return None
    text = f"epoch {p.epoch}/{p.epochs}: {describe(p)}"
    epoch_left = p.left("epoch_left")
    if epoch_left is not None:
        text += f", epoch left {clock_text(epoch_left)}"
    return text + f", ETA {eta_text(p)}"


# --------------------------------------------------------------------------------------------
# kni show


def epoch_plot(epochs: list[Epoch], width: int, height: int = 16, color: bool = True) -> str:
    """valid/test AUC and logloss per epoch, side by side, as terminal text (plotext)."""
    import plotext as plt
    plt.clear_figure()
    plt.subplots(1, 2)
    plt.plotsize(max(40, width), max(8, height))
    xs_all = [e.epoch for e in epochs]
    step = max(1, math.ceil(len(xs_all) / 8))
    ticks = xs_all[::step]
    for col, (metric, title) in enumerate((("auc", "AUC"), ("logloss", "logloss")), start=1):
        plt.subplot(1, col)
        plt.title(f"{title} per epoch")
        for split, marker in (("valid", "dot"), ("test", "x")):
            pts = [(e.epoch, getattr(e, f"{split}_{metric}")) for e in epochs]
            pts = [(x, y) for x, y in pts if y is not None and math.isfinite(y)]
            if pts:
                plt.plot([p[0] for p in pts], [p[1] for p in pts], label=split, marker=marker)
        plt.xticks(ticks)
        plt.xlabel("epoch")
    text = plt.build()
    plt.clear_figure()
    return text if color else plt.uncolorize(text)


def show_command(run_id: int = typer.Argument(..., help="Run id (kni runs lists them)."),
                 plot: bool = typer.Option(True, "--plot/--no-plot", help="Draw the per-epoch plot."),
                 json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                 db: str = db_option()) -> None:
    """One run: its status, progress, resources, tags and note, configuration, per-epoch table, a
    plot of AUC and logloss, and its top-N results when it has any."""
    from ..analysis.diff import flatten
    from ..runs.resources import resources_text
    from ..store.records import epoch_to_dict, run_seconds, run_to_dict, topk_to_dict
    from ..store.repository import Store
    store = open_store(db)
    try:
        run = store.get(run_id)
        epochs = store.epochs(run_id)
        topk = store.topk(run_id)
        attempts = store.attempts(run)
    except KniError as e:
        fail(e)
    from ..runs.checkpoints import state as checkpoint_state
    status = Store.effective_status(run)
    damage = list(run.damage) + [d for e in epochs for d in e.damage]
    checkpoint = checkpoint_state(store.url, run.checkpoint)
    if json_out:
        print(json.dumps({"run": {**run_to_dict(run, status), "damaged": damage}, "config": run.config,
                          "checkpoint_file": checkpoint.to_dict(),
                          "recipe_text": run.recipe_text,
                          "data_stats": json.loads(run.data_stats) if run.data_stats else None,
                          "traceback": run.traceback, "epochs": [epoch_to_dict(e) for e in epochs],
                          "topk": [topk_to_dict(t) for t in topk],
                          "attempts": [a.to_dict() for a in attempts],
                          "strata_epoch": run.best_epoch if run.strata_dict else None,
                          **{k: run.strata_dict.get(k) for k in ("auc_by_user_degree", "auc_by_item_popularity")}},
                         indent=2))
        return
    console = out()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("run", f"{run.id}  {run.recipe}  seed {run.seed}  ({run.dataset}, {run.model})")
    head.add_row("status", status_text(status))
    head.add_row("progress", f"{len(epochs)}/{run.max_epochs} epochs" + (" (early stop)" if run.stopped_early else ""))
    inside = progress_text(run) if status == RUNNING else None
    if inside:
        head.add_row("", inside)
    if run.best_epoch is not None:
        head.add_row(f"best ({run.select_on})", f"epoch {run.best_epoch}: test auc {fmt(run.best_test_auc)}, "
                                               f"logloss {fmt(run.best_test_logloss)}, acc {fmt(run.best_test_acc)}"
                                               f"; valid auc {fmt(run.best_valid_auc)}")
    head.add_row("group", f"{run.config_hash}  (kni compare --recipe {run.recipe})")
    head.add_row("process", f"pid {run.pid} on {run.host}, device {run.device}"
                            + (f", executor {run.executor}" if run.executor else ""))
    resources = resources_text(run)
    if resources:
        head.add_row("resources", resources)
    created = f"{run.created_at:%Y-%m-%d %H:%M:%S} UTC" if run.created_at is not None else "? (damaged)"
    ran = duration(run_seconds(run, now())) + (f" in {len(attempts)} attempts" if len(attempts) > 1 else "")
    head.add_row("times", f"created {created}, ran {ran}"
                          + (f", heartbeat {ago(run.heartbeat_at)}" if status in LIVE else ""))
    if run.tags or run.group_tags:
        head.add_row("tags", escape(" ".join(run.tags) or "-")
                     + (f"  (group: {escape(' '.join(run.group_tags))})" if run.group_tags else ""))
    if run.note:
        head.add_row("note", Text(run.note))
    if run.group_note:
        head.add_row("group note", Text(run.group_note))
    from ..analysis.provenance import describe_code, describe_data, describe_environment, read
    provenance = read(run)
    if run.package_version or run.git_commit:
        head.add_row("code", describe_code(provenance))
    for label, text in (("environment", describe_environment(provenance)), ("data", describe_data(provenance))):
        if text:
            head.add_row(label, text)
    if run.recipe_path:
        head.add_row("recipe file", run.recipe_path)
    head.add_row("checkpoint", Text(checkpoint.text(), style="bold red" if checkpoint.missing else ""))
    head.add_row("last epoch", last_state_text(store.url, run))
    if len(attempts) > 1:
        head.add_row("attempts", Text("\n".join(attempt_text(a) for a in attempts)))
    if run.sweep_id is not None:
        from ..recipe.sweep import params_text
        head.add_row("sweep", f"sweep {run.sweep_id}, point {run.sweep_point}: {params_text(run.params)}  "
                              f"(kni compare --sweep {run.sweep_id})")
    if run.error:
        head.add_row("pruned" if run.status == PRUNED else "error",
                     Text(run.error, style="cyan" if run.status == PRUNED else "red"))
    if damage:
        head.add_row("damaged", Text("unreadable or out-of-range values, shown as '-' and left out of every "
                                     "mean: " + "; ".join(damage), style="bold red"))
    console.print(head)
    cfg = Table(title="configuration", title_justify="left", show_header=False)
    cfg.add_column("key", style="cyan")
    cfg.add_column("value")
    for k, v in flatten(run.config).items():
        cfg.add_row(k, json.dumps(v))
    console.print(cfg)
    if epochs:
        t = Table(title="epochs", title_justify="left")
        for col in ("epoch", "train loss", "valid auc", "valid ll", "valid acc", "test auc", "test ll", "test acc",
                    "train s", "eval s"):
            t.add_column(col, justify="right")
        for e in epochs:
            style = "bold" if e.epoch == run.best_epoch else ""
            t.add_row(str(e.epoch), fmt(e.train_loss), fmt(e.valid_auc), fmt(e.valid_logloss),
                      fmt(e.valid_acc), fmt(e.test_auc), fmt(e.test_logloss), fmt(e.test_acc),
                      fmt(e.train_seconds, 1), fmt(e.eval_seconds, 1), style=style)
        console.print(t)
        if plot:
            text = epoch_plot(epochs, width=min(console.width, 160), color=console.is_terminal)
            console.print(Text.from_ansi(text) if console.is_terminal else text, highlight=False, markup=False)
    else:
        console.print("[dim]no epochs stored[/]")
    for t in topk:
        console.print(topk_table(t, run.best_epoch))
    if run.strata_dict:
        from ..views.strata import strata_table
        console.print(strata_table(run, _run_floor(store, run)))
    if run.traceback:
        console.print(Text(run.traceback, style="dim red"))


def last_state_text(url: str, run: Run) -> str:
    """The run's last-epoch state (what kni resume continues from): its file and latest write."""
    from ..runs.checkpoints import human_size, last_state_path
    path = last_state_path(url, run.id)
    written = (f", its latest write took {run.last_state_seconds:.2f} s" if run.last_state_seconds is not None
               else "")
    if path.is_file():
        return f"{path} ({human_size(path.stat().st_size)}{written}; kni resume {run.id} continues from it)"
    if run.last_state_bytes is not None:
        return f"none kept ({human_size(run.last_state_bytes)}{written}; removed when the run completed)"
    return "none saved"


def attempt_text(a: Any) -> str:
    start = f"{a.started_at:%Y-%m-%d %H:%M:%S}" if a.started_at else "?"
    end = f"{a.ended_at:%H:%M:%S}" if a.ended_at else "now"
    return (f"{a.attempt}: {a.status}, {a.epochs} epoch(s) stored, pid {a.pid} on {a.host}, {start} to {end} UTC"
            + (f" ({a.error.splitlines()[0][:120]})" if a.error else ""))


def _run_floor(store: Store, run: Run) -> dict | None:
    """The stored popularity floor of the run's split (never computed here: show stays fast)."""
    from ..analysis import floors_for, run_floor_key
    try:
        return floors_for(store, [run], compute=False).get(run_floor_key(run))
    except KniError:
        return None


def topk_table(t: TopK, best_epoch: int | None) -> Any:
    """One stored top-N result: a headline, then a row per K and a column per metric family."""
    from rich.console import Group as RichGroup
    what = "KGCN/MKR protocol" if t.protocol == "sampled" else "full ranking"
    selected = " (the selected epoch)" if t.epoch == best_epoch else ""
    head = Text(f"top-N, {what}, epoch {t.epoch}{selected}: {t.users} users, seed {t.seed}, "
                f"n_eval {t.n_eval}, {fmt(t.seconds, 1)} s", style="italic")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    metrics = t.metrics
    by_k: dict[int, dict[str, float | None]] = {}
    families: list[str] = []
    for name, value in metrics.items():
        family, k = name.rsplit("@", 1)
        by_k.setdefault(int(k), {})[family] = value
        if family not in families:
            families.append(family)
    table.add_column("K", justify="right")
    for f in families:
        table.add_column(f.replace("full_", ""), justify="right")
    for k in sorted(by_k):
        table.add_row(str(k), *[fmt(by_k[k].get(f)) for f in families])
    return RichGroup(head, table)




# --------------------------------------------------------------------------------------------
# kni rm / cancel


def rm_command(run_ids: List[int] = typer.Argument(..., help="Run ids to remove."),
               yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
               json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
               db: str = db_option()) -> None:
    """Remove runs and their epochs (asks first unless --yes). Live runs must be cancelled first."""
    from ..store.errors import StoreError
    store = open_store(db, write=True)
    try:
        store.refresh_crashed()
        missing = store.missing(run_ids)
        if missing:
            raise StoreError(f"no run with id {', '.join(map(str, missing))} in {store.where}; nothing removed")
        runs = store.runs(ids=run_ids)
        live = [r for r in runs if r.status in LIVE]
        if live:
            raise StoreError("; ".join(f"run {r.id} is {r.status} (pid {r.pid} on {r.host})" for r in live)
                             + f"; cancel it first (kni cancel {' '.join(str(r.id) for r in live)}); nothing removed")
    except KniError as e:
        fail(e)
    if not yes:
        listing = ", ".join(f"{r.id} ({r.recipe} seed {r.seed}, {r.status})" for r in runs)
        try:
            ok = typer.confirm(f"Remove run(s) {listing} from {store.where}?", default=False, err=True)
        except typer.Abort:
            ok = False
        if not ok:
            err_console().print("nothing removed")
            raise typer.Exit(1)
    try:
        n = store.delete([r.id for r in runs])
    except KniError as e:
        fail(e)
    from ..runs.checkpoints import OtherDatabasesCheckpoint, remove_saved
    files, kept = [], []
    for r in runs:                  # after the rows: a failed delete leaves no row pointing at nothing
        try:
            if remove_saved(store.url, r):
                files.append(r.id)
        except OtherDatabasesCheckpoint as e:
            kept.append((r.id, str(e)))
        except OSError as e:
            err_console().print(f"[yellow]warning:[/] run {r.id}: checkpoint {escape(str(r.checkpoint))} not "
                                 f"removed ({escape(e.strerror or str(e))})", highlight=False)
    if json_out:
        print(json.dumps({"removed": [r.id for r in runs], "checkpoints_removed": files,
                          "checkpoints_kept": [i for i, _ in kept]}))
        return
    err_console().print(f"removed {n} run(s)" + (f" and {len(files)} checkpoint(s)" if files else ""))
    if kept:
        ids = ", ".join(str(i) for i, _ in kept)
        err_console().print(f"[yellow]kept {len(kept)} checkpoint(s)[/] of run(s) {ids}: {escape(kept[0][1])}",
                            highlight=False)


def cancel_command(run_ids: List[int] = typer.Argument(..., help="Run ids to cancel."),
                   json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                   db: str = db_option()) -> None:
    """Cancel live runs: SIGTERM to their process (they end as cancelled, epochs kept). A run
    whose process is gone (or whose pid now belongs to another process) is marked crashed."""
    from ..runs.control import cancel
    from ..store.errors import StoreError
    store = open_store(db, write=True)
    done = {}
    try:
        missing = store.missing(run_ids)
        if missing:
            raise StoreError(f"no run with id {', '.join(map(str, missing))} in {store.where}")
        for i in run_ids:
            done[i] = cancel(store, i)
    except KniError as e:
        fail(e)
    if json_out:
        print(json.dumps([{"id": i, "result": m} for i, m in done.items()]))
    else:
        for m in done.values():
            err_console().print(m)
