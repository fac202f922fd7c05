"""The Compare pane: groups side by side (n seeds, mean ± std), the dataset x configuration
matrix, overlaid mean curves with a ±std band, the paired test, a sweep's points ranked with
the keys they vary (``kni compare --sweep``), CSV export.

All statistics come from :mod:`workbench.analysis` (the code behind ``kni compare`` and
``kni export``), fed from the workbench's cache instead of a fresh query, so the screen
follows seeds that are still training. Groups are named by their group id (the first 8
characters of the config hash) in every view, as in ``kni runs`` and ``kni compare``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import (
    DataTable,
    Input,
    Label,
    Select,
    SelectionList,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.selection_list import Selection
from textual_plotext import PlotextPlot

from ... import analysis as cmp
from ...present import METRIC_LABELS, clip, fmt, pm, seeds_text
from ...recipe.sweep import params_text
from ...store.errors import StoreError
from ...store.records import Run
from ...store.statuses import COMPLETED, COUNTED, PRUNED, RUNNING
from ...views.matrix import matrix_view
from ..data import Change
from ..keys import ESSENTIAL
from ..plots import draw_curves, mean_curve

AT_CHOICES = [("best epoch", "best"), ("last epoch", "last"), ("epoch N", "epoch")]
TABS = ("cmp-groups-tab", "cmp-matrix-tab", "cmp-curves-tab", "cmp-paired-tab", "cmp-sweep-tab")


class ComparePane(Horizontal):
    BINDINGS = [
        *ESSENTIAL,
        Binding("e", "export", "Export CSV"),
        Binding("b", "cycle_at", "Epoch"),
        Binding("m", "cycle_metric", "Metric"),
        Binding("g", "cycle_group_by", "Group by"),
        Binding("a", "pick_all", "All"),
        Binding("n", "pick_none", "None"),
        Binding("x", "groups_mode", "Groups mode"),
        Binding("right_square_bracket", "next_tab", "Next view"),
        Binding("left_square_bracket", "prev_tab", "Prev view"),
    ]

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.picked_runs: list[int] | None = None
        self.checked: set[str] = set()
        self._options: list[tuple[str, Text]] = []
        self._watched: set[int] = set()
        self.groups: list[cmp.Group] = []
        self.points: list[cmp.RunPoint] = []
        self.at: str | int = "best"
        self._dirty = True
        self._rendered: set[str] = set()
        self._auto_picked = False
        self._pair_options: dict[str, list] = {}

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical(id="cmp-side"):
            yield Static("", id="cmp-source")
            yield Label("epoch (b)", classes="cmp-label")
            with Horizontal(id="cmp-at-row"):
                yield Select(AT_CHOICES, value="best", allow_blank=False, id="cmp-at", compact=True)
                yield Input("1", id="cmp-epoch", type="integer", compact=True, classes="hidden")
            yield Label("metric (m)", classes="cmp-label")
            yield Select([(v, k) for k, v in METRIC_LABELS.items()], value="test_auc", allow_blank=False,
                         id="cmp-metric", compact=True)
            yield Label("group by (g)", classes="cmp-label")
            yield Select([(g, g) for g in cmp.GROUP_BY], value="config", allow_blank=False, id="cmp-by",
                         compact=True)
            yield Label("groups (space picks)", classes="cmp-label")
            yield SelectionList[str](id="cmp-list")
        with TabbedContent(id="cmp-tabs"):
            with TabPane("Groups", id="cmp-groups-tab"):
                with Vertical():
                    yield DataTable(id="cmp-table", cursor_type="row", zebra_stripes=True)
                    yield Static("", id="cmp-notes", classes="pane-footer")
            with TabPane("Matrix", id="cmp-matrix-tab"):
                with Vertical():
                    yield DataTable(id="cmp-matrix", cursor_type="row", zebra_stripes=True)
                    yield Static("", id="cmp-matrix-notes", classes="pane-footer")
            with TabPane("Curves", id="cmp-curves-tab"):
                yield PlotextPlot(id="cmp-curves")
            with TabPane("Paired test", id="cmp-paired-tab"):
                with Vertical():
                    with Horizontal(id="cmp-paired-pick"):
                        yield Label("A", classes="cmp-label")
                        yield Select([], id="cmp-a", compact=True, prompt="group A")
                        yield Label("B", classes="cmp-label")
                        yield Select([], id="cmp-b", compact=True, prompt="group B")
                    with VerticalScroll():
                        yield Static("", id="cmp-paired")
            with TabPane("Sweep", id="cmp-sweep-tab"):
                with Vertical():
                    with Horizontal(id="cmp-sweep-pick"):
                        yield Select([], id="cmp-sweep", compact=True, prompt="no sweep yet")
                    yield DataTable(id="cmp-sweep-table", cursor_type="row", zebra_stripes=True)
                    yield Static("", id="cmp-sweep-notes", classes="pane-footer")

    def on_mount(self) -> None:
        self.app.add_listener(self)            # mounted lazily, after the app's on_mount
        self.refresh_list()
        self.recompute()

    # -- selection ----------------------------------------------------------------------------
    @property
    def data(self):
        return self.app.data

    def group_options(self) -> list[tuple[str, Text]]:
        """(config hash, label) of every configuration with counted runs, newest first: what
        tells two groups apart first (recipe, sweep point, model, dataset), so that a narrow
        panel cuts the id and seed count rather than those."""
        groups: dict[str, list[Run]] = {}
        for r in self.data.runs.values():
            groups.setdefault(r.config_hash, []).append(r)
        out = []
        for key, runs in sorted(groups.items(), key=lambda kv: -max(r.id for r in kv[1])):
            counted = [r for r in runs if self.data.status(r) in COUNTED]
            seeds = sorted({r.seed for r in counted})
            live = any(self.data.status(r) == RUNNING for r in runs)
            first = runs[0]
            point = f" s{first.sweep_id}.p{first.sweep_point}" if first.sweep_id is not None else ""
            label = Text(f"{'● ' if live else ''}{first.recipe}{point} ")
            label.append(f"{first.model} {first.dataset}", style="bold")
            label.append(f" n={len(seeds)} {cmp.group_id(key)}", style="dim")
            out.append((key, label))
        return out

    def refresh_list(self) -> None:
        options = self.group_options()
        if options == self._options:
            return
        self._options = options
        lst = self.query_one("#cmp-list", SelectionList)
        highlighted = lst.highlighted
        lst.clear_options()
        lst.add_options([Selection(label, key, key in self.checked) for key, label in options])
        if highlighted is not None and options:
            lst.highlighted = min(highlighted, len(options) - 1)

    def selected_runs(self) -> list[Run]:
        if self.picked_runs is not None:
            return [self.data.runs[i] for i in self.picked_runs if i in self.data.runs]
        return sorted((r for r in self.data.runs.values()
                       if r.config_hash in self.checked and self.data.status(r) in COUNTED), key=lambda r: r.id)

    def show_groups(self, keys: list[str]) -> None:
        """Pick exactly these configuration groups."""
        self._auto_picked = True
        self.picked_runs = None
        self.checked = set(keys)
        self._options = []
        self.refresh_list()
        self.recompute()

    def show_runs(self, ids: list[int]) -> None:
        self._auto_picked = True
        self.picked_runs = list(ids)
        self.recompute()

    # -- computing --------------------------------------------------------------------------
    def _at(self) -> str | int:
        value = self.query_one("#cmp-at", Select).value
        if value == "epoch":
            text = self.query_one("#cmp-epoch", Input).value.strip()
            return int(text) if text.isdigit() and int(text) >= 1 else 1
        return str(value)

    @property
    def metric(self) -> str:
        return str(self.query_one("#cmp-metric", Select).value)

    @property
    def by(self) -> str:
        return str(self.query_one("#cmp-by", Select).value)

    def recompute(self) -> None:
        runs = self.selected_runs()
        ids = {r.id for r in runs}
        if ids != self._watched:
            self.data.unwatch(self._watched - ids)
            self.data.watch(ids - self._watched)
            self._watched = ids
        self.at = self._at()
        self.points = [cmp.RunPoint(r, list(self.data.epochs.get(r.id, [])),
                                    cmp.choose_epoch(r, self.data.epochs.get(r.id, []), self.at)) for r in runs]
        self.groups = cmp.group_points(self.points, self.by) if self.points else []
        self._dirty = False
        self._source()
        self._paired_choices()
        self._rendered: set[str] = set()
        self.render_view()

    def render_view(self) -> None:
        """Draw the shown view (the others are drawn when they are shown)."""
        tab = self.query_one("#cmp-tabs", TabbedContent).active or TABS[0]
        if tab in self._rendered:
            return
        self._rendered.add(tab)
        {"cmp-groups-tab": self._table, "cmp-matrix-tab": self._matrix, "cmp-curves-tab": self._curves,
         "cmp-paired-tab": self._paired, "cmp-sweep-tab": self._sweep}[tab]()

    def shown(self) -> None:
        """The Compare tab was brought to the front: catch up on changes made while hidden."""
        self.refresh_list()
        if not self._auto_picked and not self.checked and self.picked_runs is None and self._options:
            self._auto_picked = True             # first visit: the newest configuration
            self.show_groups([self._options[0][0]])
            return
        if self._dirty:
            self.recompute()

    def _source(self) -> None:
        t = Text()
        if self.picked_runs is not None:
            ids = self.picked_runs
            shown = ", ".join(map(str, ids[:8])) + ("..." if len(ids) > 8 else "")
            t.append(f"{len(ids)} picked run(s): {shown}\n", style="bold")
            t.append("x: back to groups", style="dim")
        else:
            t.append(f"{len(self.checked)} group(s), {len(self.points)} run(s)", style="bold")
            t.append("\ncompleted, running, pruned runs", style="dim")
        self.query_one("#cmp-source", Static).update(t)

    def _at_text(self) -> str:
        if self.at == "best":
            splits = sorted({p.run.select_on for p in self.points}) or ["valid"]
            return f"the best {'/'.join(splits)} epoch"
        return "the last epoch" if self.at == "last" else f"epoch {self.at}"

    def _table(self) -> None:
        """Groups side by side: one column per group, one row per property or metric."""
        table = self.query_one("#cmp-table", DataTable)
        table.clear(columns=True)
        metric = self.metric if self.metric in METRIC_LABELS else "test_auc"
        metrics = [metric] + [m for m in METRIC_LABELS if m != metric]
        table.add_column("", key="what")
        for g in self.groups:
            table.add_column(Text(g.label, justify="right"), key=g.key)
        if not self.groups:
            self._table_notes()
            return
        best = _best_mean(self.groups, metric)

        def row(key: str, label: str, values: list, bold: bool = False) -> None:
            table.add_row(Text(label, style="bold" if bold else "dim"),
                          *[v if isinstance(v, Text) else Text(str(v), justify="right") for v in values], key=key)

        row("dataset", "dataset", [g.distinct("dataset") for g in self.groups])
        row("model", "model", [g.distinct("model") for g in self.groups])
        pooled = any(g.pooled for g in self.groups)
        row("n", "n runs" if pooled else "n seeds", [g.n for g in self.groups], bold=True)
        row("seeds", "seeds", [clip(seeds_text(g.seeds), 24) for g in self.groups])
        for m in metrics:
            cells = []
            for g in self.groups:
                mean, std = g.stat(m)
                win = m == metric and best is not None and mean == best and len(self.groups) > 1
                cells.append(Text(pm(mean, std, sep="±"), justify="right",
                                  style=("bold " + self.app.status_style(COMPLETED)) if win else ""))
            row(m, METRIC_LABELS[m], cells, bold=m == metric)
            if m == metric and m in cmp.FLOOR_METRICS:
                row("vs-pop", "vs pop", [self._vs_pop(g, m) for g in self.groups])
        row("epoch", "epoch", [pm(*g.epoch_stat(), 1, sep="±") for g in self.groups])
        row("seconds", "s / epoch", [fmt(g.seconds()[2], 2) for g in self.groups])
        if self.by == "config" and any(g.differs for g in self.groups):
            row("differs", "differs", [clip(g.differs, 28) for g in self.groups])
        self._table_notes()

    def _vs_pop(self, group, metric: str) -> Text:
        """The group's difference from its split's popularity floor (as stored by its runs)."""
        try:
            floors = cmp.floors_for(self.data.store, [m.run for m in group.members], compute=False)
        except StoreError:
            floors = {}
        diff = cmp.vs_floor(group.stat(metric)[0], cmp.group_floor(group, floors), metric)
        if diff is None:
            return Text("-", justify="right")
        below = cmp.below_floor(diff, metric)
        return Text(("▼" if below else "") + f"{diff:+.4f}", justify="right",
                    style=self.app.status_style("failed") if below else "")

    def _table_notes(self) -> None:
        notes = Text()
        notes.append(f"mean±std (sample std over seeds) at {self._at_text()}", style="dim")
        if self.by == "config":
            notes.append("; groups by id (config hash, as kni compare)", style="dim")
        missing = sum(len(g.without_point) for g in self.groups)
        if missing:
            notes.append(f"; {missing} run(s) without that epoch left out", style="dim")
        if any(m.run.status == RUNNING for g in self.groups for m in g.members):
            notes.append("; runs still training count with their best epoch so far", style="dim")
        unfinished = [f"{m.run.id} ({m.run.status})" for g in self.groups for m in g.members
                      if m.run.status not in (COMPLETED, PRUNED, RUNNING)]
        if unfinished:                        # picked runs may be crashed or cancelled ones
            notes.append(f"\nrun(s) {', '.join(unfinished[:6])}{' ...' if len(unfinished) > 6 else ''} did not "
                         "complete: they count with their best epoch before they stopped",
                         style=self.app.status_style("failed"))
        for g in self.groups:                 # one mean over two datasets: said before anything else
            if g.data_note():
                notes.append(f"\n{g.id} {g.data_note()}", style=self.app.status_style("failed"))
        pooled = [g.id for g in self.groups if g.pooled]
        if pooled:                            # group by model / dataset / recipe: not a seed spread
            notes.append(f"\n{', '.join(pooled[:4])}{' ...' if len(pooled) > 4 else ''}: several configurations "
                         f"pooled (group by {self.by}), so n counts runs, not seeds, and the std holds their "
                         "differences as well as the seeds' (g: group by config keeps them apart)",
                         style=self.app.status_style("failed"))
        seed_notes = [f"{g.id} {line}" if len(self.groups) > 1 else line
                      for g in self.groups for line in g.seed_notes()]
        pending = [n for n in seed_notes if "superseded" not in n]
        superseded = len(seed_notes) - len(pending)
        for line in pending[:2]:
            notes.append(f"\n{line}")
        if len(pending) > 2:
            notes.append(f"\n+{len(pending) - 2} more re-run(s) not counted yet", style="dim")
        if superseded:
            notes.append(f"; {superseded} older run(s) of a repeated seed superseded", style="dim")
        if not self.points:
            notes = Text("pick configuration groups on the left (space), or mark runs in Runs and press p",
                         style="dim")
        self.query_one("#cmp-notes", Static).update(notes)

    def _matrix(self) -> None:
        table = self.query_one("#cmp-matrix", DataTable)
        table.clear(columns=True)
        notes = self.query_one("#cmp-matrix-notes", Static)
        if not self.points:
            notes.update("")
            return
        by = self.by if self.by != "dataset" else "config"
        try:
            mat = cmp.matrix(self.points, by, self.metric)
        except cmp.CompareError as e:
            notes.update(Text(str(e), style="dim"))
            return
        try:
            floors = cmp.floors_for(self.data.store, [p.run for p in self.points], compute=False)
        except StoreError:
            floors = {}
        view = matrix_view(mat, floors)
        keys = ["dataset", *(["floor"] if len(view.columns) > len(mat.cols) + 1 else []), *mat.cols]
        for key, name in zip(keys, view.columns):
            table.add_column(name[:40], key=key)
        bad = self.app.status_style("failed")
        for ds, cells in view.rows:
            table.add_row(ds, *[Text(c.text, justify="right", style=bad if c.below_floor else "") for c in cells],
                          key=ds)
        text = f"{METRIC_LABELS[self.metric]}: mean ± std (n) at {self._at_text()}; columns by " \
               f"{'the settings without the dataset' if by == 'config' else by}"
        notes.update(Text("; ".join([text, *view.captions]), style="dim"))

    def _curves(self) -> None:
        plot = self.query_one("#cmp-curves", PlotextPlot)
        curves = []
        for g in self.groups:
            runs_epochs = [m.epochs for m in g.members + g.without_point]
            curves.append(mean_curve(g.label, runs_epochs, self.metric))
        w, h = plot.size.width or 80, plot.size.height or 20
        draw_curves(plot.plt, curves, METRIC_LABELS[self.metric], w, h)
        plot.refresh()

    def _paired_choices(self, changed: str | None = None) -> None:
        """Offer the groups as A and B; A and B are always two different groups (when two exist).

        A keeps its choice when it can, B then takes its own or the first other group; after the
        user picks in one (``changed``), the other one moves if it now names the same group."""
        options = [(f"{g.label}"[:40], g.key) for g in self.groups]
        keys = [k for _, k in options]
        selects = {sid: self.query_one(sid, Select) for sid in ("#cmp-a", "#cmp-b")}
        current = {sid: sel.value if sel.value in keys else None for sid, sel in selects.items()}
        first, second = ("#cmp-b", "#cmp-a") if changed == "#cmp-b" else ("#cmp-a", "#cmp-b")
        wanted = {first: current[first] if current[first] is not None else (keys[0] if keys else None)}
        others = [k for k in keys if k != wanted[first]]
        wanted[second] = current[second] if current[second] in others else (others[0] if others else None)
        for sid, select in selects.items():
            if self._pair_options.get(sid) != options:
                self._pair_options[sid] = options
                with select.prevent(Select.Changed):
                    select.set_options(options)
            if wanted[sid] is not None and select.value != wanted[sid]:
                with select.prevent(Select.Changed):
                    select.value = wanted[sid]

    def _paired(self) -> None:
        view = self.query_one("#cmp-paired", Static)
        if len(self.groups) < 2:
            view.update(Text("pick two groups (or runs of two configurations) for the paired test", style="dim"))
            return
        a_key = self.query_one("#cmp-a", Select).value
        b_key = self.query_one("#cmp-b", Select).value
        by_key = {g.key: g for g in self.groups}
        if a_key not in by_key or b_key not in by_key:
            view.update(Text("choose groups A and B", style="dim"))
            return
        try:
            r = cmp.paired_test(by_key[a_key], by_key[b_key], self.metric)
        except cmp.CompareError as e:
            view.update(Text(str(e).replace("--paired: ", ""), style=self.app.status_style("failed")))
            return
        view.update(self._paired_table(r))

    def _paired_table(self, r: cmp.PairedResult) -> Table:
        table = Table(title=f"paired {METRIC_LABELS[r.metric]} at {self._at_text()}: A - B over "
                            f"{len(r.seeds)} shared seed(s)", title_justify="left", show_header=False,
                      box=None, padding=(0, 1))
        table.add_column("what", style="bold", no_wrap=True)
        table.add_column("value")
        table.add_row("A", r.a.label + (f" [{r.a_differs}]" if r.a_differs else ""))
        table.add_row("B", r.b.label + (f" [{r.b_differs}]" if r.b_differs else ""))
        table.add_row("shared seeds", ", ".join(map(str, r.seeds)))
        table.add_row("mean A / B", f"{fmt(r.mean_a)} / {fmt(r.mean_b)}")
        table.add_row("difference", f"{r.diff:+.4f} (std of the differences {fmt(r.diff_std)})")
        table.add_row("bootstrap 95% CI", f"[{r.ci[0]:+.4f}, {r.ci[1]:+.4f}] ({cmp.BOOTSTRAP_RESAMPLES:,} resamples)")
        kind = f"exact, {2 ** len(r.seeds):,} sign patterns" if r.exact else f"Monte Carlo, {cmp.MC_PATTERNS:,}"
        table.add_row("sign-flip p", f"{r.p_value:.4g} ({kind}, two-sided; smallest reachable {r.min_p:.4g})")
        table.add_row("seed noise", r.noise_text())
        style = {"significant": self.app.status_style(COMPLETED),
                 "too few seeds": self.app.status_style("cancelled"),
                 "inconclusive": self.app.status_style("cancelled")}.get(r.verdict, "")
        table.add_row("verdict", Text(r.verdict_text(), style=style))
        return table

    # -- sweeps ---------------------------------------------------------------------------
    def sweep_options(self) -> list[tuple[str, int]]:
        """(label, sweep id) of every sweep with runs, newest first."""
        ids = sorted({r.sweep_id for r in self.data.runs.values() if r.sweep_id is not None}, reverse=True)
        out = []
        for i in ids:
            sweep = self.data.sweeps.get(i)
            name = sweep.name if sweep is not None else next(r.recipe for r in self.data.runs.values()
                                                              if r.sweep_id == i)
            out.append((f"sweep {i}: {name}" + (f" ({sweep.method})" if sweep is not None else ""), i))
        return out

    def show_sweep(self, sweep_id: int) -> None:
        """Show sweep ``sweep_id``'s points ranked (the Sweep view)."""
        self._sweep_choices(prefer=sweep_id)
        self.query_one("#cmp-tabs", TabbedContent).active = "cmp-sweep-tab"
        self._rendered.discard("cmp-sweep-tab")
        self.call_after_refresh(self.render_view)

    def _sweep_choices(self, prefer: int | None = None) -> int | None:
        select = self.query_one("#cmp-sweep", Select)
        options = self.sweep_options()
        if self._pair_options.get("#cmp-sweep") != options:
            self._pair_options["#cmp-sweep"] = options
            with select.prevent(Select.Changed):
                select.set_options(options)
        values = [v for _, v in options]
        wanted = prefer if prefer in values else (select.value if select.value in values else
                                                  (values[0] if values else None))
        if wanted is not None and select.value != wanted:
            with select.prevent(Select.Changed):
                select.value = wanted
        return wanted

    def sweep_ranking(self, sweep_id: int) -> tuple[list[cmp.SweepPoint], list[str], list[cmp.KeyEffect]]:
        """The ranked points of a sweep from the cached rows (valid AUC at each run's selected
        epoch, as kni compare --sweep) and the key effects."""
        runs = [r for r in self.data.runs.values() if r.sweep_id == sweep_id]
        pts = [cmp.RunPoint(r, [], cmp.stored_best(r)) for r in runs if self.data.status(r) in COUNTED]
        ranked = cmp.sweep_points(runs, pts, "valid_auc")
        keys = list(dict.fromkeys(k for p in ranked for k in p.params))
        return ranked, keys, cmp.key_effects(ranked, keys, "valid_auc")

    def _sweep(self) -> None:
        table = self.query_one("#cmp-sweep-table", DataTable)
        notes = self.query_one("#cmp-sweep-notes", Static)
        table.clear(columns=True)
        sweep_id = self._sweep_choices()
        if sweep_id is None:
            notes.update(Text("no sweep yet: start a recipe with a sweep: section (Recipes), or kni run one",
                              style="dim"))
            return
        ranked, keys, effects = self.sweep_ranking(sweep_id)
        for key, label in (("rank", "#"), ("point", "point"), ("group", "group")):
            table.add_column(label, key=key)
        for k in keys:
            table.add_column(k, key=f"key:{k}")
        for key, label in (("n", "n"), ("runs", "runs"), ("valid", "valid AUC"), ("test", "test AUC"),
                           ("epoch", "epoch")):
            table.add_column(label, key=key)
        for rank, p in enumerate(ranked, start=1):
            runs = Text()
            for status, count in sorted(p.statuses.items()):
                runs.append(f"{count} {status} ", style=self.app.status_style(status))
            epoch = pm(*p.group.epoch_stat(), 1, sep="±") if p.group else "-"
            win = rank == 1 and p.n > 0 and len(ranked) > 1
            table.add_row(Text(str(rank), justify="right"), Text(str(p.number), justify="right"), p.id,
                          *[params_text({k: p.params[k]})[len(k) + 1:] if k in p.params else "-" for k in keys],
                          Text(str(p.n), justify="right"), runs,
                          Text(pm(*p.stat("valid_auc"), sep="±"), justify="right",
                               style=("bold " + self.app.status_style(COMPLETED)) if win else "bold"),
                          Text(pm(*p.stat("test_auc"), sep="±"), justify="right"), Text(epoch, justify="right"),
                          key=p.config_hash or f"point:{p.number}")
        text = Text("points ranked by valid AUC (the selection metric), mean±std over seeds at each run's "
                    "selected epoch; a pruned run counts at its best epoch; enter compares a point's seeds",
                    style="dim")
        shown = [e for e in effects if e.levels][:3]
        if shown:
            text.append("\nwhich keys matter (spread of the mean per value): ", style="dim")
            text.append("; ".join(f"{e.key} {fmt(e.spread)} (" + ", ".join(f"{v}: {fmt(m)}" for v, m, _ in e.levels[:4])
                                  + ")" for e in shown))
        notes.update(text)

    @on(Select.Changed, "#cmp-sweep")
    def _sweep_picked(self) -> None:
        self._rendered.discard("cmp-sweep-tab")
        self.render_view()

    @on(DataTable.RowSelected, "#cmp-sweep-table")
    def _sweep_point_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value
        if key and not key.startswith("point:"):
            self.show_groups([key])
            self.query_one("#cmp-tabs", TabbedContent).active = "cmp-groups-tab"

    # -- live -----------------------------------------------------------------------------
    def runs_changed(self, change: Change) -> None:
        if change.runs and self.query_one("#cmp-tabs", TabbedContent).active == "cmp-sweep-tab":
            self._rendered.discard("cmp-sweep-tab")
            if self.screen.query_one("#main-tabs", TabbedContent).active == "compare":
                self.render_view()
        ids = {r.id for r in self.selected_runs()}
        if not (ids != self._watched or change.touches(ids) or (self.picked_runs is None and change.runs)):
            return
        if self.screen.query_one("#main-tabs", TabbedContent).active != "compare":
            self._dirty = True                   # drawn when shown
            return
        self.refresh_list()
        self.recompute()

    def on_resize(self) -> None:
        if self.is_mounted and self.query_one("#cmp-tabs", TabbedContent).active == "cmp-curves-tab":
            self.call_after_refresh(self._curves)

    # -- export ---------------------------------------------------------------------------
    def export_rows(self, per: str) -> tuple[list[dict], tuple[str, ...]]:
        """What ``kni export`` writes for the same selection: its points read again from the store
        (the screen's carry no top-N or stratum values), floors computed when absent, as there."""
        runs = [p.run for p in self.points]
        pts = cmp.points(self.data.store, self.data.store.runs(ids=[r.id for r in runs]), self.at) if runs else []
        if per == "run":
            return cmp.export_table(pts, self.at)
        try:
            floors = cmp.floors_for(self.data.store, runs)
        except StoreError:
            floors = {}
        return cmp.export_table(pts, self.at, cmp.group_points(pts, self.by), floors)

    def default_export_path(self) -> str:
        recipes = sorted({p.run.recipe for p in self.points})
        stem = recipes[0] if len(recipes) == 1 else "runs"
        return f"compare-{stem}.csv"

    def write_csv(self, path: str, per: str) -> int:
        rows, columns = self.export_rows(per)
        target = Path(path).expanduser()
        target.write_text(cmp.csv_text(rows, columns), encoding="utf-8")
        return len(rows)

    # -- actions --------------------------------------------------------------------------
    def action_report(self) -> None:
        """The report (kni report) of the groups on screen, into report-<time> in the working folder."""
        if not self.points:
            self.app.notify("nothing to report: pick groups or runs first", severity="warning")
            return
        self.app.notify("writing the report...", timeout=3)
        self._write_report([p.run.id for p in self.points], self.at)

    @work(thread=True, group="report", exit_on_error=False)
    def _write_report(self, ids: list[int], at: str | int) -> None:
        from datetime import datetime, timezone

        from kni_core.errors import KniError

        from ...report import write_report
        store = self.data.store
        out = Path(f"report-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}").absolute()
        try:
            pts = cmp.points(store, store.runs(ids=ids), at)
            write_report(store, pts, out, metrics=["test_auc", "test_acc"], at=at,
                         command=f"kni-workbench Compare > Report (kni report {' '.join(map(str, ids))} --at {at})")
        except KniError as e:
            self.app.call_from_thread(self.app.notify, str(e), title="no report", severity="error", timeout=10)
            return
        self.app.call_from_thread(self.app.notify, f"wrote {out / 'index.html'}", title="report", timeout=10)

    def action_export(self) -> None:
        if not self.points:
            self.app.notify("nothing to export: pick groups or runs first", severity="warning")
            return
        self.app.export_dialog(self)

    def action_cycle_at(self) -> None:
        select = self.query_one("#cmp-at", Select)
        values = [v for _, v in AT_CHOICES]
        select.value = values[(values.index(select.value) + 1) % len(values)]

    def action_cycle_metric(self) -> None:
        select = self.query_one("#cmp-metric", Select)
        values = list(METRIC_LABELS)
        select.value = values[(values.index(select.value) + 1) % len(values)]

    def action_cycle_group_by(self) -> None:
        select = self.query_one("#cmp-by", Select)
        values = list(cmp.GROUP_BY)
        select.value = values[(values.index(select.value) + 1) % len(values)]

    def action_pick_all(self) -> None:
        self.show_groups([k for k, _ in self._options])

    def action_pick_none(self) -> None:
        self.show_groups([])

    def action_groups_mode(self) -> None:
        if self.picked_runs is not None:
            self.picked_runs = None
            self.recompute()

    def action_next_tab(self, step: int = 1) -> None:
        tabs = self.query_one("#cmp-tabs", TabbedContent)
        i = TABS.index(tabs.active) if tabs.active in TABS else 0
        tabs.active = TABS[(i + step) % len(TABS)]

    def action_prev_tab(self) -> None:
        self.action_next_tab(-1)

    # -- events ---------------------------------------------------------------------------
    @on(SelectionList.SelectedChanged, "#cmp-list")
    def _picked(self, event: SelectionList.SelectedChanged) -> None:
        selected = set(event.selection_list.selected)
        if selected == self.checked and self.picked_runs is None:
            return
        self.checked = selected
        self.picked_runs = None
        self.recompute()

    @on(Select.Changed, "#cmp-at")
    def _at_changed(self, event: Select.Changed) -> None:
        self.query_one("#cmp-epoch", Input).set_class(event.value != "epoch", "hidden")
        self.recompute()

    @on(Input.Changed, "#cmp-epoch")
    @on(Select.Changed, "#cmp-metric")
    @on(Select.Changed, "#cmp-by")
    def _controls(self) -> None:
        self.recompute()

    @on(Select.Changed, "#cmp-a")
    @on(Select.Changed, "#cmp-b")
    def _pair_changed(self, event: Select.Changed) -> None:
        self._paired_choices(changed=f"#{event.select.id}")
        self._rendered.discard("cmp-paired-tab")
        self.render_view()

    @on(TabbedContent.TabActivated, "#cmp-tabs")
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        event.stop()
        self.call_after_refresh(self.render_view)


def _best_mean(groups: list[cmp.Group], metric: str) -> float | None:
    best = None
    for g in groups:
        mean = g.stat(metric)[0]
        if math.isfinite(mean):
            if best is None:
                best = mean
            else:
                best = min(best, mean) if cmp.lower_is_better(metric) else max(best, mean)
    return best
