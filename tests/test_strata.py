"""AUC by stratum (issue 16): the buckets worked out by hand, stored with every run at its
selected epoch, and shown by kni show, kni compare --strata, the export and the run screen."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from kni_core.config import ConfigError, RunConfig
from kni_core.data.prepare import PreparedData
from kni_core.strata import by_item_popularity, by_user_degree, user_degree_buckets
from workbench import analysis as cmp
from workbench.cli import app
from workbench.store.repository import Store

from helpers import tiny_recipe


def test_user_buckets_are_named_by_their_edges():
    assert [b[0] for b in user_degree_buckets([2, 5, 20])] == ["1-2", "3-5", "6-20", ">20"]
    assert [b[0] for b in user_degree_buckets([1, 3])] == ["1", "2-3", ">3"]


def toy() -> PreparedData:
    """Users 1, 2, 3 with 1, 3 and 6 training rows; items 4..7 with 4, 2, 1, 0 training positives."""
    train = [[1, 4, 1],
             [2, 4, 1], [2, 5, 1], [2, 7, 0],
             [3, 4, 1], [3, 4, 1], [3, 5, 1], [3, 6, 1], [3, 7, 0], [3, 7, 0]]
    test = [[1, 4, 1], [1, 6, 0], [2, 5, 1], [2, 6, 0], [2, 7, 0], [3, 4, 0], [3, 6, 1], [3, 7, 1]]
    rows, t = np.array(train, dtype=np.int64), np.array(test, dtype=np.int64)
    return PreparedData(rows, t[:0], t, np.zeros((8, 0), np.int32), 8, n_users=3, items=np.arange(4, 8))


def test_strata_by_hand():
    data = toy()
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.6, 0.4, 0.7])
    users = {b["bucket"]: b for b in by_user_degree(data, data.test, scores, [2, 5])}
    assert list(users) == ["1-2", "3-5", ">5"]
    assert [users[b]["rows"] for b in users] == [2, 3, 3] and [users[b]["users"] for b in users] == [1, 1, 1]
    assert users["1-2"]["auc"] == 1.0 and users["3-5"]["positive_share"] == pytest.approx(1 / 3)
    assert users[">5"]["auc"] == pytest.approx(roc_auc_score([0, 1, 1], [0.6, 0.4, 0.7]))
    # training positives 4, 2, 1, 0 of 7: item 4 holds the first third and more, so it is the head alone;
    # item 5 starts at 4/7 (torso), item 6 at 6/7 (tail), item 7 with none at 7/7 (tail)
    items = {b["bucket"]: b for b in by_item_popularity(data, data.test, scores)}
    assert [items[b]["rows"] for b in items] == [2, 1, 5] and [items[b]["items"] for b in items] == [1, 1, 2]
    assert items["torso"]["auc"] is None                     # one label: no AUC
    assert items["head"]["auc"] == 1.0                       # its positive (0.9) above its negative (0.6)
    tail = data.test[:, 1] >= 6
    assert items["tail"]["auc"] == pytest.approx(roc_auc_score(data.test[tail, 2], scores[tail]))


def test_eval_strata_must_be_increasing_positive_integers_and_changes_no_hash():
    base = {"dataset": {"name": "synthetic"}}
    for bad in ([5, 2], [0, 3], [], [2, 2], ["a"], [True]):
        with pytest.raises(ConfigError, match="eval.strata"):
            RunConfig.from_dict({**base, "eval": {"strata": bad}}).validate()
    other = RunConfig.from_dict({**base, "eval": {"strata": [1, 10]}}).validate()
    assert other.config_hash() == RunConfig.from_dict(base).validate().config_hash()


@pytest.fixture(scope="module")
def strata_db(tmp_path_factory):
    """Two seeds of a tiny KNI and one pop run, on the same tiny split."""
    base = tmp_path_factory.mktemp("strata")
    db = str(base / "runs.db")
    (base / "tiny.yaml").write_text(tiny_recipe("tiny", epochs=2, seeds="[1, 2]"))
    (base / "tiny-pop.yaml").write_text(tiny_recipe("tiny-pop", epochs=1, model="name: pop"))
    for name in ("tiny", "tiny-pop"):
        res = CliRunner().invoke(app, ["run", str(base / f"{name}.yaml"), "--db", db])
        assert res.exit_code == 0, res.output
    return db


def cli(db: str, *args: str) -> str:
    res = CliRunner().invoke(app, [*args, "--db", db])
    assert res.exit_code == 0, res.output
    return res.stdout


def test_show_json_buckets_add_up_to_the_test_rows(strata_db):
    from kni_core.data import prepare
    shown = json.loads(cli(strata_db, "show", "1", "--json"))
    test_rows = len(prepare(RunConfig.from_dict(shown["config"])).test)
    assert shown["strata_epoch"] == shown["run"]["best_epoch"]
    for kind in ("auc_by_user_degree", "auc_by_item_popularity"):
        assert sum(b["rows"] for b in shown[kind]) == test_rows
    assert [b["bucket"] for b in shown["auc_by_user_degree"]] == ["1-2", "3-5", "6-20", ">20"]
    assert set(shown["auc_by_user_degree"][0]) == {"bucket", "users", "rows", "positive_share", "auc"}
    measured = [b["auc"] for b in shown["auc_by_user_degree"] + shown["auc_by_item_popularity"] if b["rows"]]
    assert measured and all(0 <= a <= 1 for a in measured if a is not None)
    text = cli(strata_db, "show", "1", "--no-plot")
    assert "test AUC by stratum, epoch" in text and "items tail" in text and "vs pop" in text


def test_a_pop_run_scores_its_strata_as_the_floor_does(strata_db):
    from workbench.store.repository import Store
    with Store.open(strata_db, readonly=True) as store:
        (floor,) = store.floors().values()
        pop = next(r for r in store.runs() if r.model == "Pop")
    assert pop.strata_dict["auc_by_item_popularity"] == floor["metrics"]["strata"]["auc_by_item_popularity"]
    assert pop.strata_dict["auc_by_user_degree"] == floor["metrics"]["strata"]["auc_by_user_degree"]


def test_compare_strata_and_the_export(strata_db):
    tables = json.loads(cli(strata_db, "compare", "--strata", "--json"))
    (table,) = tables                                             # one split
    groups = {g["label"].split()[0]: g for g in table["groups"]}
    assert groups["tiny"]["n"] == 2 and groups["tiny-pop"]["n"] == 1
    tail = groups["tiny"]["auc"]["auc_items_tail"]
    runs = [json.loads(cli(strata_db, "show", str(i), "--json")) for i in groups["tiny"]["run_ids"]]
    per_run = [next(b["auc"] for b in r["auc_by_item_popularity"] if b["bucket"] == "tail") for r in runs]
    assert tail["mean"] == pytest.approx(np.mean(per_run))
    assert tail["vs_pop"] == pytest.approx(tail["mean"] - table["pop"]["auc_items_tail"])
    assert groups["tiny-pop"]["auc"]["auc_items_tail"]["vs_pop"] == pytest.approx(0.0)
    assert "pop (floor)" in cli(strata_db, "compare", "--strata")
    ranked = json.loads(cli(strata_db, "compare", "--metric", "auc_items_head", "--json"))["groups"]
    assert all("auc_items_head_mean" in g for g in ranked)
    rows = list(csv.DictReader(io.StringIO(cli(strata_db, "export", "--csv", "-"))))
    assert {"auc_users_1-2", "auc_items_tail"} <= set(rows[0])
    assert float(rows[0]["auc_items_tail"]) == pytest.approx(
        next(b["auc"] for b in json.loads(cli(strata_db, "show", rows[0]["run_id"], "--json"))
             ["auc_by_item_popularity"] if b["bucket"] == "tail"))
    groups_csv = list(csv.DictReader(io.StringIO(cli(strata_db, "export", "--groups", "--csv", "-"))))
    assert "auc_items_tail_mean" in groups_csv[0]
    # at an epoch other than the selected one there is no stratum to compare
    res = CliRunner().invoke(app, ["compare", "--strata", "--at", "last", "--db", strata_db])
    assert res.exit_code != 0 and "--strata" in res.output
    # nor one stratum: read at epoch 1 it would average only the runs selected at epoch 1
    for command in (["compare", "--metric", "auc_items_tail", "--at", "1"],
                    ["report", "--metric", "auc_items_tail", "--at", "1", "--out", str(Path(strata_db).parent / "r")]):
        res = CliRunner().invoke(app, [*command, "--db", strata_db])
        assert res.exit_code == 2 and "stored at each run's selected epoch only, so no run has it --at 1" in \
            " ".join(res.output.split()), res.output
    with Store.open(strata_db, readonly=True) as store:       # the points carry none at a numbered epoch,
        runs = store.runs(recipe="tiny")                         # even the selected one of some runs
        assert all(p.strata for p in cmp.points(store, runs, "best"))
        assert not any(p.strata for p in cmp.points(store, runs, runs[0].best_epoch))


def test_the_run_screen_shows_the_strata(strata_db, tmp_path):
    import asyncio

    from workbench.store.repository import Store
    from workbench.tui.screens.detail import RunDetailScreen

    from tui_helpers import make_app, until

    async def body():
        store = Store.open(strata_db)
        app = make_app(store, tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()                     # mounted before the test reaches in
            await until(pilot, lambda: 1 in app.data.runs, 10, "the runs")
            app.push_screen(RunDetailScreen(1))
            await until(pilot, lambda: isinstance(app.screen, RunDetailScreen), 5, "the run detail")
            await pilot.press("s")
            await pilot.pause(0.3)
            assert app.screen.query_one("#detail-tabs").active == "strata"
            svg = app.export_screenshot().replace("&#160;", " ")
            assert "test AUC by stratum" in svg and "users 6-20" in svg and "items head" in svg
        store.close()

    asyncio.run(body())


def test_a_floor_stored_before_the_strata_gains_them_when_compared(strata_db, tmp_path):
    import shutil

    from sqlalchemy import text

    from workbench import analysis
    from workbench.store.repository import Store
    copy = tmp_path / "old.db"
    shutil.copy(strata_db, copy)
    with Store.open(copy) as store:
        ((key, floor),) = store.floors().items()
        old = {k: v for k, v in floor["metrics"].items() if k != "strata"}
        with store.writer.begin() as conn:
            conn.execute(text("UPDATE floors SET metrics = :m"), {"m": json.dumps(old)})
        assert analysis.floors_for(store, store.runs(), compute=False)[key] == old     # shown as stored
        assert analysis.floors_for(store, store.runs())[key]["strata"] == floor["metrics"]["strata"]
        assert store.floors()[key]["metrics"] == floor["metrics"]                     # and kept


def test_runs_with_their_own_buckets_find_the_floor_in_them(strata_db, tmp_path):
    """The floor's strata were stored in the default buckets only, so a run with its own
    ``eval.strata`` showed ``-`` for pop in each of its buckets."""
    import shutil

    from sqlalchemy import text

    from workbench import analysis
    from workbench.store.repository import Store
    db = tmp_path / "own.db"
    shutil.copy(strata_db, db)
    recipe = tmp_path / "pop-1-10.yaml"
    recipe.write_text(tiny_recipe("pop-1-10", epochs=1, model="name: pop").replace(
        "eval: {n_eval: 2}", "eval: {n_eval: 2, strata: [1, 10]}"))
    res = CliRunner().invoke(app, ["run", str(recipe), "--db", str(db)])
    assert res.exit_code == 0, res.output
    with Store.open(db) as store:
        ((key, floor),) = store.floors().items()
        pop = max(store.runs(), key=lambda r: r.id)
        buckets = {b["bucket"]: b for b in floor["metrics"]["strata"]["auc_by_user_degree"]}
        assert {"1-2", "3-5", "6-20", ">20", "1", "2-10", ">10"} <= set(buckets)    # the default ones kept
        assert pop.strata_dict["auc_by_user_degree"] == [buckets[n] for n in ("1", "2-10", ">10")]
        # a floor stored before, in the default buckets only, gains a run's own when compared
        default = {**floor["metrics"], "strata": {**floor["metrics"]["strata"], "auc_by_user_degree": [
            buckets[n] for n in ("1-2", "3-5", "6-20", ">20")]}}
        with store.writer.begin() as conn:
            conn.execute(text("UPDATE floors SET metrics = :m"), {"m": json.dumps(default)})
        assert analysis.floors_for(store, store.runs())[key] == floor["metrics"]
        assert store.floors()[key]["metrics"] == floor["metrics"]
    table = json.loads(cli(str(db), "compare", "--strata", "--json"))[0]
    assert table["pop"]["auc_users_2-10"] == buckets["2-10"]["auc"]
