"""Preprocessing invariants: the split, the graph, reachability, the table, the cache."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from kni_core.config import DatasetConfig, ModelConfig, RunConfig
from kni_core.data import prepare
from kni_core.data.prepare import (
    build,
    fixed_degree_table,
    kg_edges,
    reachable,
    split_ratings,
)
from kni_core.data.raw import RawDataset
from kni_core.data.synthetic import generate, spec_from_params
from kni_core.errors import ConfigError, DataError


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
    cfg = RunConfig(dataset=DatasetConfig(name="x", split=[1.0, 0.0, 0.0], min_relation_triples=1),   # all in
                    model=ModelConfig(max_degree=4))                         # training: build() takes it
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


# -- refusing data that cannot give metrics, saying when the KG vanishes ---------------------------

def folder_config(folder, **dataset) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(path=str(folder), min_relation_triples=1, **dataset),
                     model=ModelConfig(max_degree=4)).validate()


def write_folder(folder, rows, kg=((0, 0, 50),)):
    folder.mkdir(exist_ok=True)
    (folder / "ratings_final.txt").write_text("".join(f"{u}\t{i}\t{y}\n" for u, i, y in rows))
    (folder / "kg_final.txt").write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in kg))
    return folder


def mixed_rows(n_users=20, n_items=30):
    rng = np.random.default_rng(0)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, n_users, 400), rng.integers(0, n_items, 400))}
    return [(u, i, (u + i) % 2) for u, i in sorted(pairs)]


@pytest.mark.parametrize("rows, message", [
    ([(u, i, 0) for u, i, _ in mixed_rows()], "the train split is empty: no user has a positive rating"),
    ([(u, i, 1) for u, i, _ in mixed_rows()], "the train split holds only positive labels"),
    ([(0, 1, 1), (0, 2, 0), (0, 3, 1), (0, 4, 0)], "degenerate split"),                       # a single user, 4 rows
    ([(0, 1, 1)] * 40 + [(1, 2, 0)] * 40, "degenerate split"),                               # duplicated rows
])
def test_degenerate_splits_are_refused(tmp_path, cache, rows, message):
    """These used to "complete" with NaN metrics."""
    folder = write_folder(tmp_path / "d", rows)
    with pytest.raises(DataError, match=message) as info:
        prepare(folder_config(folder))
    assert "ratings_final.txt" in str(info.value) and "positive and" in str(info.value)
    assert not (cache / "prepared").exists() or not any((cache / "prepared").iterdir())


def test_every_split_must_be_asked_for(tmp_path, cache):
    """Validation selects the epoch and test reports it: a split without one is refused before
    any data is read (it used to train and report every metric as undefined)."""
    folder = write_folder(tmp_path / "d", mixed_rows())
    with pytest.raises(ConfigError, match=r"dataset\.split: expected three positive fractions .* got \[0\.8, 0\.0, 0\.2\]"):
        folder_config(folder, split=[0.8, 0.0, 0.2])


def test_a_vanishing_knowledge_graph_is_reported(tmp_path, cache, caplog):
    kg = [(i, i % 3, 40 + i % 4) for i in range(12)]                    # 3 relations of 4 triples
    folder = write_folder(tmp_path / "d", mixed_rows(), kg)
    cfg = RunConfig(dataset=DatasetConfig(path=str(folder), min_relation_triples=5),
                    model=ModelConfig(max_degree=4)).validate()
    with caplog.at_level("WARNING"):
        first = prepare(cfg)
    assert first.stats["kg_edges"] == 0
    assert "kg_final.txt: the knowledge graph is dropped: each of its 3 relation(s) has fewer than " \
           "dataset.min_relation_triples = 5 triples (the largest has 4)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        again = prepare(cfg)                                          # from the cache: said again
    assert again.from_cache and "the knowledge graph is dropped" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        prepare(RunConfig(dataset=cfg.dataset, model=ModelConfig(max_degree=4, kg=False)).validate())
    assert "dropped" not in caplog.text                               # NI asks for no KG


def test_renumbering_sparse_ids_changes_no_prepared_array():
    rng = np.random.default_rng(2)
    dense = np.array([(u, i, (u * i) % 2) for u in range(25) for i in range(30) if rng.random() < 0.4])
    kg = np.array([(i, i % 2, 30 + i % 6) for i in range(30)])
    sparse_r, sparse_kg = dense.copy(), kg.copy()
    sparse_r[:, 0] = dense[:, 0] * 10**9 + 3                         # same order, sparse users
    sparse_kg[:, 2] = np.where(kg[:, 2] >= 30, kg[:, 2] * 10**11, kg[:, 2])
    cfg = RunConfig(dataset=DatasetConfig(name="x", min_relation_triples=1), model=ModelConfig(max_degree=4)).validate()
    a = build(RawDataset.from_arrays(dense, kg), cfg)
    b = build(RawDataset.from_arrays(sparse_r, sparse_kg), cfg)
    for name in ("train", "valid", "test", "adjacency"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.n_entity == b.n_entity
    # ... and names every entity by the files' id: a user, an item, a KG entity, a relation
    users = slice(1, a.n_users + 1)
    assert np.array_equal(b.raw_ids[users], a.raw_ids[users] * 10**9 + 3)
    entities = b.raw_ids[a.n_users + 1:]
    assert np.array_equal(entities, np.where(a.raw_ids[a.n_users + 1:] >= 30, a.raw_ids[a.n_users + 1:] * 10**11,
                                             a.raw_ids[a.n_users + 1:]))
    from kni_core.explain import USER, Namer
    assert Namer(b).lookup(USER, int(a.raw_ids[1]) * 10**9 + 3) == 1 == Namer(a).lookup(USER, int(a.raw_ids[1]))
    file_rows = RawDataset.from_arrays(sparse_r, sparse_kg).file_ratings()
    assert np.array_equal(file_rows, sparse_r)


# -- kni data prepare --source: validate everything, then swap -------------------------------------

def test_install_checks_everything_before_replacing_the_copy(tmp_path, cache):
    from kni_core.data.install import install
    from kni_core.errors import DataError as Err
    target = tmp_path / "data" / "mine"
    cfg = folder_config(target)
    good = write_folder(tmp_path / "good", mixed_rows())
    np.save(good / "extra.npy", np.zeros(3))
    first = install(good, cfg)
    assert sorted(p.name for p in target.iterdir()) == ["extra.npy", "kg_final.txt", "ratings_final.txt"]
    assert prepare(cfg).from_cache and np.array_equal(prepare(cfg).test, first.test)    # cached for the copy
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(Err, match="is a file; --source takes the folder that holds the dataset's files"):
        install(good / "kg_final.txt", cfg)
    # bad new data: a KG id far out (used to allocate 931 GiB after overwriting), labels of one kind
    bad = write_folder(tmp_path / "bad", [(u, i, 1) for u, i, _ in mixed_rows()], [(0, 0, 10**12)])
    with pytest.raises(Err, match="degenerate split"):
        install(bad, cfg)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["mine"]          # no staging left behind
    # good new data replaces the whole folder (no stale extra.npy from the old copy)
    other = write_folder(tmp_path / "other", mixed_rows(n_users=15))
    install(other, cfg)
    assert sorted(p.name for p in target.iterdir()) == ["kg_final.txt", "ratings_final.txt"]
    assert (target / "ratings_final.txt").read_bytes() == (other / "ratings_final.txt").read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["mine"]
