"""kni-workbench (workbench/tui): functional tests with Textual's pilot and snapshot tests.

Functional tests start real runs (child processes, the tiny synthetic preset) from the
recipes screen and watch them arrive; the others use a database seeded with fixed rows and
fixed timestamps (and a fixed clock for the app), so the snapshots are deterministic.
Update the snapshots with ``pytest tests/test_tui.py --snapshot-update`` and look at them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from workbench.present import seeds_text
from workbench.store.liveness import this_host
from workbench.store.repository import Store
from workbench.store.schema import EpochRow as Epoch  # rows written as a run process writes them
from workbench.store.statuses import CANCELLED, COMPLETED, CRASHED, FAILED, RUNNING
from workbench.tui.app import WorkbenchApp
from workbench.tui.data import RunData

from tui_helpers import (
    BROKEN,
    NOW,
    add_run,
    cell,
    config,
    make_app,
    mark_runs,
    metrics,
    seed_db,
    sync,
    until,
    write_recipes,
)

pytestmark = pytest.mark.usefixtures("in_tmp_path")   # runs.db and recipes/ shown relative to it


@pytest.fixture(scope="module")
def sleeper():
    """A live process standing in for a run process (its pid keeps a seeded row alive)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


# --------------------------------------------------------------------------------------------
# functional tests with real run processes


@sync
async def test_start_recipe_from_the_recipes_screen_streams_epochs_live(tmp_path):
    """The acceptance flow in small: Recipes -> start dialog (seeds, device, jobs) -> runs in
    child processes -> epochs appear in the runs table within about a second of their commit
    -> the run detail plots them."""
    from textual.widgets import DataTable, Input, Select
    from textual_plotext import PlotextPlot

    from workbench.tui.screens.detail import RunDetailScreen
    from workbench.tui.screens.dialogs import StartDialog

    store = Store.open("runs.db")
    app = WorkbenchApp(store, write_recipes(Path("recipes")), gpus=[])   # the real clock
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        assert app.query_one("#main-tabs").active == "recipes"          # no runs yet
        pane = app.query_one("#recipes-pane")
        assert [e.name for e in pane.entries] == ["broken", "quickstart"]
        assert pane.entries[0].error is not None and pane.entries[0].error.line == 5
        assert pane.select_name("quickstart")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StartDialog), 5, "the start dialog")
        dialog = app.screen
        assert dialog.query_one("#seeds", Input).value == "1"
        dialog.query_one("#seeds", Input).value = "1..2"
        dialog.query_one("#device", Select).value = "cpu"
        dialog.query_one("#jobs", Input).value = "2"
        await pilot.click("#start")
        await until(pilot, lambda: len(app.data.runs) == 2, 60, "two queued runs")
        assert app.query_one("#main-tabs").active == "runs"
        ids = sorted(app.data.runs)
        assert [app.data.runs[i].seed for i in ids] == [1, 2]

        # the UI shows each epoch within about a second of its commit
        seen_db: dict[tuple[int, int], float] = {}
        seen_ui: dict[tuple[int, int], float] = {}
        reader = Store.open("runs.db")
        end = time.monotonic() + 120
        while time.monotonic() < end:
            now = time.monotonic()
            for r in reader.runs():
                for e in range(1, r.n_epochs + 1):
                    seen_db.setdefault((r.id, e), now)
            for i in ids:
                shown = cell(app, "#runs-table", i, "epoch").split("/")[0]
                for e in range(1, int(shown) + 1):
                    seen_ui.setdefault((i, e), now)
            if all(app.data.status(r) == COMPLETED for r in app.data.runs.values()) and len(seen_ui) == 6:
                break
            await pilot.pause(0.1)
        reader.close()
        assert sorted(seen_ui) == [(i, e) for i in ids for e in (1, 2, 3)], seen_ui
        lags = [seen_ui[k] - seen_db[k] for k in seen_ui]
        assert max(lags) < 1.5, lags
        assert cell(app, "#runs-table", ids[0], "status") == COMPLETED
        assert cell(app, "#runs-table", ids[0], "test").startswith("0.")

        # the detail screen of a finished run: the plots and the epochs table
        app.query_one("#runs-pane").select_run(ids[0])
        app.query_one("#runs-table", DataTable).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen), 5, "the run detail")
        await pilot.pause(0.3)
        assert app.screen.query_one("#epochs-table", DataTable).row_count == 3
        rendered = str(app.screen.query_one("#chart-auc", PlotextPlot).render())
        assert "valid" in rendered and "test" in rendered and "no epoch yet" not in rendered
        await pilot.press("escape")
    runs = store.runs()
    assert [(r.status, r.n_epochs) for r in runs] == [(COMPLETED, 3), (COMPLETED, 3)]
    assert runs[0].pid != os.getpid() and runs[0].recipe_path.endswith("quickstart.yaml")
    store.close()


@sync
async def test_cancel_a_running_run(tmp_path):
    """c on a running run asks, then the run process records cancelled with its epochs kept."""
    from workbench.services.background import start_recipe
    from workbench.tui.screens.dialogs import ConfirmDialog

    recipes = write_recipes(Path("recipes"), epochs=500)
    store = Store.open("runs.db")
    launch = start_recipe(store, recipes / "quickstart.yaml", seeds="1", device="cpu")
    run_id = launch.run_ids[0]
    app = make_app(store, recipes)
    app.data.clock = lambda: datetime.now(timezone.utc)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await until(pilot, lambda: run_id in app.data.runs and app.data.runs[run_id].n_epochs >= 1, 90,
                    "the first epoch")
        assert cell(app, "#runs-table", run_id, "status") == RUNNING
        app.query_one("#runs-pane").select_run(run_id)
        app.query_one("#runs-table").focus()
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 5, "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: app.data.runs[run_id].status == CANCELLED, 60, "the run to end cancelled")
        await pilot.pause(0.6)
        assert cell(app, "#runs-table", run_id, "status") == CANCELLED
    run = store.get(run_id)
    assert run.status == CANCELLED and run.n_epochs >= 1 and "SIGTERM" in run.error
    launch.proc.wait(timeout=30)
    store.close()


# --------------------------------------------------------------------------------------------
# functional tests on a seeded database


@sync
async def test_compare_two_groups_paired_test_and_csv_export(tmp_path):
    from textual.widgets import DataTable, Input

    from workbench.cli import app as kni
    from workbench.tui.screens.dialogs import ExportDialog

    store = seed_db(Path("runs.db"))
    with Session(store.writer) as s, s.begin():       # AUC by stratum at each selected epoch
        for run_id in range(1, 7):
            strata = {"auc_by_user_degree": [{"bucket": "1-2", "auc": 0.6 + run_id / 100, "rows": 40}],
                      "auc_by_item_popularity": [{"bucket": "head", "auc": 0.7 + run_id / 100, "rows": 30}]}
            s.execute(sqlalchemy.text("UPDATE runs SET strata = :s WHERE id = :i"), {"s": json.dumps(strata), "i": run_id})
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await pilot.press("3")
        await pilot.press("a")                        # pick every configuration group
        await pilot.pause(0.2)
        pane = app.query_one("#compare-pane")
        assert sorted(g.n for g in pane.groups) == [3, 3]
        table = app.query_one("#cmp-table", DataTable)
        assert len(table.columns) == 3                # the groups side by side
        kni_group = next(g for g in pane.groups if g.distinct("model") == "KNI")
        mean, std = kni_group.stat("test_auc")
        assert cell(app, "#cmp-table", "test_auc", kni_group.key) == f"{mean:.4f}±{std:.4f}"
        assert cell(app, "#cmp-table", "n", kni_group.key) == "3"
        # the paired test between the two groups
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")
        assert app.query_one("#cmp-tabs").active == "cmp-paired-tab"
        svg = app.export_screenshot()
        assert "shared" in svg and "sign-flip" in svg
        # matrix: one dataset row, two configuration columns
        assert app.query_one("#cmp-matrix", DataTable).row_count == 1
        # export: the same file as `kni export --groups RUN_IDS`
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, ExportDialog), 5, "the export dialog")
        app.screen.query_one("#path", Input).value = "groups.csv"
        await pilot.press("enter")
        await until(pilot, lambda: Path("groups.csv").exists(), 5, "the CSV file")
        # an existing file is replaced only by a second Write; a folder is refused
        Path("groups.csv").write_text("mine")
        Path("a-folder").mkdir()
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, ExportDialog), 5, "the export dialog")
        for name, said in (("a-folder", "a-folder is a folder"), ("groups.csv", "groups.csv exists: Write again")):
            app.screen.query_one("#path", Input).value = name
            await pilot.press("enter")
            await pilot.pause(0.1)
            assert said in str(app.screen.query_one("#export-error").render())
        assert isinstance(app.screen, ExportDialog) and Path("groups.csv").read_text() == "mine"
        await pilot.press("enter")
        await until(pilot, lambda: Path("groups.csv").read_text() != "mine", 5, "the replaced CSV file")
        # a file that cannot be written: the dialog again, with the name typed and the reason
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, ExportDialog), 5, "the export dialog")
        app.screen.query_one("#path", Input).value = "no-such-folder/x.csv"
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, ExportDialog)
        assert app.screen.query_one("#path", Input).value == "no-such-folder/x.csv"
        assert "cannot write" in str(app.screen.query_one("#export-error").render())
        await pilot.press("escape")
    ids = [str(i) for i in range(1, 7)]
    # picked runs instead of groups: mark seed 1 of each configuration in Runs, then p
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await mark_runs(app, pilot, (4, 1))
        await pilot.press("p")
        await pilot.pause(0.2)
        assert app.query_one("#main-tabs").active == "compare"
        pane = app.query_one("#compare-pane")
        assert pane.picked_runs == [1, 4] and [g.n for g in pane.groups] == [1, 1]
        await pilot.press("x")                        # back to the picked groups
        assert pane.picked_runs is None
    res = CliRunner().invoke(kni, ["export", *ids, "--groups", "--csv", "-", "--db", "runs.db"])
    assert res.exit_code == 0, res.output
    assert Path("groups.csv").read_text() == res.stdout
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["n"] for r in rows] == ["3", "3"] and float(rows[0]["test_auc_std"]) > 0
    assert float(rows[0]["auc_users_1-2_mean"]) > 0.6 and float(rows[0]["auc_items_head_std"]) > 0
    store.close()


@sync
async def test_failed_run_shows_its_traceback_and_crashed_runs_show(tmp_path):
    from workbench.tui.screens.detail import RunDetailScreen

    store = seed_db(Path("runs.db"))
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        assert cell(app, "#runs-table", 7, "status") == FAILED
        assert cell(app, "#runs-table", 8, "status") == CRASHED
        app.query_one("#runs-pane").select_run(7)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen), 5, "the run detail")
        await pilot.pause(0.2)
        assert app.screen.query_one("#detail-tabs").active == "error"      # a failed run opens on it
        svg = app.export_screenshot()
        assert "ZeroDivisionError" in svg and "child_main" in svg and "Traceback" in svg
        await pilot.press("escape")
        assert not isinstance(app.screen, RunDetailScreen)
    store.close()


@sync
async def test_delete_a_finished_run(tmp_path):
    from workbench.tui.screens.dialogs import ConfirmDialog

    store = seed_db(Path("runs.db"))
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        app.query_one("#runs-pane").select_run(9)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 5, "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: 9 not in app.data.runs, 5, "the run to go")
        assert "9" not in [str(k.value) for k in app.query_one("#runs-table").rows]
    assert store.missing([9]) == [9] and store.epochs(9) == []
    store.close()


@sync
async def test_dead_run_process_shows_crashed(tmp_path):
    """A live row whose process is gone and whose heartbeat is stale shows as crashed."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = Store.open("runs.db")
    with Session(store.writer) as s, s.begin():
        add_run(s, run_id=1, cfg=config(1), status=RUNNING, n_epochs=1, pid=dead.pid, host=this_host())
    app = WorkbenchApp(store, write_recipes(Path("recipes")), gpus=[])      # real clock: stale heartbeat
    async with app.run_test(size=(100, 30)):
        assert cell(app, "#runs-table", 1, "status") == CRASHED
    store.close()


@pytest.mark.parametrize("choice", ["leave", "cancel"])
@sync
async def test_quit_with_active_runs_asks(tmp_path, choice):
    from workbench.tui.screens.dialogs import QuitDialog

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        store = seed_db(Path("runs.db"), running_pid=proc.pid)
        app = make_app(store)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()                     # mounted before the test reaches in
            assert cell(app, "#runs-table", 10, "status") == RUNNING
            await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, QuitDialog), 5, "the quit dialog")
            await pilot.press("l" if choice == "leave" else "c")
            await pilot.pause(0.2)
            assert app._exit
        if choice == "leave":
            assert proc.poll() is None and store.get(10).status == RUNNING
        else:                                     # SIGTERM reached the "run process"
            assert proc.wait(timeout=10) != 0
        store.close()
    finally:
        proc.kill()
        proc.wait()


def test_run_data_polls_only_what_changed(tmp_path, sleeper):
    store = seed_db(Path("runs.db"), running_pid=sleeper.pid)
    data = RunData(store, clock=lambda: NOW)
    change = data.poll_now(force_full=True)
    assert change.runs == set(range(1, 11))
    data.watch([10])
    assert [e.epoch for e in data.epochs[10]] == [1, 2]
    assert not data.poll_now()                    # nothing new
    with Session(store.writer) as s, s.begin():   # the run process commits epoch 3
        s.add(Epoch(run_id=10, epoch=3, created_at=NOW, **metrics(7, 3, True)))
    change = data.poll_now()
    assert change.runs == {10} and change.epochs == {10}
    assert [e.epoch for e in data.epochs[10]] == [1, 2, 3]
    store.delete([9])
    assert data.poll_now(force_full=True).removed == {9}
    assert seeds_text([1, 2, 3]) == "1..3" and seeds_text([1, 3]) == "1,3"
    store.close()


# --------------------------------------------------------------------------------------------
# snapshots (fixed rows, fixed clock)


def _snapshot_app(sleeper) -> WorkbenchApp:
    store = seed_db(Path("runs.db"), running_pid=sleeper.pid)
    return make_app(store)


def test_snapshot_runs(snap_compare, sleeper):
    assert snap_compare(_snapshot_app(sleeper), terminal_size=(110, 30))


def test_snapshot_recipes(snap_compare, sleeper):
    assert snap_compare(_snapshot_app(sleeper), press=["1"], terminal_size=(110, 30))


def test_snapshot_start_dialog_80x24(snap_compare, sleeper):
    async def run_before(pilot):
        await pilot.press("1")
        pilot.app.query_one("#recipes-pane").select_name("quickstart")
        await pilot.press("s")
        await pilot.pause(0.2)
        pilot.app.set_focus(None)

    assert snap_compare(_snapshot_app(sleeper), run_before=run_before, terminal_size=(80, 24))


def test_snapshot_run_detail(snap_compare, sleeper):
    async def run_before(pilot):
        pilot.app.open_run(2)
        await pilot.pause(0.3)

    assert snap_compare(_snapshot_app(sleeper), run_before=run_before, terminal_size=(110, 34))


def test_snapshot_compare(snap_compare, sleeper):
    assert snap_compare(_snapshot_app(sleeper), press=["3", "a"], terminal_size=(120, 32))


def test_snapshot_compare_curves_80x24(snap_compare, sleeper):
    assert snap_compare(_snapshot_app(sleeper), press=["3", "a", "right_square_bracket", "right_square_bracket"],
                        terminal_size=(80, 24))


# --------------------------------------------------------------------------------------------
# trustworthy numbers: re-runs, the paired verdict, one group id, missing data, every mistake


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]


def static_text(app, selector: str, width: int = 200) -> str:
    """The text a Static shows (a Rich renderable rendered without wrapping), on one line."""
    from rich.console import Console
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(app.query_one(selector).content)
    return " ".join(console.export_text().split())


@sync
async def test_a_rerun_still_training_does_not_replace_its_completed_seed(tmp_path, sleeper):
    store = seed_db(Path("runs.db"))
    with Session(store.writer) as s, s.begin():      # seed 2 of the KNI group re-run, one epoch so far
        add_run(s, run_id=11, cfg=config(2), status=RUNNING, n_epochs=1, pid=sleeper.pid, host=this_host())
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await pilot.press("3", "a")
        await pilot.pause(0.2)
        pane = app.query_one("#compare-pane")
        kni_group = next(g for g in pane.groups if g.distinct("model") == "KNI")
        assert [m.run.id for m in kni_group.members] == [1, 2, 3]
        completed = [max((metrics(seed, e, True) for e in range(1, 6)), key=lambda m: m["valid_auc"])["test_auc"]
                     for seed in (1, 2, 3)]                      # each completed run at its best epoch
        assert kni_group.stat("test_auc")[0] == pytest.approx(np.mean(completed))
        notes = static_text(app, "#cmp-notes")
        assert f"{kni_group.id} seed 2: run 11 still training, completed run 2 counts" in notes
    store.close()


@sync
async def test_the_paired_view_never_pairs_a_group_with_itself_and_follows_the_test(tmp_path):
    from textual.widgets import Select
    store = seed_db(Path("runs.db"))
    with Session(store.writer) as s, s.begin():      # the newest run is NI: the first visit picks NI
        add_run(s, run_id=11, cfg=config(4, kg=False), status=COMPLETED, n_epochs=5, kg=False)
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await pilot.press("3")
        await pilot.pause(0.2)
        pane = app.query_one("#compare-pane")
        assert [g.distinct("model") for g in pane.groups] == ["NI"]
        await pilot.press("a")                        # every group: KNI first, NI second
        await pilot.pause(0.2)
        a, b = app.query_one("#cmp-a", Select), app.query_one("#cmp-b", Select)
        assert a.value != b.value and {a.value, b.value} == {g.key for g in pane.groups}
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")
        await pilot.pause(0.2)
        text = static_text(app, "#cmp-paired")
        assert "same group" not in text
        assert "no verdict possible: with 3 shared seeds the smallest reachable p is 2/2^3 = 0.25" in text
        assert "better" not in text
        b.value = a.value                             # picking A's group as B moves A away
        await pilot.pause(0.2)
        assert a.value != b.value and "same group" not in static_text(app, "#cmp-paired")
    store.close()


@sync
async def test_one_group_id_in_every_view(tmp_path):
    from textual.widgets import DataTable, SelectionList

    from workbench import analysis as cmp
    from workbench.cli import app as kni
    store = seed_db(Path("runs.db"))
    runs = store.runs()
    ids = {r.model: cmp.group_id(r.config_hash) for r in runs}
    settings = {cmp.group_key(r, "settings")[:6] for r in runs}       # the old matrix header id
    app = make_app(store)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await pilot.press("3", "a")
        await pilot.pause(0.2)
        options = [str(o.prompt) for o in app.query_one("#cmp-list", SelectionList)._options]
        assert all(any(i in o for o in options) for i in ids.values()), options
        table = app.query_one("#cmp-table", DataTable)
        headers = [str(c.label) for c in table.columns.values()]
        assert all(any(i in h for h in headers) for i in ids.values()), headers
        await pilot.press("right_square_bracket")   # the matrix: columns by settings, cells by group id
        await pilot.pause(0.2)
        matrix = app.query_one("#cmp-matrix", DataTable)
        headers = " ".join(str(c.label) for c in matrix.columns.values())
        cells = " ".join(str(getattr(v, "plain", v)) for v in matrix.get_row("synthetic-tiny"))
        assert all(i in cells for i in ids.values()), cells
        assert not any(s in headers + cells for s in settings), (headers, cells)
        notes = static_text(app, "#cmp-matrix-notes")
        assert "group id" in notes
    res = CliRunner().invoke(kni, ["compare", "--all", "--db", "runs.db"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and all(i in res.stdout for i in ids.values())
    store.close()


@sync
async def test_a_recipe_whose_data_is_missing_is_marked_and_not_started(tmp_path, monkeypatch):
    from kni_core.data import registry
    from workbench.tui.screens.dialogs import StartDialog
    monkeypatch.setattr(registry, "data_roots", lambda: [tmp_path / "nowhere"])
    recipes = write_recipes(Path("recipes"))
    (recipes / "ab.yaml").write_text("name: ab\ndataset: {name: ab}\nmodel: {attention: 2}\nseeds: 1..5\n")
    store = Store.open("runs.db")
    app = make_app(store, recipes)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        pane = app.query_one("#recipes-pane")
        entry = next(e for e in pane.entries if e.name == "ab")
        assert entry.recipe is not None and entry.data is None and "not found" in entry.data_error
        quick = next(e for e in pane.entries if e.name == "quickstart")
        assert quick.data == "generated" and quick.startable
        row = app.query_one("#recipes-table").get_row(str(pane.entries.index(entry)))
        assert str(row[0]) == "!"
        assert pane.select_name("ab")
        await pilot.pause(0.1)
        info = static_text(app, "#recipe-info")
        assert "dataset is missing" in info and "How to obtain it" in info and "ab.pkl" in info
        app.query_one("#recipes-table").focus()
        await pilot.press("s")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, StartDialog)
        assert any("dataset is missing; nothing was started" in m for m in notifications(app))
        assert store.runs() == []
        # the data arrives: the same key starts it
        folder = tmp_path / "nowhere" / "ab"
        folder.mkdir(parents=True)
        (folder / "ab.pkl").write_bytes(b"")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StartDialog), 5, "the start dialog")
    store.close()


@sync
async def test_every_mistake_of_a_recipe_is_shown_at_its_line(tmp_path):
    recipes = write_recipes(Path("recipes"))
    (recipes / "broken.yaml").write_text(BROKEN + "train:\n  epochs: 0\n")
    store = Store.open("runs.db")
    app = make_app(store, recipes)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        pane = app.query_one("#recipes-pane")
        entry = pane.entries[0]
        assert [(e.line, e.key) for e in entry.error.errors] == [(5, "model.temprature"), (7, "train.epochs")]
        assert pane.select_name("broken")
        await pilot.pause(0.2)
        info = static_text(app, "#recipe-info")
        assert "invalid (2 mistakes)" in info and "line 5: model.temprature" in info and "line 7: train.epochs" in info
        svg = app.export_screenshot()
        assert "^ line 5: model.temprature" in svg.replace("&#160;", " ") and \
               "^ line 7: train.epochs" in svg.replace("&#160;", " ")
    store.close()


@sync
async def test_groups_pooled_by_model_say_so_and_the_matrix_holds_the_popularity_floor(tmp_path):
    """As kni compare: runs of several configurations in one group are counted as runs with a
    note, their seeds listed as they are; the matrix has the floor column and ▼ below it."""
    from textual.widgets import DataTable

    from workbench.analysis.floors import run_floor_key

    store = seed_db(Path("runs.db"))
    with Session(store.writer) as s, s.begin():      # a second KNI configuration: seed 1 again
        add_run(s, run_id=11, cfg=config(1, preset="small"), status=COMPLETED, n_epochs=5)
    kni_tiny, ni = (sum(store.get(i).best_test_auc for i in ids) / 3 for ids in ((1, 2, 3), (4, 5, 6)))
    floor = (kni_tiny + ni) / 2                       # NI below it, KNI above
    store.save_floor(run_floor_key(store.get(1)), "synthetic-tiny", {"test_auc": floor, "files": None})
    app = make_app(store)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await pilot.press("3", "a")
        await pilot.pause(0.2)
        await pilot.press("right_square_bracket")     # the matrix, by configuration
        await pilot.pause(0.2)
        matrix = app.query_one("#cmp-matrix", DataTable)
        assert [str(c.label) for c in matrix.columns.values()][:2] == ["dataset", "pop (floor)"]
        row = [getattr(v, "plain", str(v)) for v in matrix.get_row("synthetic-tiny")]
        assert row[1] == f"{floor:.4f}"
        assert sum(c.startswith("▼") for c in row[2:]) == 1      # NI's cell
        assert "worse than the popularity floor" in static_text(app, "#cmp-matrix-notes")
        await pilot.press("left_square_bracket")      # back to Groups, grouped by model
        while app.query_one("#cmp-by").value != "model":
            await pilot.press("g")
            await pilot.pause(0.1)
        await pilot.pause(0.2)
        pane = app.query_one("#compare-pane")
        kni = next(g for g in pane.groups if g.distinct("model") == "KNI")
        assert cell(app, "#cmp-table", "seeds", kni.key) == "1,1,2,3"
        table = app.query_one("#cmp-table", DataTable)
        assert "n runs" in str(table.get_cell("n", "what"))
        assert "several configurations pooled (group by model)" in static_text(app, "#cmp-notes")
    store.close()
