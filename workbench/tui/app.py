"""``kni-workbench``: the Textual workbench that starts runs, streams them live and compares them.

Layers (docs/design.md): the app reads the run database through the store (polled by a thread
worker, see :mod:`workbench.tui.data`) and starts runs through a background launcher process
(:mod:`workbench.services.background`); run rows are written by the run
processes, never by the app. Runs therefore survive the app closing or being killed, and a
reopened app shows them live again.

The one kind of row the app writes is the user's own annotations: tags and notes on runs and
groups (:meth:`WorkbenchApp.annotate`), through the Store's API and only when the user saves
them in the dialog. They are the user's edits, not a run's data, which stays the run
process's alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.lazy import Lazy
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from ..present import TERMINAL_COLOURS, seeds_text, status_style, visible
from ..recipe import RecipeError
from ..recipe.sweep import SweepError
from ..services.background import Launch, LaunchError, cancel_run, resume_runs, start_recipe
from ..store.errors import StoreError
from ..store.repository import Store
from ..store.statuses import LIVE, QUEUED, RUNNING
from .data import Change, RunData
from .screens.dialogs import (
    ConfirmDialog,
    ExportDialog,
    HelpScreen,
    QuitDialog,
    StartDialog,
    StartRequest,
)

#: Seconds between two polls of the database.
POLL_SECONDS = 0.5


def detect_gpus() -> list[tuple[str, str]]:
    """(device, description) of the CUDA devices a run could use, without importing torch
    (``nvidia-smi``; ``CUDA_VISIBLE_DEVICES`` restricts and renumbers them as CUDA does)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    found: dict[str, str] = {}
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit():
            found[parts[0]] = f"{parts[1]}" + (f", {parts[2]}" if len(parts) > 2 else "")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    order = list(found)
    if visible is not None:
        order = [v.strip() for v in visible.split(",") if v.strip() in found]
    return [(f"cuda:{n}", found[i]) for n, i in enumerate(order)]


class WorkbenchApp(App):
    """The workbench. ``clock`` (UTC "now") and ``gpus`` are injectable for tests."""

    TITLE = "kni-workbench"
    CSS_PATH = "workbench.tcss"
    BINDINGS = [
        # the tabs show 1 2 3; the footer keeps its room for the keys of the focused pane and help/quit
        Binding("1", "show_tab('recipes')", "Recipes", show=False),
        Binding("2", "show_tab('runs')", "Runs", show=False),
        Binding("3", "show_tab('compare')", "Compare", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, store: Store, recipes: Path, *, clock: Callable[[], datetime] | None = None,
                 gpus: list[tuple[str, str]] | None = None, poll: float = POLL_SECONDS):
        super().__init__()
        self.store = store
        self.recipes_dir = Path(recipes)
        self.data = RunData(store, clock)
        self.gpus = gpus
        self.poll_seconds = poll
        self.launches: list[Launch] = []
        self._listeners: list[Any] = []
        self._polling = False
        self._generation = 0
        self.data.poll_now(force_full=True)
        self.sub_title = _short(store.where)

    # -- layout -------------------------------------------------------------------------
    @property
    def main(self) -> Screen:
        """The screen with the tabs (queries on the app only see the screen on top)."""
        return self.screen_stack[0]

    def compose(self) -> ComposeResult:
        from .panes.compare import ComparePane
        from .panes.recipes import RecipesPane
        from .panes.runs import RunsPane
        yield Header(show_clock=False)
        with TabbedContent(initial="runs" if self.data.runs else "recipes", id="main-tabs"):
            with TabPane("Recipes [1]", id="recipes"):
                yield RecipesPane(self.recipes_dir, id="recipes-pane")
            with TabPane("Runs [2]", id="runs"):
                yield RunsPane(id="runs-pane")
            with TabPane("Compare [3]", id="compare"):
                # mounted after the first screen is drawn (NumPy, plots): a faster start-up; the
                # pane registers itself as a listener when it mounts
                yield Lazy(ComparePane(id="compare-pane"))
        yield Footer()

    def on_mount(self) -> None:
        from .panes.runs import RunsPane
        self.add_listener(self.main.query_one(RunsPane))
        self.set_interval(self.poll_seconds, self.poll)
        self.theme_changed_signal.subscribe(self, lambda theme: self.refresh_views())
        if self.gpus is None:
            self._detect_gpus()
        self._focus_tab(self.main.query_one("#main-tabs", TabbedContent).active)

    def on_resize(self, event) -> None:
        before = self.has_class("-narrow"), self.has_class("-short")
        self.set_class(event.size.width < 100, "-narrow")
        self.set_class(event.size.height < 30, "-short")
        if (self.has_class("-narrow"), self.has_class("-short")) != before:
            # Textual restyles the screens down to the first opaque one: the main screen under a
            # run's screen kept its narrow layout after the terminal grew
            for screen in self.screen_stack:
                screen.update_node_styles(animate=False)

    # -- listeners and polling ------------------------------------------------------------
    def add_listener(self, listener: Any) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: Any) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def poll(self, force_full: bool = False) -> None:
        """Start a poll in a worker thread unless one is under way."""
        self._reap()
        if self._polling:
            return
        self._polling = True
        self._poll_worker(self.data.request(force_full), self._generation)

    @work(thread=True, group="poll", exit_on_error=False)
    def _poll_worker(self, request, generation: int) -> None:
        try:
            result = self.data.fetch(request)
        except Exception as e:                 # noqa: BLE001 - shown, polling goes on
            result = None
            self.call_from_thread(self.notify, f"polling the database failed: {e}", severity="error")
        self.call_from_thread(self._apply, result, generation)

    def _apply(self, result, generation: int) -> None:
        self._polling = False
        if result is None or generation != self._generation:
            return                            # read before a synchronous refresh: stale
        change = self.data.apply(result)
        if change or change.error:
            self.broadcast(change)

    def broadcast(self, change: Change) -> None:
        for listener in list(self._listeners):
            try:
                listener.runs_changed(change)
            except Exception as e:             # noqa: BLE001 - one broken view must not stop the others
                self.log.error(f"{listener!r}: {e!r}")

    def refresh_now(self) -> None:
        """A synchronous full poll (after starting, cancelling or deleting runs)."""
        self._generation += 1
        change = self.data.poll_now(force_full=True)
        self.broadcast(change)

    def _reap(self) -> None:
        for launch in list(self.launches):
            if launch.poll() is not None:
                self.launches.remove(launch)

    @work(thread=True, group="gpus", exit_on_error=False)
    def _detect_gpus(self) -> None:
        gpus = detect_gpus()
        self.call_from_thread(setattr, self, "gpus", gpus)

    def notify(self, message: str, *args: Any, **kwargs: Any) -> None:
        """A notification; its text may quote stored text (an error, a name): controls made visible."""
        super().notify(visible(message), *args, **kwargs)

    # -- styling ----------------------------------------------------------------------------
    def status_style(self, status: str) -> str:
        """The Rich style of a run status (the CLI's look), in the theme's colours: readable light and dark."""
        v = self.theme_variables
        return status_style(status, {role: v.get(f"text-{role}", colour) for role, colour in TERMINAL_COLOURS.items()})

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def refresh_views(self) -> None:
        from .panes.recipes import RecipesPane
        from .panes.runs import RunsPane
        for pane in self.main.query(RunsPane):
            pane.rebuild()
        for pane in self.main.query(RecipesPane):
            pane.show(pane.current())
        self.call_after_refresh(self.broadcast, Change(runs=set(self.data.runs)))

    # -- navigation ---------------------------------------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        if self.screen.is_modal:                # a dialog or the help answers first
            return
        while len(self.screen_stack) > 1:       # leave a run detail
            self.pop_screen()
        tabs = self.main.query_one("#main-tabs", TabbedContent)
        tabs.active = tab
        self._focus_tab(tab)

    def _focus_tab(self, tab: str) -> None:
        """Focus the main widget of ``tab`` if it is (still) the shown one: focusing a widget
        of a hidden pane would make the TabbedContent switch back to that pane."""
        tabs = self.main.query_one("#main-tabs", TabbedContent)
        target = {"recipes": "#recipes-table", "runs": "#runs-table", "compare": "#cmp-list"}.get(tab)
        if target and tabs.active == tab and self.screen is tabs.screen:
            try:
                self.main.query_one(target).focus()
            except Exception:                  # noqa: BLE001
                pass

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.tabbed_content.id == "main-tabs":
            if event.pane.id == "compare":
                self.with_compare(lambda pane: (pane.shown(), self._focus_tab("compare")))
            else:
                self.call_after_refresh(self._focus_tab, event.pane.id)

    def with_compare(self, then: Callable[[Any], object]) -> None:
        """Call ``then(pane)`` with the Compare pane once it is mounted: it mounts lazily, just
        after the first screen, so a key pressed at once must wait for it."""
        from .panes.compare import ComparePane
        found = self.main.query(ComparePane)
        if found and found.first().is_mounted:
            then(found.first())
        else:
            self.call_after_refresh(self.with_compare, then)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def open_run(self, run_id: int) -> None:
        from .screens.detail import RunDetailScreen
        if run_id in self.data.runs:
            self.push_screen(RunDetailScreen(run_id))

    def compare_group(self, config_hash: str) -> None:
        self.action_show_tab("compare")
        self.with_compare(lambda pane: pane.show_groups([config_hash]))

    def compare_sweep(self, sweep_id: int) -> None:
        from .panes.compare import ComparePane
        self.action_show_tab("compare")
        self.main.query_one(ComparePane).show_sweep(sweep_id)

    def compare_runs(self, ids: list[int]) -> None:
        self.action_show_tab("compare")
        self.with_compare(lambda pane: pane.show_runs(ids))

    # -- starting runs ------------------------------------------------------------------------
    def device_options(self) -> list[tuple[str, str]]:
        gpus = self.gpus or []
        opts = [("auto (" + ("all GPUs" if gpus else "GPU if present, else CPU") + ")", "auto"), ("cpu", "cpu")]
        opts += [(f"{dev}  {name}"[:48], dev) for dev, name in gpus]
        return opts

    def start_recipe_dialog(self, entry) -> None:
        if entry.recipe is None:
            self.notify(f"{entry.path.name} does not validate: {entry.error}", severity="error", timeout=8)
            return
        rec = entry.recipe

        def started(request: StartRequest | None) -> None:
            if request is not None:
                what = "sweep " if rec.sweep is not None else ""
                self.notify(f"starting {what}{rec.name}: seeds {request.seeds} on {request.device}, {request.jobs} "
                            f"at a time...", timeout=4)
                self._start(entry.path, request)

        from ..runs.ray_executor import ray_available
        from .screens.dialogs import EXECUTOR_OPTIONS
        self.push_screen(StartDialog(rec.name, seeds_text(rec.seeds), rec.device, self.device_options(),
                                     recipe_text=None if entry.members else rec.text,       # a suite: each
                                     recipe_path=str(entry.path), executor=rec.executor,      # is checked at start
                                     executors=EXECUTOR_OPTIONS if ray_available() else None), started)

    @work(thread=True, group="launch", exit_on_error=False)
    def _start(self, path: Path, request: StartRequest) -> None:
        try:
            launch = start_recipe(self.store, path, seeds=request.seeds, device=request.device, jobs=request.jobs,
                                  overrides=list(request.overrides), executor=request.executor)
        except (RecipeError, StoreError, LaunchError, SweepError) as e:
            self.call_from_thread(self.notify, str(e), title="not started", severity="error", timeout=10)
            return
        except Exception as e:                 # noqa: BLE001 - reported, the app goes on
            self.call_from_thread(self.notify, f"{type(e).__name__}: {e}", title="not started", severity="error",
                                  timeout=10)
            return
        self.call_from_thread(self._started, launch)

    def _started(self, launch: Launch) -> None:
        from .panes.runs import RunsPane
        self.launches.append(launch)
        ids = launch.run_ids
        if launch.sweep_id is not None:
            self.notify(f"{launch.recipe.name}: sweep {launch.sweep_id}, {len(ids)} run(s) queued for seed(s) "
                        f"{seeds_text(launch.seeds)}, {launch.jobs} at a time (Compare > Sweep ranks its points)",
                        title="started", timeout=6)
        else:
            self.notify(f"{launch.recipe.name}: run(s) {', '.join(map(str, ids))} queued for seed(s) "
                        f"{seeds_text(launch.seeds)}, {launch.jobs} at a time", title="started", timeout=5)
        for warning in launch.recipe.warnings:
            self.notify(warning, severity="warning", timeout=8)
        self.refresh_now()
        self.action_show_tab("runs")
        self.main.query_one(RunsPane).select_run(ids[0])

    # -- cancelling and deleting ------------------------------------------------------------------
    def confirm_cancel(self, ids: list[int]) -> None:
        runs = [self.data.runs[i] for i in ids if i in self.data.runs]
        listing = ", ".join(f"{r.id} ({r.recipe} seed {r.seed}, {self.data.status(r)})" for r in runs)

        def answer(yes: bool | None) -> None:
            if yes:
                self._cancel(ids)

        self.push_screen(ConfirmDialog("Cancel runs?", f"Stop run(s) {listing}?\nA running run ends as "
                                       "cancelled and keeps its finished epochs.", yes="Cancel runs",
                                       no="Keep running"), answer)

    def confirm_resume(self, ids: list[int]) -> None:
        runs = [self.data.runs[i] for i in ids if i in self.data.runs]
        listing = ", ".join(f"{r.id} ({r.recipe} seed {r.seed}, {self.data.status(r)}, {r.n_epochs} epochs)"
                            for r in runs)

        def answer(yes: bool | None) -> None:
            if yes:
                self._resume(ids)

        self.push_screen(ConfirmDialog("Resume runs?", f"Continue run(s) {listing} after their last epoch, in "
                                       "their own rows (kni resume)?", yes="Resume", no="Leave them"), answer)

    @work(thread=True, group="launch", exit_on_error=False)
    def _resume(self, ids: list[int]) -> None:
        try:
            resumed = resume_runs(self.store, ids)
        except (LaunchError, StoreError) as e:
            self.call_from_thread(self.notify, str(e), title="not resumed", severity="error", timeout=10)
            return
        self.call_from_thread(self.notify, f"run(s) {', '.join(map(str, resumed))} resume after their last epoch",
                              title="resumed", timeout=5)
        self.call_from_thread(self.refresh_now)

    @work(thread=True, group="cancel", exit_on_error=False)
    def _cancel(self, ids: Iterable[int]) -> None:
        messages = []
        for i in self._queued_first(ids):
            try:
                messages.append(cancel_run(self.store, i))
            except StoreError as e:
                messages.append(str(e))
        self.call_from_thread(self.notify, "\n".join(messages), title="cancel", timeout=5)
        self.call_from_thread(self.refresh_now)

    def _queued_first(self, ids: Iterable[int]) -> list[int]:
        """Queued runs first, so a launcher does not start them after their elders stop."""
        ids = list(ids)
        return sorted(ids, key=lambda i: (self.data.runs[i].status != QUEUED if i in self.data.runs else True, i))

    def confirm_delete(self, ids: list[int]) -> None:
        runs = [self.data.runs[i] for i in ids if i in self.data.runs]
        listing = ", ".join(f"{r.id} ({r.recipe} seed {r.seed}, {r.status})" for r in runs)

        def answer(yes: bool | None) -> None:
            if yes:
                gone = [r for r in runs if r.status not in LIVE]
                try:
                    n = self.store.delete([r.id for r in gone])
                except StoreError as e:
                    self.notify(str(e), severity="error")
                    return
                from ..runs.checkpoints import OtherDatabasesCheckpoint, remove_saved
                for r in gone:                              # as kni rm: their saved models too
                    try:
                        remove_saved(self.store.url, r)
                    except (OSError, OtherDatabasesCheckpoint) as e:
                        self.notify(f"run {r.id}: checkpoint not removed ({e})", severity="warning")
                self.notify(f"deleted {n} run(s)", timeout=3)
                self.refresh_now()

        self.push_screen(ConfirmDialog("Delete runs?", f"Remove run(s) {listing} and their epochs from "
                                       f"{_short(self.store.where)}? This cannot be undone.", yes="Delete",
                                       no="Keep"), answer)

    # -- annotations (the user's own edits) and the config diff ------------------------------------
    def annotate(self, ids: list[int], kind: str) -> None:
        """Edit the tags or the note (``kind``) of runs ``ids`` or of their groups."""
        from ..store.records import group_target, run_target
        from .screens.annotate import AnnotateDialog, Scope
        runs = [self.data.runs[i] for i in ids if i in self.data.runs]
        if not runs:
            return
        hashes = list(dict.fromkeys(r.config_hash for r in runs))

        def common(values: list[list[str]]) -> str:
            return " ".join(t for t in values[0] if all(t in v for v in values[1:]))

        def notes(label: str, targets: tuple[str, ...], values: list) -> Scope:
            mixed = len({v or "" for v in values}) > 1
            return Scope(label, targets, "" if mixed else values[0] or "", mixed=mixed)

        members = {h: sum(1 for r in self.data.runs.values() if r.config_hash == h) for h in hashes}
        run_label = f"run {runs[0].id}" if len(runs) == 1 else f"runs {', '.join(str(r.id) for r in runs)}"
        group_label = (f"its group {hashes[0][:8]} ({members[hashes[0]]} run(s))" if len(hashes) == 1 else
                       f"their groups {', '.join(h[:8] for h in hashes)}")
        by_hash = {r.config_hash: r for r in runs}
        if kind == "tags":
            scopes = [Scope(run_label, tuple(run_target(r.id) for r in runs), common([list(r.tags) for r in runs])),
                      Scope(group_label, tuple(group_target(h) for h in hashes),
                            common([list(by_hash[h].group_tags) for h in hashes]))]
        else:
            scopes = [notes(run_label, tuple(run_target(r.id) for r in runs), [r.note for r in runs]),
                      notes(group_label, tuple(group_target(h) for h in hashes),
                            [by_hash[h].group_note for h in hashes])]

        def answer(result) -> None:
            if result is not None:
                self._save_annotation(kind, result)

        self.push_screen(AnnotateDialog(kind, scopes), answer)

    def _save_annotation(self, kind: str, result) -> None:
        from ..present import parse_tags
        targets = list(result.scope.targets)
        try:
            if kind == "tags":
                new, old = parse_tags(result.text), parse_tags(result.scope.value)
                added = self.store.add_tags(targets, [t for t in new if t not in old])
                removed = self.store.remove_tags(targets, [t for t in old if t not in new])
                message = f"tags of {result.scope.label}: {added} added, {removed} removed"
            elif result.text.strip() == result.scope.value.strip():     # also: differing notes left as they were
                self.notify(f"note of {result.scope.label} unchanged", timeout=4)
                return
            else:
                for target in targets:
                    self.store.set_note(target, result.text)
                message = f"note of {result.scope.label} {'saved' if result.text.strip() else 'cleared'}"
        except StoreError as e:
            self.notify(str(e), title="not saved", severity="error", timeout=8)
            return
        self.notify(message, timeout=4)
        self.refresh_now()

    def show_diff(self, a: int, b: int) -> None:
        from ..analysis.diff import config_diff
        from .screens.annotate import DiffScreen
        if a in self.data.runs and b in self.data.runs:
            self.push_screen(DiffScreen(config_diff(self.data.runs[a], self.data.runs[b])))

    # -- export -------------------------------------------------------------------------------------
    def export_dialog(self, pane, path: str | None = None, error: str = "") -> None:
        groups = len(pane.groups)

        def answer(request) -> None:
            if request is None:
                return
            try:
                n = pane.write_csv(request.path, request.per)
            except OSError as e:              # asked again, the typed name kept, the reason in the dialog
                self.export_dialog(pane, request.path, f"{request.path}: cannot write ({e.strerror or e})")
                return
            where = Path(request.path).expanduser().absolute()
            self.notify(f"wrote {n} {request.per} row(s) to {where}", title="exported", timeout=8)

        self.push_screen(ExportDialog(path or pane.default_export_path(),
                                      f"{groups} group(s), {len(pane.points)} run(s); the columns of kni export "
                                      f"(documented in docs/export.md).", error), answer)

    # -- quitting -------------------------------------------------------------------------------
    async def action_quit(self) -> None:
        live = self.data.live()
        if not live:
            self.exit()
            return
        running = sum(1 for r in live if r.status == RUNNING)
        queued = len(live) - running
        body = (f"{len(live)} run(s) are active ({running} running, {queued} queued). They are separate "
                f"processes: left running they keep training and recording to {_short(self.store.where)}, "
                f"and kni-workbench shows them live again when reopened.")

        def answer(choice: str | None) -> None:
            if choice == "leave":
                self.exit()
            elif choice == "cancel":
                self._cancel_all_and_exit([r.id for r in live])

        self.push_screen(QuitDialog(body), answer)

    def _cancel_all_and_exit(self, ids: list[int]) -> None:
        for launch in self.launches:           # their queues first: nothing new starts
            launch.terminate()
        for i in self._queued_first(ids):
            try:
                cancel_run(self.store, i)
            except StoreError:
                pass
        self.exit()

    # -- command palette ------------------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Recipes", "Show the recipes (1)", lambda: self.action_show_tab("recipes"))
        yield SystemCommand("Runs", "Show the live runs table (2)", lambda: self.action_show_tab("runs"))
        yield SystemCommand("Compare", "Show the comparison of groups (3)", lambda: self.action_show_tab("compare"))
        yield SystemCommand("Start recipe", "Start the highlighted recipe: seeds, device, parallel jobs (s)",
                            lambda: self._pane_action("recipes", "start"))
        yield SystemCommand("Rescan recipes", "Read the recipes folder again (r)",
                            lambda: self._pane_action("recipes", "rescan"))
        yield SystemCommand("Open run", "Plots, epochs, config and error of the highlighted run (enter)",
                            lambda: self._pane_action("runs", "open"))
        yield SystemCommand("Cancel runs", "Cancel the marked or highlighted live runs (c)",
                            lambda: self._pane_action("runs", "cancel"))
        yield SystemCommand("Delete runs", "Delete the marked or highlighted finished runs (d)",
                            lambda: self._pane_action("runs", "delete"))
        yield SystemCommand("Report", "Write the report (kni report: LaTeX table, figures, HTML page) of the "
                            "groups on the Compare tab", lambda: self._pane_action("compare", "report"))
        yield SystemCommand("Compare marked runs", "Compare the marked runs or the highlighted run's group (p)",
                            lambda: self._pane_action("runs", "compare"))
        yield SystemCommand("Filter runs", "Filter the runs table by text (/)",
                            lambda: self._pane_action("runs", "focus_filter"))
        yield SystemCommand("Tags", "Edit the tags of the marked or highlighted runs or their groups (t)",
                            lambda: self._pane_action("runs", "tags"))
        yield SystemCommand("Note", "Edit the note of the marked or highlighted runs or their groups (n)",
                            lambda: self._pane_action("runs", "note"))
        yield SystemCommand("Config diff", "The config keys that differ between two marked runs (D)",
                            lambda: self._pane_action("runs", "diff"))
        yield SystemCommand("Group runs by sweep", "One header row per sweep, its runs below (w)",
                            lambda: self._pane_action("runs", "toggle_sweeps"))
        yield SystemCommand("Export comparison to CSV", "The shown comparison, as kni export writes it (e)",
                            lambda: self._pane_action("compare", "export"))
        yield SystemCommand("Compare at: best / last / epoch N", "Cycle the epoch compared (b)",
                            lambda: self._pane_action("compare", "cycle_at"))
        yield SystemCommand("Compare metric", "Cycle the metric of curves, matrix and paired test (m)",
                            lambda: self._pane_action("compare", "cycle_metric"))
        yield SystemCommand("Toggle light / dark theme", "Switch between textual-light and textual-dark (ctrl+t)",
                            self.action_toggle_theme)
        yield SystemCommand("Help", "Keys and what the screens show (?)", self.action_help)

    def _pane_action(self, tab: str, action: str) -> None:
        self.action_show_tab(tab)
        if tab == "compare":
            self.with_compare(lambda pane: self.call_after_refresh(getattr(pane, f"action_{action}")))
            return
        pane = self.main.query_one(f"#{tab}-pane")
        self.call_after_refresh(getattr(pane, f"action_{action}"))


def _short(where: str) -> str:
    """A database location relative to the working directory when it lies below it."""
    try:
        return str(Path(where).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return where


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kni-workbench",
                                     description="Start KNI runs, watch them train live and compare them.")
    parser.add_argument("--db", default=os.environ.get("KNI_DB") or "runs.db",
                        help="run database: a SQLite file path or a SQLAlchemy URL (env KNI_DB; default runs.db)")
    parser.add_argument("--recipes", default="recipes", help="folder of YAML recipes (default recipes/)")
    parser.add_argument("--theme", default=None, help="textual-dark, textual-light or any Textual theme")
    args = parser.parse_args(argv)
    try:
        store = Store.open(args.db, create=True)
    except StoreError as e:
        try:                                   # e.g. a read-only folder: watch and compare at least
            store = Store.open(args.db, readonly=True)
        except StoreError:
            print(f"kni-workbench: {e}", file=sys.stderr)
            sys.exit(2)
    app = WorkbenchApp(store, Path(args.recipes))
    if store.readonly:
        app.sub_title += " (read-only: runs cannot be started, cancelled or deleted)"
    if args.theme:
        if args.theme not in app.available_themes:
            store.close()
            print(f"kni-workbench: --theme {args.theme}: expected one of {', '.join(sorted(app.available_themes))}",
                  file=sys.stderr)
            sys.exit(2)
        app.theme = args.theme
    try:
        app.run()
    finally:
        store.close()


if __name__ == "__main__":
    main()
