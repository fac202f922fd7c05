"""Suites (recipes/bc-all.yaml): several recipes run by one `kni run`, validated before any runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.recipe import RecipeError, read_recipe_text
from workbench.recipe.suite import is_suite, load_suite

from helpers import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]


def write_suite(folder: Path, body: str) -> Path:
    (folder / "tiny-pop.yaml").write_text(tiny_recipe("tiny-pop", epochs=1, model="name: pop"))
    (folder / "tiny-mf.yaml").write_text(tiny_recipe("tiny-mf", epochs=1, model="name: mf, dim: 4"))
    path = folder / "all.yaml"
    path.write_text(body)
    return path


@pytest.mark.parametrize("name", ["bc-all", "lastfm-all"])
def test_the_shipped_suites_list_every_model_of_their_dataset(name):
    path = ROOT / "recipes" / f"{name}.yaml"
    suite, recipes = load_suite(path, read_recipe_text(path))
    assert suite.name == name
    assert {r.base.model.name for r in recipes} == {"pop", "itemknn", "kni", "mf", "ripplenet", "kgcn"}
    assert {r.base.dataset.name for r in recipes} == {name.split("-")[0]}
    assert any(r.base.model.name == "kni" and not r.base.model.kg for r in recipes)      # NI too


def test_kni_run_runs_each_recipe_of_a_suite_in_turn(tmp_path):
    path = write_suite(tmp_path, "name: both\nsuite: [tiny-pop.yaml, tiny-mf.yaml]\nseeds: 1..2\n")
    db = str(tmp_path / "runs.db")
    res = CliRunner().invoke(app, ["run", str(path), "--json", "--db", db])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert lines[-1] == {"event": "suite", "name": "both",
                         "recipes": [{"recipe": str(tmp_path / "tiny-pop.yaml"), "exit": 0},
                                     {"recipe": str(tmp_path / "tiny-mf.yaml"), "exit": 0}]}
    runs = json.loads(CliRunner().invoke(app, ["runs", "--json", "--db", db]).stdout)
    assert sorted((r["recipe"], r["seed"], r["status"]) for r in runs) == [
        ("tiny-mf", 1, "completed"), ("tiny-mf", 2, "completed"),
        ("tiny-pop", 1, "completed"), ("tiny-pop", 2, "completed")]


def test_a_suite_with_a_recipe_that_cannot_run_runs_nothing(tmp_path):
    path = write_suite(tmp_path, "suite: [tiny-pop.yaml, tiny-mf.yaml]\n")
    (tmp_path / "tiny-mf.yaml").write_text(tiny_recipe("tiny-mf", model="name: mf, dimm: 4"))
    db = tmp_path / "runs.db"
    res = CliRunner().invoke(app, ["run", str(path), "--db", str(db)])
    assert res.exit_code == 2
    assert "1 of its 2 recipes cannot run" in res.output and "model.dimm: unknown key" in res.output
    assert "tiny-mf.yaml:3: model.dimm" in res.output and "nothing was run" in res.output
    assert not db.exists()


@pytest.mark.parametrize("body, message", [
    ("suite: [tiny-pop.yaml, nope.yaml]\n", "2: suite: nope.yaml: no such recipe beside the suite"),
    ("suite: []\n", "suite: expected a non-empty list of recipe files, got an empty list"),
    ("suite: [tiny-pop.yaml]\nmodel: {dim: 3}\n", "2: model: unknown key in a suite"),
    ("suite: [all.yaml]\n", "all.yaml: a suite cannot list itself"),
])
def test_suite_mistakes_name_the_file_line_and_key(tmp_path, body, message):
    path = write_suite(tmp_path, body.replace("[tiny-pop.yaml, nope.yaml]", "\n  - tiny-pop.yaml\n  - nope.yaml")
                       if "nope" in body else body)
    assert is_suite(path.read_text())
    with pytest.raises(RecipeError) as e:
        load_suite(path, path.read_text())
    assert message.split(": ", 1)[-1] in str(e.value) and str(path) in str(e.value)
    if "nope" in body:
        assert f"{path}:3: suite:" in str(e.value)


def test_the_workbench_lists_a_suite_and_starts_its_recipes_in_one_queue(tmp_path, in_tmp_path):
    import asyncio

    from textual.widgets import Input

    from workbench.store.repository import Store
    from workbench.store.statuses import COMPLETED
    from workbench.tui.app import WorkbenchApp
    from workbench.tui.screens.dialogs import StartDialog

    from tui_helpers import until

    folder = tmp_path / "recipes"
    folder.mkdir()
    write_suite(folder, "name: both\ndescription: pop and mf\nsuite: [tiny-pop.yaml, tiny-mf.yaml]\n")

    async def body():
        store = Store.open("runs.db")
        app = WorkbenchApp(store, folder, gpus=[])
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()                     # mounted before the test reaches in
            pane = app.query_one("#recipes-pane")
            assert pane.select_name("both")
            entry = pane.current()
            assert entry.startable and entry.model == "suite of 2" and entry.dataset == "synthetic-tiny"
            svg = app.export_screenshot().replace("&#160;", " ")
            assert "a suite: its 2 recipes run one after another" in svg and "tiny-mf: synthetic-tiny, MF" in svg
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, StartDialog), 5, "the start dialog")
            app.screen.query_one("#seeds", Input).value = "1..2"
            await pilot.click("#start")
            await until(pilot, lambda: len(app.data.runs) == 4, 60, "four queued runs")
            await until(pilot, lambda: all(app.data.status(r) == COMPLETED for r in app.data.runs.values()), 120,
                        "the runs to complete")
            runs = sorted(app.data.runs.values(), key=lambda r: r.id)
            assert [(r.recipe, r.seed) for r in runs] == [("tiny-pop", 1), ("tiny-pop", 2), ("tiny-mf", 1),
                                                          ("tiny-mf", 2)]
        store.close()

    asyncio.run(body())
