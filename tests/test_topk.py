"""Top-N metrics on hand-computed cases, the protocols' users and candidates, the trainer's hook
(the selected epoch's weights), the store's topk table, and compare / show / export of them."""

from __future__ import annotations

import csv
import io
import json
import math
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from kni_core.config import (
    DatasetConfig,
    EvalConfig,
    MFConfig,
    ModelConfig,
    RunConfig,
    TopKConfig,
    TrainConfig,
)
from kni_core.data import prepare
from kni_core.data.prepare import PreparedData
from kni_core.results import EpochResult, TopKResult
from kni_core.topk import TopKEvaluator, full_metrics, ranked_hits, sampled_metrics
from kni_core.train import Trainer
from workbench import analysis as cmp
from workbench.cli import app
from workbench.recipe import parse_recipe
from workbench.runs.provenance import Code
from workbench.runs.rows import new_run
from workbench.store import migrations
from workbench.store.repository import Store
from workbench.store.schema import TopKRow
from workbench.store.statuses import COMPLETED

LOG2_3 = math.log2(3)


# --------------------------------------------------------------------------------------------
# metrics by hand


def test_sampled_metrics_average_over_users_and_f1_of_the_means():
    # user A: 2 relevant, hits at ranks 1 and 3; user B: 1 relevant, hit at rank 4
    hits = np.array([[1, 0, 1, 0], [0, 0, 0, 1]], dtype=bool)
    m = sampled_metrics(hits, np.array([2, 1]), [1, 2, 4])
    assert m["precision@1"] == pytest.approx(0.5) and m["recall@1"] == pytest.approx(0.25)
    assert m["f1@1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)          # MKR: F1 of the averages
    assert (m["precision@2"], m["recall@2"], m["f1@2"]) == pytest.approx((0.25, 0.25, 0.25))
    assert m["precision@4"] == pytest.approx((2 / 4 + 1 / 4) / 2) and m["recall@4"] == pytest.approx(1.0)
    assert m["f1@4"] == pytest.approx(2 * 0.375 / 1.375)
    assert sampled_metrics(np.zeros((1, 2), bool), np.array([1]), [2])["f1@2"] == 0.0   # no 0/0


def test_full_metrics_recall_and_ndcg():
    # user A: 2 relevant, hits at ranks 1, 3; user B: 3 relevant, one hit at rank 2
    hits = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
    m = full_metrics(hits, np.array([2, 3]), [1, 3])
    assert m["full_recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["full_ndcg@1"] == pytest.approx((1.0 + 0.0) / 2)
    ndcg_a = (1 + 1 / 2) / (1 + 1 / LOG2_3)                           # IDCG over min(2, 3) hits
    ndcg_b = (1 / LOG2_3) / (1 + 1 / LOG2_3 + 1 / 2)
    assert m["full_ndcg@3"] == pytest.approx((ndcg_a + ndcg_b) / 2)
    assert m["full_recall@3"] == pytest.approx((1 + 1 / 3) / 2)


def test_ranking_excludes_training_items_and_breaks_ties_by_item_order():
    scores = np.array([[0.9, 0.5, 0.9, 0.7, 0.1],
                       [0.5, 0.5, 0.5, 0.5, 0.5]])
    excluded = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=bool)
    relevant = np.array([[1, 0, 1, 0, 1], [0, 1, 0, 0, 1]], dtype=bool)
    hits = ranked_hits(scores, excluded, relevant, depth=5)
    # row 0: item 0 excluded (relevant but a training item: never a hit); order 2, 3, 1, 4
    assert hits[0].tolist() == [True, False, False, True, False]
    # row 1: all tied: items 0, 1, 2, 3 in order; item 4 excluded (relevant, never a hit)
    assert hits[1].tolist() == [False, True, False, False, False]


# --------------------------------------------------------------------------------------------
# the protocols on a hand-made dataset

def hand_data() -> PreparedData:
    """Users 1..4, items 5..9. User 4 has no test positive; user 3's only test row is negative."""
    train = np.array([[1, 5, 1], [1, 6, 0], [2, 7, 1], [3, 5, 1], [4, 8, 1]])
    test = np.array([[1, 7, 1], [1, 9, 1], [2, 5, 1], [2, 6, 0], [3, 9, 0]])
    valid = np.array([[4, 9, 1]])
    return PreparedData(train, valid, test, np.zeros((10, 0), np.int32), 10, n_users=4,
                        items=np.array([5, 6, 7, 8, 9]))


def test_evaluator_users_candidates_and_metrics_by_hand():
    cfg = TopKConfig(enabled=True, users=100, k=[1, 2], full_k=[2])
    ev = TopKEvaluator(hand_data(), cfg)
    assert ev.eligible.tolist() == [1, 2] and ev.sampled_users.tolist() == [1, 2]
    # scores by item (5..9): training items get the top scores and must be skipped
    table = {1: [0.99, 0.98, 0.3, 0.1, 0.6], 2: [0.2, 0.8, 0.99, 0.5, 0.1]}
    calls = []

    def score(users, items, seed):
        calls.append((users.tolist(), items.tolist()))
        return np.array([table[u] for u in users])

    sampled, full = ev.run(score, epoch=3, n_eval=1)
    assert calls[0] == ([1, 2], [5, 6, 7, 8, 9])
    # user 1: candidates 7, 8, 9 -> ranked 9 (0.6), 7 (0.3), 8: relevant {7, 9} -> hits [1, 1]
    # user 2: candidates 5, 6, 8, 9 -> ranked 6 (0.8), 8 (0.5), 5 (0.2), 9: relevant {5} -> [0, 0]
    assert sampled.metrics["precision@1"] == pytest.approx(0.5)
    assert sampled.metrics["recall@2"] == pytest.approx((1.0 + 0.0) / 2)
    assert (sampled.protocol, sampled.epoch, sampled.users, sampled.n_eval) == ("sampled", 3, 2, 1)
    assert full.protocol == "full" and full.metrics["full_recall@2"] == pytest.approx(0.5)
    assert full.metrics["full_ndcg@2"] == pytest.approx((1.0 + 0.0) / 2)


def test_full_exclude_valid_removes_the_users_validation_items_from_the_full_ranking():
    """Off (the default): the full ranking keeps the user's validation items as candidates, so a
    validation positive ranked first takes a test positive's place; on: they are not candidates.
    The sampled protocol (KGCN's) keeps them either way."""
    base = hand_data()
    data = PreparedData(base.train, np.array([[1, 8, 1], [2, 9, 0], [4, 9, 1]]), base.test, base.adjacency, 10,
                        n_users=4, items=base.items)
    # by item (5..9); user 1's validation positive 8 scores highest of its candidates
    table = {1: [0.99, 0.98, 0.3, 0.95, 0.6], 2: [0.2, 0.8, 0.99, 0.5, 0.1]}

    def score(users, items, seed):
        return np.array([table[u] for u in users])

    def metrics(**option):
        ev = TopKEvaluator(data, TopKConfig(enabled=True, k=[2], full_k=[2], **option))
        return [r.metrics for r in ev.run(score, epoch=1, n_eval=1)]

    sampled, full = metrics()
    # user 1: candidates 7, 8, 9 ranked 8, 9, 7 (relevant 7, 9): 1 of 2 in the top 2; user 2: 6, 8 (relevant 5): 0
    assert full["full_recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert metrics(full_exclude_valid=False) == [sampled, full]
    sampled_ex, full_ex = metrics(full_exclude_valid=True)
    # user 1: 8 removed, ranked 9, 7: both relevant; user 2: 9 removed, still 6, 8 first
    assert full_ex["full_recall@2"] == pytest.approx((1.0 + 0) / 2)
    assert sampled_ex == sampled


def test_with_full_exclude_valid_no_candidate_is_a_validation_item():
    data = prepare(tiny().validate())
    ev = TopKEvaluator(data, TopKConfig(enabled=True, full_exclude_valid=True))
    users = ev.full_users
    valid = ev.valid[users].toarray()                                 # each user's validation items
    assert valid.any() and len(data.valid)
    scores = np.random.default_rng(0).random(valid.shape)
    everything = valid.shape[1]
    # ranked to the end, no candidate of the full ranking is a validation item of its user ...
    assert not ranked_hits(scores, ev.excluded(users, exclude_valid=True), valid, everything).any()
    # ... while without the option (the sampled protocol's candidates) they are candidates, and
    # the training items are excluded either way
    assert ranked_hits(scores, ev.excluded(users), valid, everything).sum() == (valid & ~ev.excluded(users)).sum()
    assert (ev.excluded(users, exclude_valid=True) >= ev.train[users].toarray()).all()


def test_user_samples_are_seeded_and_capped():
    rng = np.random.default_rng(0)
    users, items = np.arange(1, 201), np.arange(201, 301)
    train = np.column_stack([users, rng.choice(items, 200), np.ones(200, int)])
    test = np.column_stack([users, rng.choice(items, 200), (users % 4 != 0).astype(int)])
    data = PreparedData(train, test[:0], test, np.zeros((301, 0), np.int32), 301, n_users=200, items=items)
    cfg = TopKConfig(enabled=True, users=20, seed=7, full_users=50)
    a, b = TopKEvaluator(data, cfg), TopKEvaluator(data, cfg)
    assert len(a.eligible) == 150                                     # users with a test positive
    assert len(a.sampled_users) == 20 and set(a.sampled_users) <= set(a.eligible)
    assert np.array_equal(a.sampled_users, b.sampled_users) and len(a.full_users) == 50
    other = TopKEvaluator(data, TopKConfig(enabled=True, users=20, seed=8))
    assert not np.array_equal(a.sampled_users, other.sampled_users)
    assert np.array_equal(other.full_users, other.eligible)          # full_users 0: every one


# --------------------------------------------------------------------------------------------
# the trainer's hook


def tiny(model=None, **topk) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "tiny"}),
                     model=model or MFConfig(dim=4), train=TrainConfig(epochs=3, lr=0.05, batch_size=64,
                                                                     patience=0, select_on="test"),
                     eval=EvalConfig(n_eval=2, topk=TopKConfig(enabled=True, k=[1, 5, 10], full_k=[5, 10], **topk)))


def test_topk_runs_once_with_the_selected_epochs_weights(tmp_path):
    cfg = tiny().validate()
    data = prepare(cfg)
    trainer = Trainer(cfg, data, checkpoint=tmp_path / "best.pt")
    results = list(trainer.fit())
    assert all(not r.topk for r in results)                          # not every epoch
    best = trainer.summary.best
    assert [t.protocol for t in best.topk] == ["sampled", "full"]
    assert all(t.epoch == best.epoch == trainer.summary.best_epoch for t in best.topk)
    # the same metrics from a fresh trainer given the checkpoint (the best epoch's weights)
    fresh = Trainer(cfg, data)
    fresh.model.load_state_dict(torch.load(tmp_path / "best.pt", weights_only=False)["model"])
    from kni_core.topk import TopKHook
    again = TopKHook(fresh).evaluate(best.epoch)
    assert [t.metrics for t in again] == [t.metrics for t in best.topk]
    assert best.topk[0].n_eval == 1                                   # MF does not sample


def test_topk_every_epoch_and_the_selected_one_reused():
    cfg = tiny(every=1).validate()
    data = prepare(cfg)
    trainer = Trainer(cfg, data)
    results = list(trainer.fit())
    assert all(len(r.topk) == 2 and r.topk[0].epoch == r.epoch for r in results)
    best = trainer.summary.best
    assert best.topk == results[best.epoch - 1].topk                  # reused, not recomputed


def test_kni_topk_averages_n_eval_sampled_passes():
    cfg = tiny(ModelConfig(max_degree=8), n_eval=3, full=False).validate()
    cfg.train.epochs = 1
    trainer = Trainer(cfg, prepare(cfg))
    list(trainer.fit())
    (sampled,) = trainer.summary.best.topk
    assert sampled.n_eval == 3 and sampled.protocol == "sampled"
    assert 0.0 <= sampled.metrics["recall@10"] <= 1.0


# --------------------------------------------------------------------------------------------
# store, compare, show, export

RECIPE = """\
name: {name}
dataset: {{name: synthetic, min_relation_triples: 1, synthetic: {{preset: tiny}}}}
model: {{name: mf, dim: 4}}
train: {{epochs: 3}}
eval: {{topk: {{enabled: true}}}}
seeds: [1]
device: cpu
"""


def topk_result(epoch: int, recall20: float, protocol: str = "sampled") -> TopKResult:
    if protocol == "sampled":
        metrics = {"precision@20": recall20 / 4, "recall@20": recall20, "f1@20": recall20 / 3}
    else:
        metrics = {"full_recall@20": recall20, "full_ndcg@20": recall20 / 2}
    return TopKResult(protocol, epoch, 100, 0, 1, 1.5, metrics)


def add_run(store: Store, seed: int, aucs: list[float], best: int, recall20: float | None, name="mf") -> int:
    rec = parse_recipe(RECIPE.format(name=name))
    run_id = store.create_run(new_run(rec.name, rec.text, rec.config_for(seed), prov=Code("0", "abc")))
    store.claim(run_id, os.getpid(), "testhost")
    results = [EpochResult(seed, e, 0.5, a, 0.6, 0.6, a, 0.6, 0.6, 1.0, 0.5) for e, a in enumerate(aucs, 1)]
    for r in results:
        store.add_epoch(run_id, r, r)
    chosen = results[best - 1]
    if recall20 is not None:
        import dataclasses
        chosen = dataclasses.replace(chosen, topk=(topk_result(best, recall20), topk_result(best, recall20 / 2, "full")))
    store.finish(run_id, COMPLETED, best=chosen, stopped_early=False)
    return run_id


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "runs.db")
    yield s
    s.close()


def test_store_writes_topk_with_the_epoch_and_the_end_and_deletes_them(store):
    run = add_run(store, 1, [0.6, 0.7], best=2, recall20=0.2)
    rows = store.topk(run)
    assert [(t.epoch, t.protocol) for t in rows] == [(2, "sampled"), (2, "full")]
    assert rows[0].metrics == {"precision@20": 0.05, "recall@20": 0.2, "f1@20": 0.2 / 3}
    assert (rows[0].users, rows[0].seed, rows[0].n_eval, rows[0].seconds) == (100, 0, 1, 1.5)
    # every-N results arrive with their epoch row; the end's copy of the same epoch replaces it
    other = add_run(store, 2, [0.6], best=1, recall20=None)
    store.add_epoch(other, EpochResult(2, 2, 0.5, 0.7, 0.6, 0.6, 0.7, 0.6, 0.6, 1.0, 0.5,
                                       topk=(topk_result(2, 0.1),)), None)
    assert [(t.epoch, t.metrics["recall@20"]) for t in store.topk(other)] == [(2, 0.1)]
    assert store.delete([run]) == 1 and store.topk(run) == []
    assert store.topk_of([other])[other][0].protocol == "sampled"


def test_migration_from_version_2_adds_the_topk_table(tmp_path):
    from sqlalchemy import create_engine, inspect, text
    path = tmp_path / "v2.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for version, _what, step in migrations.MIGRATIONS:
            if version <= 2:
                step(conn)
        conn.execute(text("INSERT INTO meta VALUES ('schema_version', '2')"))
    assert "topk" not in inspect(engine).get_table_names()
    engine.dispose()
    with Store.open(path) as s:
        assert s.schema_version() == migrations.SCHEMA_VERSION
        run = add_run(s, 1, [0.6], best=1, recall20=0.3)
        assert s.topk(run)[0].metrics["recall@20"] == 0.3
    engine = create_engine(f"sqlite:///{path}")
    cols = {c["name"] for c in inspect(engine).get_columns("topk")}
    assert cols == {c.name for c in TopKRow.__table__.columns}
    engine.dispose()


def test_compare_ranks_by_a_topk_metric_at_the_chosen_epoch(store):
    a = [add_run(store, s, [0.6, 0.7], best=2, recall20=r, name="a") for s, r in ((1, 0.2), (2, 0.4))]
    for s in (1, 2):
        add_run(store, s, [0.6, 0.7], best=2, recall20=0.1, name="b")
    add_run(store, 3, [0.6, 0.7], best=2, recall20=None, name="b")     # no top-N: missing, not zero
    assert cmp.check_metric("recall@20") and cmp.check_metric("full_ndcg@10")
    for bad in ("recall@0", "recall@x", "ndcg@10", "Recall@20"):
        with pytest.raises(cmp.CompareError):
            cmp.check_metric(bad)
    pts = cmp.points(store, store.runs(), "best")
    groups = {g.distinct("recipe"): g for g in cmp.group_points(pts, "recipe")}
    assert groups["a"].stat("recall@20") == pytest.approx((0.3, math.sqrt(0.02)))
    assert groups["b"].stat("recall@20")[0] == pytest.approx(0.1) and groups["b"].n == 3
    assert groups["a"].stat("full_recall@20")[0] == pytest.approx(0.15)
    last = cmp.points(store, store.runs(ids=a), 1)                    # epoch 1 has no top-N
    assert all(p.value("recall@20") is None for p in last)
    by_config = cmp.group_points(pts, "config")
    paired = cmp.paired_test(cmp.resolve_group(by_config, "a"), cmp.resolve_group(by_config, "b"), "recall@20")
    assert paired.seeds == [1, 2] and paired.diff == pytest.approx(0.2)

    runner = CliRunner()
    out = runner.invoke(app, ["compare", "--all", "--group-by", "recipe", "--metric", "recall@20", "--json",
                              "--db", store.url])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert [g["group"] for g in data["groups"]] == ["a", "b"]         # ranked by recall@20
    assert data["groups"][0]["recall@20_mean"] == pytest.approx(0.3)
    out = runner.invoke(app, ["compare", "--all", "--metric", "recall@0", "--db", store.url])
    assert out.exit_code == 2 and "top-N metric" in out.output


def test_a_mean_over_fewer_runs_than_its_group_says_so_or_is_refused(store, tmp_path):
    """Top-N is measured at each run's selected epoch: read at epoch 2, the seed selected at
    epoch 1 has none, and the mean is over 2 of the group's 3 runs."""
    for seed, best in ((1, 2), (2, 2), (3, 1)):
        add_run(store, seed, [0.6, 0.7], best=best, recall20=0.1 * seed)
    run = lambda *a: CliRunner().invoke(app, [*a, "--db", store.url], env={"COLUMNS": "250"})  # noqa: E731
    table = run("compare", "--all", "--metric", "recall@20", "--at", "2")
    assert table.exit_code == 0, table.output
    assert "0.1500±0.0707 (2/3)" in table.stdout
    assert "(k/n): a mean over the k of the group's n runs that have the metric" in " ".join(table.stdout.split())
    assert "(2/3)" not in run("compare", "--all", "--metric", "recall@20").stdout      # --at best: all three
    matrix = run("compare", "--all", "--matrix", "--metric", "recall@20", "--at", "2").stdout
    assert "(2 of 3)" in matrix
    report = run("report", "--all", "--metric", "recall@20", "--at", "2", "--out", str(tmp_path / "r"))
    assert report.exit_code == 2
    assert "recall@20 at --at 2: run(s) 3 of " in report.output and "over 2 of its 3 runs" in report.output
    assert run("report", "--all", "--metric", "recall@20", "--out", str(tmp_path / "r")).exit_code == 0


def test_export_and_show_include_topk(store, tmp_path):
    run = add_run(store, 1, [0.6, 0.7], best=2, recall20=0.2)
    add_run(store, 2, [0.6, 0.7], best=2, recall20=None)
    runner = CliRunner()
    out = runner.invoke(app, ["export", "--csv", "-", "--db", store.url])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    header = out.stdout.splitlines()[0].split(",")
    assert header[:len(cmp.RUN_COLUMNS)] == list(cmp.RUN_COLUMNS)
    assert header[len(cmp.RUN_COLUMNS):] == ["precision@20", "recall@20", "f1@20", "full_recall@20", "full_ndcg@20"]
    assert float(rows[0]["recall@20"]) == 0.2 and rows[1]["recall@20"] == ""
    out = runner.invoke(app, ["export", "--groups", "--csv", "-", "--db", store.url])
    header = out.stdout.splitlines()[0].split(",")
    assert header[-2:] == ["full_ndcg@20_mean", "full_ndcg@20_std"] and "recall@20_mean" in header

    out = runner.invoke(app, ["show", str(run), "--no-plot", "--db", store.url])
    assert out.exit_code == 0, out.output
    assert "top-N, KGCN/MKR protocol, epoch 2 (the selected epoch): 100 users" in out.stdout
    assert "top-N, full ranking" in out.stdout
    data = json.loads(runner.invoke(app, ["show", str(run), "--json", "--db", store.url]).stdout)
    assert [t["protocol"] for t in data["topk"]] == ["sampled", "full"]
    assert data["topk"][0]["metrics"]["recall@20"] == 0.2


def test_tui_run_detail_plots_recall_at_k(tmp_path, monkeypatch):
    import asyncio
    import time as _time

    from workbench.tui.app import WorkbenchApp
    from workbench.tui.screens.detail import RunDetailScreen

    monkeypatch.chdir(tmp_path)
    store = Store.open("runs.db")
    with_topk = add_run(store, 1, [0.6, 0.7], best=2, recall20=0.25)
    without = add_run(store, 2, [0.6, 0.7], best=2, recall20=None)
    (tmp_path / "recipes").mkdir()

    async def until(pilot, predicate, what):
        end = _time.monotonic() + 10
        while _time.monotonic() < end and not predicate():
            await pilot.pause(0.1)
        assert predicate(), f"timed out waiting for {what}"

    async def body():
        app = WorkbenchApp(store, tmp_path / "recipes", gpus=[])
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()                     # mounted before the test reaches in
            for run_id, has in ((with_topk, True), (without, False)):
                app.query_one("#main-tabs").active = "runs"
                await until(pilot, lambda: run_id in app.data.runs, "the runs")
                app.query_one("#runs-pane").select_run(run_id)
                await pilot.press("enter")
                await until(pilot, lambda: isinstance(app.screen, RunDetailScreen), "the run detail")
                if has:
                    await until(pilot, lambda: bool(app.screen.query("#topk")), "the Top-N tab")
                    await pilot.press("k")
                    await pilot.pause(0.3)
                    assert app.screen.query_one("#detail-tabs").active == "topk"
                    svg = app.export_screenshot().replace("&#160;", " ")
                    assert "Recall@K at epoch 2" in svg and "sampled (100 users)" in svg
                    assert "recall" in svg and "0.2500" in svg
                else:
                    await pilot.pause(0.5)
                    await pilot.press("k")                     # no results: stays, says so
                    await pilot.pause(0.2)
                    assert not app.screen.query("#topk")
                    assert app.screen.query_one("#detail-tabs").active == "plots"
                await pilot.press("escape")

    asyncio.run(body())
    store.close()


def test_full_exclude_valid_off_keeps_the_hash_of_configs_stored_before_it():
    """Runs with top-N on, stored before the key existed, keep their group: new seeds join it."""
    from kni_core.config import RunConfig, canonical
    d = RunConfig().to_dict()
    d["eval"]["topk"]["enabled"] = True
    before = {**d, "eval": {**d["eval"], "topk": {k: v for k, v in d["eval"]["topk"].items()
                                                  if k != "full_exclude_valid"}}}
    assert canonical(before) == canonical(d)
    assert RunConfig.from_dict(before).config_hash() == RunConfig.from_dict(d).config_hash()
    d["eval"]["topk"]["full_exclude_valid"] = True
    assert RunConfig.from_dict(d).config_hash() != RunConfig.from_dict(before).config_hash()
