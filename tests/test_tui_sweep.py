"""The workbench side of sweeps (issue 9): overrides and sweeps in the start dialog, the Runs
tab grouped by sweep, the Compare tab's Sweep view, the pruned colour, and a sweep started by
the workbench's launcher process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from textual.widgets import DataTable, TextArea

from kni_core.results import EpochResult, FitSummary
from workbench.recipe import parse_recipe
from workbench.runs.errors import Pruned
from workbench.runs.listener import StoreListener
from workbench.runs.provenance import Code
from workbench.runs.rows import new_run
from workbench.store.liveness import this_host
from workbench.store.repository import Store
from workbench.store.statuses import (
    COMPLETED,
    PRUNED,
    QUEUED,
    RUNNING,
    STATUSES,
)
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.dialogs import (
    StartDialog,
    StartRequest,
    check_start,
    override_lines,
)

from helpers import wait_for
from tui_helpers import sync, until

SWEEP = """\
name: tiny-sweep
dataset: {name: synthetic, min_relation_triples: 1, synthetic: {preset: tiny}}
model: {hop_n_sample: [1, 4], max_degree: 16}
train: {epochs: 2, patience: 0}
eval: {n_eval: 1}
seeds: [1]
device: cpu
sweep:
  grid:
    model.temperature: [1, 100]
"""


pytestmark = pytest.mark.usefixtures("in_tmp_path")   # runs.db and recipes/ shown relative to it


def recipes_dir() -> Path:
    folder = Path("recipes")
    folder.mkdir(exist_ok=True)
    (folder / "tiny-sweep.yaml").write_text(SWEEP)
    return folder


def test_overrides_are_checked_with_the_rules_of_set_and_named_by_their_line():
    text = "# epochs for a quick look\ntrain.epochs=5\n\nmodel.temprature=3\nmodel.temperature=5\n"
    assert override_lines(text) == [(2, "train.epochs=5"), (4, "model.temprature=3"), (5, "model.temperature=5")]
    problems, rec = check_start(SWEEP, "tiny-sweep.yaml", "1..2", override_lines(text))
    assert rec is None and problems == [
        "override line 4: unknown key; did you mean 'temperature'?",
        "override line 5: the recipe's sweep varies model.temperature (line 10); --set cannot fix it too: "
        "drop one of them"]
    problems, rec = check_start(SWEEP, "tiny-sweep.yaml", "1..2", [(1, "train.epochs=5"), (2, "train.lr=abc")])
    assert problems == ["override line 2: expected a number, got str ('abc')"]
    problems, rec = check_start(SWEEP, "tiny-sweep.yaml", "1..2", [(1, "train.epochs=5")])
    assert problems == [] and rec.seeds == [1, 2] and rec.base.train.epochs == 5 and len(rec.sweep.points()) == 2
    problems, _ = check_start(SWEEP, "tiny-sweep.yaml", "2..1", [])
    assert problems == ["seeds: reversed range '2..1'; write it as '1..2'"]


@sync
async def test_the_start_dialog_checks_overrides_as_they_are_typed_and_starts_every_point(tmp_path):
    store = Store.open("runs.db")
    app = WorkbenchApp(store, recipes_dir(), gpus=[])
    requests: list[StartRequest] = []
    app._start = lambda path, request: requests.append(request)     # no processes here
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        await pilot.press("1")
        app.main.query_one("#recipes-pane").select_name("tiny-sweep")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StartDialog), 5, "the start dialog")
        dialog = app.screen
        assert "grid: 2 point(s) x 1 seed(s) = 2 runs" in str(dialog.query_one("#start-sweep").content)
        dialog.query_one("#overrides", TextArea).text = "train.epochs=1\nmodel.hidden=-4"
        await pilot.pause(0.2)                              # checked as typed: no key pressed to submit
        assert str(dialog.query_one("#start-error").content) == \
            "override line 2: expected a value >= 1; got -4"
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert app.screen is dialog and not requests        # refused while a line is wrong
        dialog.query_one("#overrides", TextArea).text = "train.epochs=1\nmodel.hidden=8"
        await pilot.pause(0.2)
        assert str(dialog.query_one("#start-error").content) == ""
        await pilot.press("ctrl+s")
        await until(pilot, lambda: bool(requests), 5, "the start request")
    assert requests == [StartRequest("1", "cpu", 1, ("train.epochs=1", "model.hidden=8"))]   # the recipe's device
    store.close()


def play(store: Store, run_id: int, aucs: list[float], end: str) -> None:
    """Write a run as its process would: claimed, one epoch per AUC, then its end."""
    run = store.get(run_id)
    assert store.claim(run_id, os.getpid(), this_host())
    listener = StoreListener(store, run_id, "valid")
    for e, v in enumerate(aucs, start=1):
        listener.epoch(EpochResult(run.seed, e, 0.6, v, 0.6, 0.7, v - 0.02, 0.62, 0.68, 1.0, 0.5))
    if end == COMPLETED:
        listener.finished(FitSummary(run.seed, listener.best.epoch, listener.best, len(aucs), False))
    elif end == PRUNED:
        listener.failed(Pruned(f"pruned by the sweep's median pruner after epoch {len(aucs)}"))


def seed_sweep(store: Store) -> int:
    """Sweep 1: temperature 1 / 100 x seeds 1, 2 (one seed pruned); a run outside any sweep."""
    import dataclasses
    rec = parse_recipe(SWEEP.replace("seeds: [1]", "seeds: [1, 2]"), "recipes/tiny-sweep.yaml")
    sid = store.create_sweep(name=rec.name, recipe_text=rec.text, method="grid", spec=rec.sweep.to_dict(),
                             seeds=rec.seeds, planned=2)
    aucs = {(1, 1): [0.60, 0.64], (1, 2): [0.61, 0.65], (2, 1): [0.70, 0.76], (2, 2): [0.55]}
    for number, params in enumerate(rec.sweep.points(), start=1):
        for seed in rec.seeds:
            new = dataclasses.replace(new_run(rec.name, rec.text, rec.config_for_point(params, seed), prov=Code()),
                                      sweep_id=sid, sweep_point=number, sweep_params=json.dumps(params))
            run_id = store.create_run(new)
            play(store, run_id, aucs[(number, seed)], PRUNED if (number, seed) == (2, 2) else COMPLETED)
    other = parse_recipe(SWEEP.split("sweep:")[0].replace("tiny-sweep", "plain"))
    play(store, store.create_run(new_run(other.name, other.text, other.config_for(1), prov=Code())),
         [0.5], COMPLETED)
    store.finish_sweep(sid)
    return sid


@sync
async def test_runs_grouped_by_sweep_and_a_sweeps_points_ranked_in_compare(tmp_path):
    store = Store.open("runs.db")
    sid = seed_sweep(store)
    app = WorkbenchApp(store, recipes_dir(), gpus=[])
    async with app.run_test(size=(130, 36)) as pilot:
        await pilot.pause()                     # mounted before the test reaches in
        styles = {s: app.status_style(s) for s in STATUSES}
        assert styles[PRUNED] and list(styles.values()).count(styles[PRUNED]) == 1     # its own colour
        await pilot.press("2")
        runs = app.main.query_one("#runs-pane")
        table = app.main.query_one("#runs-table", DataTable)
        assert runs._order == [5, 4, 3, 2, 1]
        assert table.get_cell("4", "recipe").plain == "tiny-sweep s1.p2" and table.get_cell("4", "status").plain == \
            PRUNED
        assert table.get_cell("4", "status").style == styles[PRUNED]
        await pilot.press("w")
        assert runs._order == ["sweep:1", 4, 3, 2, 1, "sweep:-", 5]
        header = {key: table.get_cell("sweep:1", key).plain for key in ("recipe", "dataset", "model", "epoch")}
        assert header == {"recipe": "sweep 1: tiny-sweep", "dataset": "2 point(s)", "model": "grid",
                          "epoch": "best p2"}           # spread over the columns: it widens none of them
        assert table.get_cell("sweep:1", "status").plain == "4/4 done"
        assert table.get_cell("sweep:1", "valid").plain == "0.6550"        # best point: (0.76 + 0.55) / 2
        assert table.get_cell("sweep:-", "recipe").plain == "not in a sweep"
        table.move_cursor(row=0)
        assert runs.current_id() is None and runs.current_sweep() == sid
        await pilot.press("p")                                          # the sweep's points, ranked
        await until(pilot, lambda: app.main.query_one("#cmp-tabs").active == "cmp-sweep-tab", 5, "the sweep view")
        await pilot.pause(0.3)
        sweep_table = app.main.query_one("#cmp-sweep-table", DataTable)
        assert [c.label.plain for c in sweep_table.columns.values()] == [
            "#", "point", "group", "model.temperature", "n", "runs", "valid AUC", "test AUC", "epoch"]
        rows = [[getattr(c, "plain", str(c)) for c in sweep_table.get_row_at(i)] for i in range(sweep_table.row_count)]
        assert [(r[1], r[3], r[4]) for r in rows] == [("2", "100", "2"), ("1", "1", "2")]
        assert rows[0][6] == "0.6550±0.1485" and rows[1][6] == "0.6450±0.0071"   # a pruned run counts
        assert "1 completed 1 pruned" in rows[0][5]
        notes = " ".join(str(app.main.query_one("#cmp-sweep-notes").content).split())
        assert "which keys matter" in notes and "model.temperature 0.0100 (1: 0.6450, 100: 0.6550)" in notes
        sweep_table.focus()
        sweep_table.move_cursor(row=0)
        await pilot.press("enter")                                      # a point's seeds in Groups
        await until(pilot, lambda: app.main.query_one("#cmp-tabs").active == "cmp-groups-tab", 5, "the groups")
        pane = app.main.query_one("#compare-pane")
        point_hash = store.runs(ids=[3])[0].config_hash
        assert pane.checked == {point_hash} and {p.run.id for p in pane.points} == {3, 4}
    store.close()


def test_the_workbench_launcher_runs_a_sweep_with_its_overrides(tmp_path):
    from workbench.services.background import start_recipe
    store = Store.open("runs.db")
    path = recipes_dir() / "tiny-sweep.yaml"
    launch = start_recipe(store, path, seeds="1", device="cpu", jobs=2, overrides=["train.epochs=1"])
    try:
        assert launch.sweep_id == 1 and launch.run_ids == [1, 2]
        assert [(r.sweep_id, r.sweep_point, r.status in (QUEUED, RUNNING, COMPLETED)) for r in store.runs()] == \
               [(1, 1, True), (1, 2, True)]
        assert wait_for(lambda: launch.poll() is not None, 120), "the launcher did not end"
        assert launch.poll() == 0
        runs = store.runs(sweep=1)
        assert [r.status for r in runs] == [COMPLETED, COMPLETED] and [r.n_epochs for r in runs] == [1, 1]
        assert {r.params["model.temperature"] for r in runs} == {1.0, 100.0}
        assert store.get_sweep(1).finished_at is not None
    finally:
        launch.terminate()
        store.close()
