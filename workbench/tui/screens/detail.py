"""The run detail screen: live per-epoch plots, the epochs table, the resolved config, the AUC
by stratum at the selected epoch, the error and traceback of a failed or crashed run, and - for
a run with ``eval.topk`` - a Top-N tab (added when its first results are stored) plotting
Recall@K and listing every metric."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from rich.console import Group as RichGroup
from rich.syntax import Syntax
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from ...present import duration, fmt, tags_text
from ...runs.progress import clock_text, describe, eta_text, parse
from ...runs.resources import resources_text
from ...store.errors import StoreError
from ...store.records import Epoch, Run, TopK, run_seconds
from ...store.statuses import CRASHED, FAILED, LIVE, RUNNING
from ...views.strata import strata_table
from ..data import Change
from ..keys import ESSENTIAL
from ..plots import PALETTE, RUN_CHARTS, draw_run_chart

EPOCH_COLUMNS = ("epoch", "train loss", "valid AUC", "valid ll", "valid acc", "test AUC", "test ll", "test acc",
                 "train s", "eval s")


class RunDetailScreen(Screen):
    BINDINGS = [
        *ESSENTIAL,
        Binding("escape,backspace", "back", "Back"),
        Binding("p", "tab('plots')", "Plots"),
        Binding("t", "tab('epochs')", "Epochs"),
        Binding("o", "tab('config')", "Config"),
        Binding("e", "tab('error')", "Error"),
        Binding("k", "tab('topk')", "Top-N"),
        Binding("s", "tab('strata')", "Strata"),
        Binding("g", "tags", "Tags"),
        Binding("n", "note", "Note"),
        Binding("c", "cancel", "Cancel"),
        Binding("x", "explain", "Explain"),
        Binding("P", "save_plots", "Save plots"),
    ]

    def __init__(self, run_id: int):
        super().__init__(id=f"run-detail-{run_id}", classes="run-detail")
        self.run_id = run_id
        self._shown_epochs = 0
        self._topk: list[TopK] = []

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("", id="detail-head")
        run = self.app.data.runs.get(self.run_id)
        initial = "error" if run is not None and run.status in (FAILED, CRASHED) else "plots"
        with TabbedContent(initial=initial, id="detail-tabs"):
            with TabPane("Plots", id="plots"):
                with Grid(id="detail-plots"):
                    for chart in RUN_CHARTS:
                        yield PlotextPlot(id=f"chart-{chart}", classes="run-chart")
            with TabPane("Epochs", id="epochs"):
                table = DataTable(id="epochs-table", cursor_type="row", zebra_stripes=True)
                for c in EPOCH_COLUMNS:
                    table.add_column(c, key=c)
                yield table
            with TabPane("Config", id="config"):
                with VerticalScroll():
                    yield Static("", id="detail-config")
            with TabPane("Strata", id="strata"):
                with VerticalScroll():
                    yield Static("", id="detail-strata")
            with TabPane("Error", id="error"):
                with VerticalScroll():
                    yield Static("", id="detail-error")
        yield Footer()

    def on_mount(self) -> None:
        self.app.data.watch([self.run_id])
        self.app.add_listener(self)
        self.redraw(full=True)
        self.set_interval(1.0, self.tick)

    def on_unmount(self) -> None:
        self.app.remove_listener(self)
        self.app.data.unwatch([self.run_id])

    # -- live updates -----------------------------------------------------------------------
    @property
    def run(self) -> Run | None:
        return self.app.data.runs.get(self.run_id)

    @property
    def epochs(self) -> list[Epoch]:
        return self.app.data.epochs.get(self.run_id, [])

    def runs_changed(self, change: Change) -> None:
        if self.run_id in change.removed:
            self.app.notify(f"run {self.run_id} was deleted", severity="warning")
            if self.app.screen is self:
                self.app.pop_screen()
            return
        if self.run_id in change.runs or self.run_id in change.epochs:
            self.redraw(full=self.run_id in change.runs)

    def tick(self) -> None:
        run = self.run
        if run is not None and run.status in LIVE:
            self._head(run)

    def redraw(self, full: bool) -> None:
        run = self.run
        if run is None:
            self.query_one("#detail-head", Static).update(Text(f"run {self.run_id} is not in the database",
                                                               style="bold"))
            return
        self._head(run)
        epochs = self.epochs
        for chart in RUN_CHARTS:
            plot = self.query_one(f"#chart-{chart}", PlotextPlot)
            draw_run_chart(plot.plt, epochs, chart, run.best_epoch)
            plot.refresh()
        table = self.query_one("#epochs-table", DataTable)
        if len(epochs) < self._shown_epochs:
            table.clear()
            self._shown_epochs = 0
        for e in epochs[self._shown_epochs:]:
            table.add_row(*self._epoch_cells(e, run), key=str(e.epoch))
        if full and self._shown_epochs:
            for e in epochs[:self._shown_epochs]:         # the best epoch's marker may have moved
                table.update_cell(str(e.epoch), "epoch", self._epoch_cells(e, run)[0])
        self._shown_epochs = len(epochs)
        if full:
            self._config(run)
            self._strata(run)
            self._error(run)
            self._load_topk()

    @staticmethod
    def _epoch_cells(e: Epoch, run: Run) -> list:
        best = e.epoch == run.best_epoch
        cells = [Text(f"{'★ ' if best else ''}{e.epoch}", justify="right", style="bold" if best else ""),
                 fmt(e.train_loss), fmt(e.valid_auc), fmt(e.valid_logloss), fmt(e.valid_acc), fmt(e.test_auc),
                 fmt(e.test_logloss), fmt(e.test_acc), fmt(e.train_seconds, 1), fmt(e.eval_seconds, 1)]
        return [c if isinstance(c, Text) else Text(c, justify="right") for c in cells]

    def _head(self, run: Run) -> None:
        status = self.app.data.status(run)
        t = Text()
        t.append(f"run {run.id} ", style="bold")
        t.append(f"{run.recipe}  seed {run.seed}  {run.dataset} {run.model}  ")
        t.append(status, style=self.app.status_style(status))
        t.append(f"  epoch {run.n_epochs}/{run.max_epochs}"
                 + (" (early stop)" if run.stopped_early else ""))
        t.append(f"  {duration(run_seconds(run, self.app.data.clock()))}  {run.device}", style="dim")
        t.append("\n")
        if run.best_epoch is not None:
            t.append(f"best {run.select_on} epoch {run.best_epoch}: ", style="dim")
            t.append(f"valid AUC {fmt(run.best_valid_auc)}  test AUC {fmt(run.best_test_auc)}  "
                     f"logloss {fmt(run.best_test_logloss)}  acc {fmt(run.best_test_acc)}")
        else:
            t.append("no epoch finished yet" if status in LIVE else "no epoch recorded", style="dim")
        t.append(f"   group {run.config_hash[:8]}", style="dim")
        p = parse(run.progress) if status == RUNNING else None
        if p is not None:
            now = self.app.data.clock()
            t.append(f"\nepoch {p.epoch}/{p.epochs}: {describe(p)}", style="bold")
            left = p.left("epoch_left", now)
            t.append((f", epoch left {clock_text(left)}" if left is not None else "") + f", ETA {eta_text(p, now)}")
        resources = resources_text(run)
        if resources:
            t.append(f"\n{resources}", style="dim")
        if run.tags or run.group_tags:
            t.append("\ntags ", style="dim")
            t.append(tags_text(run))
        if run.note:
            t.append("\nnote ", style="dim")
            t.append(run.note.splitlines()[0][:200])
        if run.group_note:
            t.append("\ngroup note ", style="dim")
            t.append(run.group_note.splitlines()[0][:200])
        if run.error:
            t.append("\n")
            t.append(run.error.splitlines()[0][:300], style=self.app.status_style(FAILED))
        if run.damage:
            t.append("\ndamaged (shown as -): " + "; ".join(run.damage)[:300], style=self.app.status_style(FAILED))
        self.query_one("#detail-head", Static).update(t)

    def _config(self, run: Run) -> None:
        dark = self.app.current_theme.dark
        theme = "monokai" if dark else "default"
        try:
            cfg_yaml = yaml.safe_dump(json.loads(run.config_json), sort_keys=False, default_flow_style=None)
        except (ValueError, yaml.YAMLError):
            cfg_yaml = run.config_json
        parts: list = [Text("resolved configuration", style="bold"),
                       Syntax(cfg_yaml, "yaml", theme=theme, background_color="default")]
        info = Text(style="dim")
        info.append(f"\ngroup (config hash) {run.config_hash}\n")
        info.append(f"process pid {run.pid} on {run.host}, device {run.device}\n")
        info.append(f"created {run.created_at:%Y-%m-%d %H:%M:%S} UTC" if run.created_at else "created ? (damaged)")
        if run.started_at:
            info.append(f", started {run.started_at:%H:%M:%S}")
        if run.finished_at:
            info.append(f", finished {run.finished_at:%H:%M:%S}")
        from ...analysis.provenance import describe_code, describe_data, describe_environment, read
        provenance = read(run)
        info.append(f"\ncode {describe_code(provenance)}\n")
        for label, text in (("environment", describe_environment(provenance)), ("data", describe_data(provenance))):
            if text:
                info.append(f"{label} {text}\n")
        try:
            attempts = self.app.data.store.attempts(run)
        except StoreError:
            attempts = []
        if len(attempts) > 1:                  # resumed (R or kni resume): every attempt, the current last
            info.append(f"attempts {len(attempts)}:\n")
            for a in attempts:
                info.append(f"  {a.attempt}: {a.status}, {a.epochs} epoch(s), pid {a.pid} on {a.host}"
                            + (f", ended {a.ended_at:%H:%M:%S}" if a.ended_at else "") + "\n")
        if resources_text(run):
            info.append(f"resources {resources_text(run)}\n")
        if run.recipe_path:
            info.append(f"recipe file {run.recipe_path}\n")
        if run.data_stats:
            try:
                stats = json.loads(run.data_stats)
                info.append("data " + ", ".join(f"{k} {v}" for k, v in stats.items()) + "\n")
            except ValueError:
                pass
        parts += [info, Text("recipe as run", style="bold"),
                  Syntax(run.recipe_text or "", "yaml", theme=theme, line_numbers=True, background_color="default")]
        self.query_one("#detail-config", Static).update(RichGroup(*parts))

    def _strata(self, run: Run) -> None:
        view = self.query_one("#detail-strata", Static)
        if not run.strata_dict:
            view.update(Text("no AUC by stratum stored: it is measured at each new best epoch (runs from before "
                             "it existed have none)", style="dim"))
            return
        from ...analysis import floors_for, run_floor_key
        try:
            floor = floors_for(self.app.data.store, [run], compute=False).get(run_floor_key(run))
        except StoreError:
            floor = None
        view.update(strata_table(run, floor))

    def _error(self, run: Run) -> None:
        view = self.query_one("#detail-error", Static)
        if not run.error and not run.traceback:
            view.update(Text("no error recorded for this run", style="dim"))
            return
        parts: list = [Text(f"{run.status}: ", style=self.app.status_style(run.status)) + Text(run.error or "")]
        if run.traceback:
            parts += [Text(""), Text("traceback", style="bold"),
                      Syntax(run.traceback, "pytb", theme="monokai" if self.app.current_theme.dark else "default",
                             background_color="default", word_wrap=True)]
        view.update(RichGroup(*parts))

    # -- top-N ------------------------------------------------------------------------------
    def _load_topk(self) -> None:
        """Read the run's top-N rows (a few rows, only when the run row changed)."""
        try:
            rows = self.app.data.store.topk(self.run_id)
        except StoreError:
            return
        key = lambda rs: [(t.epoch, t.protocol, t.metrics_json) for t in rs]   # noqa: E731
        if rows and key(rows) != key(self._topk):
            self._topk = rows
            self.run_worker(self._show_topk(), group="topk", exclusive=True)

    async def _show_topk(self) -> None:
        if not self.query("#topk"):
            plot = PlotextPlot(id="chart-topk")
            plot.styles.height = "1fr"
            plot.styles.min_height = 8
            text = Static("", id="detail-topk")
            text.styles.height = "auto"
            text.styles.padding = (0, 1)
            await self.query_one("#detail-tabs", TabbedContent).add_pane(
                TabPane("Top-N", Vertical(plot, text), id="topk"))
        plot = self.query_one("#chart-topk", PlotextPlot)
        draw_topk_chart(plot.plt, self._topk, self.run.best_epoch if self.run else None)
        plot.refresh()
        self.query_one("#detail-topk", Static).update(topk_text(self._topk))

    # -- actions ----------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        if tab == "topk" and not self.query("#topk"):
            self.app.notify("no top-N results for this run (eval.topk in its recipe)", severity="warning")
            return
        self.query_one("#detail-tabs", TabbedContent).active = tab

    def action_explain(self) -> None:
        """The Explain screen: the run's saved model asked about a (user, item) pair or a user."""
        from .explain import ExplainScreen
        self.app.push_screen(ExplainScreen(self.run_id))

    def action_save_plots(self) -> None:
        """The run's plots (learning curves, top-N) as PNG and SVG into run-<id>-plots/ in the
        working folder (kni report's figures for this one run)."""
        self.app.notify("saving the plots...", timeout=3)
        self._save_plots(Path(f"run-{self.run_id}-plots").absolute())

    @work(thread=True, group="save-plots", exit_on_error=False)
    def _save_plots(self, out: Path) -> None:
        from kni_core.errors import KniError

        from ...report.run_plots import save_run_plots
        try:
            files = save_run_plots(self.app.data.store, self.run_id, out)
        except (KniError, OSError) as e:
            self.app.call_from_thread(self.app.notify, str(e), title="no plots", severity="error", timeout=10)
            return
        self.app.call_from_thread(self.app.notify, f"wrote {len(files)} files to {out}", title="plots", timeout=10)

    def action_tags(self) -> None:
        self.app.annotate([self.run_id], "tags")

    def action_note(self) -> None:
        self.app.annotate([self.run_id], "note")

    def action_cancel(self) -> None:
        run = self.run
        if run is None or self.app.data.status(run) not in LIVE:
            self.app.notify("this run is not live; nothing to cancel", severity="warning")
            return
        self.app.confirm_cancel([run.id])


def _selected(rows: list[TopK], best_epoch: int | None) -> list[TopK]:
    """The rows of the selected epoch (else of the latest epoch with results)."""
    epochs = sorted({t.epoch for t in rows})
    epoch = best_epoch if best_epoch in epochs else epochs[-1]
    return [t for t in rows if t.epoch == epoch]


def _series(t: TopK, family: str) -> list[tuple[int, float]]:
    out = []
    for name, value in t.metrics.items():
        fam, k = name.rsplit("@", 1)
        if fam == family and value is not None:
            out.append((int(k), float(value)))
    return sorted(out)


def draw_topk_chart(plt, rows: list[TopK], best_epoch: int | None) -> None:
    """Recall@K against K (log scale): the sampled protocol's and the full ranking's."""
    plt.clear_figure()
    shown = _selected(rows, best_epoch)
    plt.title(f"Recall@K at epoch {shown[0].epoch}" if shown else "Recall@K")
    ks: set[int] = set()
    for n, t in enumerate(shown):
        family = "recall" if t.protocol == "sampled" else "full_recall"
        pts = _series(t, family)
        if pts:
            ks.update(k for k, _ in pts)
            label = f"{t.protocol} ({t.users} users)"
            plt.plot([k for k, _ in pts], [v for _, v in pts], label=label, marker="braille", color=PALETTE[n])
    if ks:
        plt.xscale("log")
        plt.xticks(sorted(ks), [str(k) for k in sorted(ks)])
    plt.xlabel("K")


def topk_text(rows: list[TopK]) -> Text:
    """Every stored top-N metric, one line per epoch, protocol and family."""
    out = Text()
    for t in rows:
        out.append(f"epoch {t.epoch} {t.protocol}: {t.users} users, seed {t.seed}, n_eval {t.n_eval}, "
                   f"{fmt(t.seconds, 1)} s\n", style="bold")
        families: list[str] = []
        for name in t.metrics:
            fam = name.rsplit("@", 1)[0]
            if fam not in families:
                families.append(fam)
        for fam in families:
            cells = "  ".join(f"@{k} {fmt(v)}" for k, v in _series(t, fam))
            out.append(f"  {fam:<12} {cells}\n")
    return out
