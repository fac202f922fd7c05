"""Preprocessing invariants: the split, the graph, reachability, the table, the cache."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from kni_core.config import DatasetConfig, ModelConfig, RunConfig
from kni_core.data import prepare
from kni_core.data.prepare import build, fixed_degree_table, kg_edges, reachable, split_ratings
from kni_core.data.raw import RawDataset
from kni_core.data.synthetic import generate, spec_from_params


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KNI_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def synthetic_config(**model) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1,
                                           synthetic={"preset": "tiny"}),
                     model=ModelConfig(max_degree=8, **model)).validate()


def test_split_sizes_reproducible_and_users_without_train_positive_dropped():
    rng = np.random.default_rng(1)
    ratings = np.column_stack([rng.integers(0, 50, 1000), rng.integers(0, 80, 1000), rng.integers(0, 2, 1000)])
    ratings[ratings[:, 0] == 7, 2] = 0           # user 7 never has a positive
    train, valid, test = split_ratings(ratings, [0.6, 0.2, 0.2], seed=3)
    again = split_ratings(ratings, [0.6, 0.2, 0.2], seed=3)
    other = split_ratings(ratings, [0.6, 0.2, 0.2], seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, valid, test), again))
    assert not np.array_equal(valid, other[1])
    dropped = 1000 - len(train) - len(valid) - len(test)
    kept_users = set(np.unique(train[train[:, 2] == 1, 0]))
    assert 7 not in kept_users
    assert {int(u) for part in (train, valid, test) for u in part[:, 0]} <= kept_users
    assert dropped == sum(int(~np.isin(r, list(kept_users))) for r in ratings[:, 0])
    assert abs(len(valid) + len(test) + len(train) + dropped - 1000) == 0
    assert 180 <= len(valid) <= 200 and 180 <= len(test) <= 200


def test_relation_filter_and_reachability():
    kg = np.array([[0, 0, 5], [1, 0, 6], [5, 0, 7], [2, 1, 8]])   # relation 1 has one triple
    edges = kg_edges(kg, min_triples=2)
    assert edges.tolist() == [[0, 5], [1, 6], [5, 7]]
    mask = reachable(10, edges, seeds=np.array([0]), hops=1)
    assert np.flatnonzero(mask).tolist() == [0, 5]
    mask = reachable(10, edges, seeds=np.array([0]), hops=2)
    assert np.flatnonzero(mask).tolist() == [0, 5, 7]
    mask = reachable(10, edges, seeds=np.array([7]), hops=2)     # undirected
    assert np.flatnonzero(mask).tolist() == [0, 5, 7]


@pytest.mark.parametrize("leaves", [128, 200, 256, 300])
def test_reachability_counts_hubs_with_hundreds_of_frontier_neighbours(leaves):
    # Every leaf is a seed and all of them link to one hub: the hub has `leaves` neighbours in
    # the frontier. Counting them in int8 wrapped to <= 0 and lost the hub.
    hub = leaves + 1
    edges = np.array([[leaf, hub] for leaf in range(1, leaves + 1)] + [[hub, hub + 1]])
    mask = reachable(hub + 3, edges, seeds=np.arange(1, leaves + 1), hops=2)
    assert mask[hub] and mask[hub + 1] and not mask[hub + 2]


def test_ripplenet_split_draws_validation_then_test_from_the_rest_as_legacy_numpy_does():
    n = 1000
    ratings = np.column_stack([np.arange(n) % 40, np.arange(n), np.ones(n, dtype=np.int64)])
    train, valid, test = split_ratings(ratings, [0.6, 0.2, 0.2], seed=555, method="ripplenet")
    # The original's procedure, stated independently: RandomState.choice without replacement
    # from the list of all rows, then from the sorted remaining rows.
    rs = np.random.RandomState(555)
    expect_valid = rs.choice(list(range(n)), size=200, replace=False)
    left = sorted(set(range(n)) - set(expect_valid.tolist()))
    expect_test = rs.choice(left, size=200, replace=False)
    expect_train = sorted(set(left) - set(expect_test.tolist()))
    assert valid[:, 1].tolist() == expect_valid.tolist()
    assert test[:, 1].tolist() == expect_test.tolist()
    assert train[:, 1].tolist() == expect_train
    other = split_ratings(ratings, [0.6, 0.2, 0.2], seed=555, method="permutation")
    assert sorted(other[1][:, 1].tolist()) != sorted(valid[:, 1].tolist())


def test_fixed_degree_table_rich_poor_isolated():
    rows, cols = [], []
    rich = list(range(10, 30))                   # node 1: 20 neighbours
    poor = [4, 9]                                 # node 2: 2 neighbours
    for node, ns in ((1, rich), (2, poor)):
        rows += [node] * len(ns)
        cols += ns
    adj = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(30, 30))
    table = fixed_degree_table(adj, max_degree=8, seed=0)
    assert table.shape == (30, 8) and table.dtype == np.int32
    assert len(set(table[1].tolist())) == 8 and set(table[1].tolist()) <= set(rich)
    assert set(table[2].tolist()) <= set(poor)
    assert not table[3].any()                      # isolated -> padding
    assert np.array_equal(table, fixed_degree_table(adj, max_degree=8, seed=0))


def test_graph_holds_training_positives_only():
    cfg = synthetic_config()
    raw = generate(spec_from_params({"preset": "tiny"}))
    data = build(raw, cfg)
    n_users = int(np.max(data.train[:, 0])) + 1
    train_pos = {(u, i) for u, i, y in data.train.tolist() if y == 1}
    # A user's only neighbours are items it liked in training (users are not KG entities).
    for user in np.unique(data.train[:, 0]):
        linked = {int(i) for i in data.adjacency[user] if i}
        assert all((int(user), i) in train_pos for i in linked)
    held_out = {(u, i) for part in (data.valid, data.test) for u, i, y in part.tolist() if y == 1} - train_pos
    assert held_out, "the tiny dataset should hold out some positives"
    for u, i in held_out:
        assert i not in set(data.adjacency[u].tolist())
    assert data.stats["train"] + data.stats["valid"] + data.stats["test"] <= len(raw.ratings)
    assert n_users - 1 == data.stats["users"]


def test_ni_graph_has_no_kg_entities():
    kni = build(generate(spec_from_params({"preset": "tiny"})), synthetic_config(kg=True))
    ni = build(generate(spec_from_params({"preset": "tiny"})), synthetic_config(kg=False))
    assert ni.stats["kg_edges"] == 0 and kni.stats["kg_edges"] > 0
    assert ni.n_entity < kni.n_entity
    assert ni.n_entity - 1 == ni.stats["users"] + ni.stats["items"]


def test_unified_ids_padding_users_then_items():
    ratings = np.array([[0, 0, 1], [0, 1, 0], [1, 1, 1], [1, 0, 0]] * 5)
    raw = RawDataset.from_arrays(ratings, np.array([[0, 0, 2], [1, 0, 2]] * 3))
    cfg = RunConfig(dataset=DatasetConfig(name="x", split=[1.0, 0.0, 0.0], min_relation_triples=1),
                    model=ModelConfig(max_degree=4)).validate()
    data = build(raw, cfg)
    assert data.n_entity == 1 + 2 + 3           # padding, 2 users, 2 items + 1 KG entity
    assert set(data.train[:, 0].tolist()) == {1, 2} and set(data.train[:, 1].tolist()) == {3, 4}
    assert set(data.adjacency[5].tolist()) == {3, 4}    # the KG entity links both items
    assert data.threshold == pytest.approx(0.5)


def test_cache_is_reused_and_keyed_by_settings(cache):
    cfg = synthetic_config()
    first = prepare(cfg)
    second = prepare(cfg)
    assert not first.from_cache and second.from_cache
    assert np.array_equal(first.adjacency, second.adjacency)
    assert np.array_equal(first.test, second.test)
    other = prepare(RunConfig(dataset=cfg.dataset, model=ModelConfig(max_degree=4)).validate())
    assert not other.from_cache and other.adjacency.shape[1] == 4
    assert len(list((cache / "prepared").iterdir())) == 2
