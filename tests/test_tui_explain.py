"""The workbench's Explain screen (issue 11): opened from a run with ``x``, it loads the saved
model, explains a test positive (heatmap, top pairs), resamples with ``r`` and recommends with
``m``, at 120x40 and at 80x24, from a database it opens read-only."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.store.repository import Store
from workbench.tui.app import WorkbenchApp

from helpers import tiny_recipe
from tui_helpers import until

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Run 1: KNI, run 2: MF, each with its default checkpoint."""
    base = tmp_path_factory.mktemp("tui-explain")
    env = {**os.environ, "KNI_CACHE_DIR": str(base / "cache")}
    for name, model in (("kni", "{hop_n_sample: [1, 4], max_degree: 16, hidden: 8}"), ("mf", "{name: mf, dim: 4}")):
        (base / f"{name}.yaml").write_text(tiny_recipe(name, model=model[1:-1], epochs=1))
        res = subprocess.run([sys.executable, "-m", "workbench.cli", "run", str(base / f"{name}.yaml"), "--db",
                              str(base / "runs.db")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
    return base


def shown(app) -> str:
    return getattr(app.screen, "shown", "")


def digest(folder: Path) -> str:
    """The database, its write-ahead log and the checkpoints (a reader's -shm index may change)."""
    files = [folder / "runs.db", folder / "runs.db-wal", *sorted((folder / "runs.db.checkpoints").iterdir())]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files if p.is_file())).hexdigest()


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_explain_screen(db, size, monkeypatch, tmp_path):
    monkeypatch.setenv("KNI_CACHE_DIR", str(db / "cache"))
    before = digest(db)

    async def body() -> None:
        from textual.widgets import Input

        from workbench.tui.screens.explain import ExplainScreen
        store = Store.open(db / "runs.db", readonly=True)
        app = WorkbenchApp(store, tmp_path, gpus=[])
        async with app.run_test(size=size) as pilot:
            await pilot.pause()                     # mounted before the test reaches in
            await until(pilot, lambda: 1 in app.data.runs, 10, "the runs")
            app.open_run(1)
            await pilot.pause()
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ExplainScreen), 5, "the explain screen")
            await until(pilot, lambda: "predicted probability" in shown(app), 60, "the explanation")
            screen = app.screen
            assert screen.query_one("#explain-user", Input).value and screen.query_one("#explain-item", Input).value
            text = shown(app)
            assert "top pairs by attention" in text and "user side" in text and "(seed 0)" in text
            assert ("itself" in text) == (size[0] >= 110)              # the relations, when there is room
            if size[0] < 110:                                          # keyed rows and columns, a legend:
                matrix = text.split("rows: user = ")[0]                # every weight whole at 80 columns
                assert "rows: user = " in text and "columns: item = " in text and "…" not in matrix, text
            await pilot.press("r")                                       # another neighbourhood
            await until(pilot, lambda: "(seed 1)" in shown(app), 30, "the resampled explanation")
            await pilot.press("m")
            await until(pilot, lambda: "candidates for user" in shown(app), 60, "the recommendation")
            screen.query_one("#explain-user", Input).value = "999999"
            await pilot.press("e")
            await until(pilot, lambda: "no user 999999" in shown(app), 30, "the error")
            user = screen.query_one("#explain-user", Input)      # a wrong id entered in its field:
            user.value = "888888"                                # the cursor stays there to correct it
            user.focus()
            await pilot.press("enter")
            await until(pilot, lambda: "no user 888888" in shown(app), 30, "the second error")
            await pilot.pause()
            assert app.focused is user
            await pilot.press("1")                               # typed into the field, not the Recipes key
            assert isinstance(app.screen, ExplainScreen) and user.value.endswith("1")
            await pilot.press("escape")
            await pilot.press("escape")
            app.open_run(2)                                              # a baseline: recommend only
            await pilot.pause()
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ExplainScreen) and "KNI and NI runs only"
                        in shown(app), 60, "the baseline's note")
            await pilot.press("m")
            await until(pilot, lambda: "candidates for user" in shown(app), 60, "the baseline's recommendation")
        store.close()

    asyncio.run(body())
    assert digest(db) == before                                          # nothing written
