"""kni-workbench: progress with ETA in the Runs tab, tags and notes edited in the TUI, the config
diff of two marked runs, resources in the run detail, and the layout at 120x40 and 80x24."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from workbench.store.records import group_target, run_target

from tui_helpers import NOW, cell, make_app, mark_runs, seed_db, sync, until

pytestmark = pytest.mark.usefixtures("in_tmp_path")   # runs.db and recipes/ shown relative to it


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


PROGRESS = {"epoch": 3, "epochs": 5, "phase": "train", "done": 20, "total": 40, "rate": 4.0, "phase_left": 5.0,
            "epoch_left": 9.0, "run_left": 29.0, "epoch_mean": 10.0, "at": (NOW - timedelta(seconds=4)).isoformat()}
RESOURCES = {"peak_rss_mb": 812.0, "cpu_threads": 2, "gpu_name": "NVIDIA H100 80GB HBM3", "peak_gpu_mb": 2048.0}


def footer_text(app) -> str:
    return " ".join(str(k.description) for k in app.screen.query("FooterKey"))


def footer_visible(app) -> list[str]:
    """The footer keys drawn whole, left of the command palette's key."""
    palette = app.screen.query_one("FooterKey.-command-palette") if app.screen.query("FooterKey.-command-palette") \
        else None
    limit = palette.region.x if palette is not None else app.size.width
    return [str(k.description) for k in app.screen.query("FooterKey")
            if k is not palette and k.region.width and k.region.right <= limit]


@sync
async def test_runs_tab_shows_progress_with_eta_and_keys_at_120_and_80(tmp_path, sleeper):
    store = seed_db(Path("runs.db"), running_pid=sleeper.pid)
    assert store.record_progress(10, PROGRESS, RESOURCES)
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await pilot.pause(0.2)
        # epoch 3 of 5, (10 - 9 + 4) s of a 10 s epoch done, 29 - 4 s left at most
        assert cell(app, "#runs-table", 10, "epoch") == "3/5 50% ≤25s"
        assert cell(app, "#runs-table", 1, "epoch") == "5/5"
        await until(pilot, lambda: "Help" in footer_visible(app), 5, "the footer's layout")
        keys = footer_visible(app)
        for essential in ("Help", "Quit", "Open", "Mark", "Compare", "Diff", "Tags", "Note", "Cancel", "Delete",
                          "Resume"):
            assert essential in keys, keys
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await pilot.pause(0.2)
        table = app.query_one("#runs-table", DataTable)
        assert [c.label.plain.split(" ")[0] for c in table.columns.values()][:4] == ["id", "status", "recipe",
                                                                                       "dataset"]
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= 80 - 2
        assert cell(app, "#runs-table", 4, "dataset") == "synthetic-tiny"
        await until(pilot, lambda: "Help" in footer_visible(app), 5, "the footer's layout")
        assert footer_visible(app)[:2] == ["Help", "Quit"]
    store.close()


@sync
async def test_tags_and_notes_are_edited_in_the_tui(tmp_path):
    from workbench.tui.screens.annotate import AnnotateDialog

    store = seed_db(Path("runs.db"))
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        runs = app.query_one("#runs-pane")
        await mark_runs(app, pilot, (1, 2))
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, AnnotateDialog), 5, "the tags dialog")
        app.screen.query_one("#annotate-text", Input).value = "baseline, seeds-a"
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, AnnotateDialog), 5, "the dialog to close")
        await pilot.pause(0.2)
        assert store.get(1).tags == ("baseline", "seeds-a") and store.get(2).tags == ("baseline", "seeds-a")
        assert cell(app, "#runs-table", 1, "tags") == "baseline seeds-a"
        # the group of the highlighted run gets a note
        runs.marked.clear()
        runs.select_run(3)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, AnnotateDialog), 5, "the note dialog")
        await pilot.click("#scope-1")
        app.screen.query_one("#annotate-text", Input).value = "the paper's settings"
        await pilot.press("enter")
        await pilot.pause(0.2)
        h = store.get(3).config_hash
        assert store.group_notes() == {group_target(h): "the paper's settings"}
        # a bad tag is refused with the reason, nothing is written
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, AnnotateDialog), 5, "the tags dialog")
        app.screen.query_one("#annotate-text", Input).value = "x" * 70
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert store.tags().get(run_target(3)) is None
        # the filter finds runs by tag
        app.query_one("#runs-filter", Input).value = "seeds-a"
        await pilot.pause(0.2)
        assert runs.visible() and {r.id for r in runs.visible()} == {1, 2}
    store.close()


@sync
async def test_runs_with_different_notes_keep_them_unless_a_note_is_typed(tmp_path):
    from workbench.tui.screens.annotate import AnnotateDialog

    store = seed_db(Path("runs.db"))
    store.set_note(run_target(1), "alpha")
    store.set_note(run_target(2), "beta")
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await mark_runs(app, pilot, (1, 2))
        for typed in ("", "both"):
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, AnnotateDialog), 5, "the note dialog")
            text = app.screen.query_one("#annotate-text", Input)
            assert text.value == "" and "their notes differ" in text.placeholder
            text.value = typed
            await pilot.press("enter")
            await until(pilot, lambda: not isinstance(app.screen, AnnotateDialog), 5, "the dialog to close")
            await pilot.pause(0.1)
            if not typed:                       # saved as shown: nothing written
                assert (store.get(1).note, store.get(2).note) == ("alpha", "beta")
        assert (store.get(1).note, store.get(2).note) == ("both", "both")
    store.close()


@sync
async def test_config_diff_of_two_marked_runs(tmp_path):
    from workbench.tui.screens.annotate import DiffScreen

    store = seed_db(Path("runs.db"))
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        runs = app.query_one("#runs-pane")
        runs.select_run(1)
        await pilot.press("D")                             # nothing marked: says what to do
        assert not isinstance(app.screen, DiffScreen)
        await mark_runs(app, pilot, (1, 4))              # KNI seed 1 vs NI seed 1
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, DiffScreen), 5, "the diff")
        diff = app.screen.diff
        assert (diff.a, diff.b) == (1, 4)
        assert ("model.kg", True, False) in diff.differences
        assert ("name", "quickstart", "quickstart-ni") in diff.differences
        assert all(k != "model.hidden" for k, _, _ in diff.differences)
        assert "2 key(s) differ" in str(app.screen.query_one("#diff-summary").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, DiffScreen)
    store.close()


@sync
async def test_a_key_that_acts_on_no_marked_run_names_the_marked_runs(tmp_path):
    """Marked runs take the highlighted one's place: c with two completed runs marked says so,
    rather than "no live run here" over a highlighted run that may well be live."""
    store = seed_db(Path("runs.db"))
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        runs = app.query_one("#runs-pane")
        await mark_runs(app, pilot, (1, 4))
        runs.select_run(8)                                 # the crashed run, highlighted
        await pilot.press("c")
        said = [n.message for n in app._notifications]
        assert said[-1] == ("none of the marked runs (1 completed, 4 completed) is live; the keys act on the "
                            "marked runs while there are any (space unmarks one)")
        await pilot.press("R")
        assert [n.message for n in app._notifications][-1].startswith(
            "none of the marked runs (1 completed, 4 completed) is crashed, cancelled or failed;")
    store.close()


@sync
async def test_run_detail_shows_progress_resources_tags_and_no_stray_plot_column(tmp_path, sleeper):
    from textual_plotext import PlotextPlot

    store = seed_db(Path("runs.db"), running_pid=sleeper.pid)
    store.record_progress(10, PROGRESS, RESOURCES)
    store.add_tags([run_target(10)], ["long"])
    store.set_note(run_target(10), "watch the loss")
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        app.open_run(10)
        await pilot.pause(0.4)
        head = str(app.screen.query_one("#detail-head").render())
        assert "epoch 3/5: train 20/40 4.0/s, epoch left 5s, ETA ≤25s" in head
        assert "peak RSS 812 MiB, 2 CPU threads, GPU NVIDIA H100 80GB HBM3 (peak 2.0 GiB allocated by torch)" in head
        assert "long" in head and "watch the loss" in head
        await pilot.press("escape")
        app.open_run(3)
        await pilot.pause(0.4)
        for chart in ("auc", "logloss", "acc"):
            lines = str(app.screen.query_one(f"#chart-{chart}", PlotextPlot).render()).splitlines()
            top = next(ln for ln in lines if "┌" in ln)
            bottom = next(ln for ln in lines if "└" in ln)
            assert "┬" not in top and "┴" not in bottom, (chart, top, bottom)
            assert any("◆" in ln for ln in lines), chart          # the best epoch is marked on the curve
    store.close()


def test_the_help_names_every_key_of_the_runs_detail_and_compare_screens():
    from workbench.tui.keys import ESSENTIAL
    from workbench.tui.panes.compare import ComparePane
    from workbench.tui.panes.runs import RunsPane
    from workbench.tui.screens.detail import RunDetailScreen
    from workbench.tui.screens.dialogs import HELP

    shown = {"slash": "/", "space": "space", "right_square_bracket": "]", "left_square_bracket": "["}
    essential = {b.key for b in ESSENTIAL}
    for holder in (RunsPane, RunDetailScreen, ComparePane):
        for binding in holder.BINDINGS:
            key = binding.key.split(",")[0]
            if key in essential:
                continue
            assert f"`{shown.get(key, key)}`" in HELP, f"{holder.__name__}: key {key} ({binding.description})"


@sync
async def test_the_runs_filter_matches_words_and_escape_leaves_it(tmp_path):
    store = seed_db(Path("runs.db"))
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        runs = app.query_one("#runs-pane")
        await pilot.press("slash")
        for typed in "ni":
            await pilot.press(typed)
        await pilot.pause(0.2)
        assert {r.model for r in runs.visible()} == {"NI"}          # not every KNI run
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.focused is app.query_one("#runs-table")
        assert app.query_one("#runs-filter", Input).value == "ni" and app.is_running
        app.query_one("#runs-filter", Input).value = "quickstart-ni"
        await pilot.pause(0.2)
        assert {r.recipe for r in runs.visible()} == {"quickstart-ni"}
    store.close()


@sync
async def test_a_terminal_resized_under_a_runs_screen_restyles_the_main_screen(tmp_path):
    store = seed_db(Path("runs.db"))
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await pilot.press("3")
        await pilot.pause(0.2)
        narrow = app.query_one("#cmp-side").size.width
        await pilot.press("2", "enter")         # a run's screen over the main one
        await pilot.pause(0.3)
        await pilot.resize_terminal(120, 40)
        await pilot.pause(0.3)
        await pilot.press("escape", "3")
        await pilot.pause(0.3)
        assert app.query_one("#cmp-side").size.width > narrow      # the wide layout, not the 80-column one
    store.close()
