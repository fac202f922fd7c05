"""The floors (issue 16): item popularity and ItemKNN, checked on cases small enough to work out
by hand, and run like every model (the same trainer, evaluation, top-N and checkpoints)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from kni_core.config import DatasetConfig, RunConfig, TrainConfig
from kni_core.data import prepare
from kni_core.data.prepare import PreparedData
from kni_core.models.itemknn import ItemKNN, ItemKNNConfig, similarities
from kni_core.models.pop import Pop, PopConfig, fit_calibration, squash
from kni_core.train import Trainer

from helpers import tiny_recipe


def toy(train, n_users: int = 3, n_items: int = 4) -> PreparedData:
    """Entities: 0 padding, users 1..n_users, items after them."""
    rows = np.array(train, dtype=np.int64)
    n_entity = 1 + n_users + n_items
    return PreparedData(rows, rows[:0], rows[:0], np.zeros((n_entity, 0), np.int32), n_entity, n_users=n_users,
                        items=np.arange(1 + n_users, n_entity))


def config(model, **train) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "tiny"}),
                     model=model, train=TrainConfig(epochs=1, patience=0, **train), device="cpu").validate()


# items are entities 4, 5, 6, 7; users 1, 2, 3
TRAIN = [[1, 4, 1], [1, 5, 1], [2, 5, 1], [2, 6, 1], [3, 4, 1], [3, 7, 0], [2, 7, 0], [1, 6, 0]]


def test_popularity_counts_positives_or_net_and_calibrates_monotonically():
    data = toy(TRAIN)
    pop = Pop.build(config(PopConfig()), data)
    assert pop.score[[4, 5, 6, 7]].tolist() == pytest.approx([math.log1p(2), math.log1p(2), math.log1p(1), 0.0])
    net = Pop.build(config(PopConfig(count="net")), data)
    assert net.score[[4, 5, 6, 7]].tolist() == pytest.approx([math.log1p(2), math.log1p(2), 0.0, -math.log1p(2)])
    a, b = pop.calibration.tolist()
    assert a > 0                                 # more positives, higher probability: the ranking is the count's


def test_calibration_is_the_logistic_regression_of_the_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(1.5 * x - 0.5)))).astype(int)
    a, b = fit_calibration(x, y)
    assert a == pytest.approx(1.5, abs=0.15) and b == pytest.approx(-0.5, abs=0.1)
    assert squash(np.array([-3, 0, 3])).tolist() == pytest.approx([-math.log(4), 0, math.log(4)])


def test_item_similarities_by_hand():
    # users 1..3 (rows), items 4..7: user 1 likes 4, 5; user 2 likes 5, 6; user 3 likes 4
    import scipy.sparse as sp
    pos = np.array([[1, 4], [1, 5], [2, 5], [2, 6], [3, 4]])
    x = sp.csr_matrix((np.ones(len(pos)), (pos[:, 0], pos[:, 1])), shape=(8, 8))
    sim = similarities(x, k=10, shrink=0.0).toarray()
    # |U_4| = 2 (users 1, 3), |U_5| = 2 (1, 2), |U_6| = 1 (2); 4 & 5 share user 1, 5 & 6 share user 2
    assert sim[4, 5] == pytest.approx(1 / 2) and sim[5, 6] == pytest.approx(1 / math.sqrt(2))
    assert sim[4, 6] == 0 and sim[4, 4] == 0                          # no self-similarity
    shrunk = similarities(x, k=10, shrink=1.0).toarray()
    assert shrunk[4, 5] == pytest.approx(1 / 3)
    top1 = similarities(x, k=1, shrink=0.0).toarray()
    assert np.count_nonzero(top1[5]) == 1 and top1[5, 6] == pytest.approx(1 / math.sqrt(2))   # 6 beats 4


def test_itemknn_scores_sum_the_similarities_and_fall_back_on_popularity():
    import torch
    # user 4's only positive (item 8) is liked by nobody else: no neighbour, popularity ranks
    data = toy(TRAIN + [[3, 5, 0], [4, 8, 1]], n_users=4, n_items=4)
    model = ItemKNN.build(config(ItemKNNConfig(shrink=0.0)), data)
    a, c, b = model.calibration.tolist()
    # (on nine rows the fitted weights mean little; on bc a, c > 0: docs/results.md)
    pop = model.popularity.numpy()
    logits = model(torch.tensor([1, 4, 4]), torch.tensor([7, 5, 6]))
    # items are 5..8 now; user 1 likes 5 and 6 (and rated 7 negative): score(7) = sim(7, 5) + sim(7, 6)
    sim = model.sim.toarray()
    expected = a * math.log1p(sim[7, 5] + sim[7, 6]) + c * pop[7] + b
    assert logits[0].item() == pytest.approx(expected, rel=1e-5)
    assert logits[1].item() == pytest.approx(c * pop[5] + b, rel=1e-5)        # the popularity fallback
    assert logits[2].item() == pytest.approx(c * pop[6] + b, rel=1e-5)
    full = model.score_matrix(1, torch.tensor([5, 6, 7]))
    assert full.tolist() == pytest.approx(model.scores(torch.tensor([1, 1, 1]), torch.tensor([5, 6, 7])).tolist())


@pytest.mark.parametrize("model", [PopConfig(), PopConfig(count="net"), ItemKNNConfig(shrink=0.0)])
def test_a_floor_fitted_on_noise_predicts_chance_on_held_out_rows(model):
    # labels a coin decides: no count or neighbour predicts them. A training row's own label is
    # in its item's count and its user in the item's co-occurrences; a fit that saw them would
    # be confident on held-out rows (logloss 0.75 for pop, 1.99 for ItemKNN before the fix)
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 400

    def rows(n):
        return np.column_stack([rng.integers(1, n_users + 1, n), rng.integers(n_users + 1, n_users + n_items + 1, n),
                                rng.integers(0, 2, n)])
    train, held_out = rows(3000), rows(3000)
    data = toy(train, n_users=n_users, n_items=n_items)
    built = (Pop if isinstance(model, PopConfig) else ItemKNN).build(config(model), data)
    import torch
    p = built.scores(torch.tensor(held_out[:, 0]), torch.tensor(held_out[:, 1])).numpy().astype(np.float64)
    y = held_out[:, 2]
    logloss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert logloss == pytest.approx(math.log(2), abs=0.005)


def test_itemknn_sees_a_positive_training_row_without_itself():
    from kni_core.models.itemknn import _held_out_scores
    # users 1, 2, 3 like items 4 and 5; user 3 rated 6 negative: |U_4| = |U_5| = 3, co(4, 5) = 3
    data = toy([[1, 4, 1], [1, 5, 1], [2, 4, 1], [2, 5, 1], [3, 4, 1], [3, 5, 1], [3, 6, 0]])
    model = ItemKNN.build(config(ItemKNNConfig(shrink=1.0)), data)
    users, items, labels = data.train[:, 0], data.train[:, 1], data.train[:, 2]
    scores = _held_out_scores(model.interactions, model.sim, 1.0, users, items, labels)
    # without user 1 in U_4: co(4, 5) = 2, |U_4| = 2, |U_5| = 3
    assert scores[0] == pytest.approx(2 / (math.sqrt(2 * 3) + 1))
    assert model.sim[4, 5] == pytest.approx(3 / (3 + 1))                 # the model keeps the full data
    assert scores[6] == 0.0                                              # item 6 has no positive: no neighbour


@pytest.mark.parametrize("model", [PopConfig(), PopConfig(count="net"), ItemKNNConfig(k=20)])
def test_a_floor_runs_like_every_model_and_is_deterministic(model):
    cfg = config(model)
    data = prepare(cfg)
    first = list(Trainer(cfg, data).fit())
    again = list(Trainer(config(model, lr=0.5), data).fit())      # nothing is trained: lr changes nothing
    assert [r.test_auc for r in first] == [r.test_auc for r in again]
    assert 0.5 < first[0].test_auc <= 1.0 and math.isfinite(first[0].test_logloss)


def test_popularity_auc_is_the_ranking_by_count():
    cfg = config(PopConfig())
    data = prepare(cfg)
    (epoch,) = list(Trainer(cfg, data).fit())
    counts = np.bincount(data.train[data.train[:, 2] == 1, 1], minlength=data.n_entity)
    assert epoch.test_auc == pytest.approx(roc_auc_score(data.test[:, 2], counts[data.test[:, 1]]))


# --------------------------------------------------------------------------------------------
# the floor in every comparison


@pytest.fixture(scope="module")
def floor_db(tmp_path_factory):
    """A pop run and an MF run barely trained (so below popularity) on the tiny split."""
    from typer.testing import CliRunner

    from workbench.cli import app
    base = tmp_path_factory.mktemp("floors")
    db = str(base / "runs.db")
    for name, model in (("tiny-pop", "name: pop"), ("tiny-mf", "name: mf, dim: 4")):
        (base / f"{name}.yaml").write_text(tiny_recipe(name, epochs=1, model=model, train="lr: 1.0e-6"))
        res = CliRunner().invoke(app, ["run", str(base / f"{name}.yaml"), "--db", db])
        assert res.exit_code == 0, res.output
    return db


def test_the_first_run_of_a_split_stores_its_floor(floor_db):
    from workbench.store.repository import Store
    with Store.open(floor_db, readonly=True) as store:
        (floor,) = store.floors().values()
        pop = next(r for r in store.runs() if r.model == "Pop")
    assert floor["dataset"] == "synthetic-tiny"
    assert floor["metrics"]["test_auc"] == pytest.approx(pop.best_test_auc)       # the pop run's own numbers


def test_compare_the_matrix_and_the_export_show_each_group_against_the_floor(floor_db):
    import csv
    import io
    import json

    from typer.testing import CliRunner

    from workbench.cli import app
    run = lambda *a: CliRunner().invoke(app, [*a, "--db", floor_db])  # noqa: E731
    groups = {g["model"]: g for g in json.loads(run("compare", "--all", "--json").stdout)["groups"]}
    assert groups["Pop"]["vs_pop_test_auc"] == pytest.approx(0.0)
    assert groups["MF"]["vs_pop_test_auc"] < 0 and groups["MF"]["pop_test_auc"] == groups["Pop"]["test_auc_mean"]
    text = run("compare", "--all").stdout
    assert "vs pop" in text and "▼-" in text
    cells = {c["label"]: c for c in json.loads(run("compare", "--all", "--matrix", "--json").stdout)["matrix"]["cells"]}
    assert cells["MF"]["below_pop"] and not cells["Pop"]["below_pop"]
    assert "pop (floor)" in run("compare", "--all", "--matrix").stdout
    wide = lambda *a: " ".join(run(*a).stdout.split())          # noqa: E731 - the caption wraps with its table
    assert "▼ worse than the popularity floor of its split (below it)" in wide("compare", "--all", "--matrix")
    loss = json.loads(run("compare", "--all", "--matrix", "--metric", "test_logloss", "--json").stdout)
    if any(c["below_pop"] for c in loss["matrix"]["cells"]):        # worse on logloss: above the floor's
        assert "(above it)" in wide("compare", "--all", "--matrix", "--metric", "test_logloss")
    rows = list(csv.DictReader(io.StringIO(run("export", "--groups", "--csv", "-").stdout)))
    assert {"pop_test_auc", "vs_pop_test_auc"} <= set(rows[0])


def test_a_floor_absent_from_the_store_is_computed_on_demand(floor_db, tmp_path):
    import shutil

    from workbench import analysis
    from workbench.store.repository import Store
    copy = tmp_path / "copy.db"
    shutil.copy(floor_db, copy)
    with Store.open(copy) as store:
        stored = store.floors()
        with store.writer.begin() as conn:
            from sqlalchemy import text
            conn.execute(text("DELETE FROM floors"))
        computed = analysis.floors_for(store, store.runs())
    assert set(computed) == set(stored)
    for key, floor in stored.items():
        metrics, got = dict(floor["metrics"]), dict(computed[key])
        assert got.pop("strata") == metrics.pop("strata")       # deterministic: the same buckets and AUCs
        assert got.pop("files") == metrics.pop("files")         # computed from the same source files
        assert got == pytest.approx(metrics)
