"""The baselines' math against hand-computed values (as tests/test_model.py does for KNI), their
structures (ripple sets, sampled neighbours), the prepared data they read and the dispatch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kni_core.config import (
    DatasetConfig,
    EvalConfig,
    KGCNConfig,
    MFConfig,
    ModelConfig,
    RippleNetConfig,
    RunConfig,
    TopKConfig,
    TrainConfig,
    canonical,
    stable_hash,
)
from kni_core.data import prepare
from kni_core.data.prepare import build, kg_triples
from kni_core.data.raw import RawDataset
from kni_core.models import label
from kni_core.models.kgcn import KGCN, sample_neighbours
from kni_core.models.mf import MF
from kni_core.models.ripplenet import RippleNet, ripple_sets
from kni_core.train import Trainer
from workbench.recipe import RecipeError, load_recipe, parse_recipe


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x, axis=-1):
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def bce(logit, label):
    return -(label * np.log(sigmoid(logit)) + (1 - label) * np.log(1 - sigmoid(logit)))


def tiny_config(model, **train) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(name="synthetic", min_relation_triples=1, synthetic={"preset": "tiny"}),
                     model=model, train=TrainConfig(**{"epochs": 2, "lr": 0.01, "batch_size": 64, **train}),
                     eval=EvalConfig(n_eval=1)).validate()


# --------------------------------------------------------------------------------------------
# MF


def test_mf_logit_and_loss_by_hand():
    m = MF(n_entity=4, dim=2, bias=True, l2=0.1)
    E = np.array([[0, 0], [1.0, -0.5], [0.3, 0.2], [-0.4, 0.8]])
    b = np.array([0, 0.1, -0.2, 0.3])
    with torch.no_grad():
        m.embedding.copy_(torch.tensor(E))
        m.entity_bias.copy_(torch.tensor(b))
        m.global_bias.fill_(0.05)
    users, items, labels = torch.tensor([1, 1]), torch.tensor([2, 3]), torch.tensor([1, 0])
    logits = np.array([E[1] @ E[2] + b[1] + b[2] + 0.05, E[1] @ E[3] + b[1] + b[3] + 0.05])
    np.testing.assert_allclose(m(users, items).detach().numpy(), logits, rtol=1e-6)
    l2 = 0.1 * (2 * (E[1] ** 2).sum() + (E[2] ** 2).sum() + (E[3] ** 2).sum()) / 2
    expected = bce(logits, np.array([1, 0])).mean() + l2
    assert m.loss(users, items, labels).item() == pytest.approx(expected, rel=1e-6)
    unbiased = MF(n_entity=4, dim=2, bias=False, l2=0.0)
    with torch.no_grad():
        unbiased.embedding.copy_(torch.tensor(E))
    assert unbiased(users[:1], items[:1]).item() == pytest.approx(E[1] @ E[2], rel=1e-6)


def test_mf_padding_row_is_zero_and_gets_no_gradient():
    torch.manual_seed(0)
    m = MF(n_entity=5, dim=3, bias=False, l2=1.0)
    assert torch.all(m.embedding[0] == 0)
    m.loss(torch.tensor([0, 1]), torch.tensor([2, 0]), torch.tensor([1, 0])).backward()
    assert torch.all(m.embedding.grad[0] == 0) and m.embedding.grad[1].abs().sum() > 0


# --------------------------------------------------------------------------------------------
# RippleNet

# Entity space: 1, 2 users; 3 = item A, 4 = item B, 5..8 KG entities (n_users = 2).
# Directed KG: A -r0-> 5, A -r1-> 6, 5 -r2-> 7, B -r0-> 8.
TRIPLES = np.array([[3, 0, 5], [3, 1, 6], [5, 2, 7], [4, 0, 8]])


def test_ripple_sets_follow_the_original_rules():
    train = np.array([[1, 3, 1], [1, 4, 0], [2, 4, 1]])     # user 1 likes A, user 2 likes B
    mem = ripple_sets(train, TRIPLES, n_users=2, n_hop=2, n_memory=2, seed=0)
    assert mem.shape == (3, 3, 2, 2)
    assert np.all(mem[0] == 0)                               # no user 0: padding
    # user 1, hop 0: A's two out-edges, drawn without replacement (both, in some order)
    hop0 = {tuple(mem[1, :, 0, j]) for j in range(2)}
    assert hop0 == {(3, 0, 5), (3, 1, 6)}
    # hop 1: out-edges of the tails {5, 6}: only 5 -r2-> 7, drawn with replacement
    assert [tuple(mem[1, :, 1, j]) for j in range(2)] == [(5, 2, 7), (5, 2, 7)]
    # user 2: hop 0 B -r0-> 8 twice (with replacement); 8 has no out-edge: hop 1 repeats hop 0
    assert [tuple(mem[2, :, 0, j]) for j in range(2)] == [(4, 0, 8), (4, 0, 8)]
    assert np.array_equal(mem[2, :, 1], mem[2, :, 0])
    # the negatives (user 1 - B) never seed a ripple set; the draw is seeded
    assert np.array_equal(mem, ripple_sets(train, TRIPLES, 2, 2, 2, seed=0))


def test_ripple_sets_keep_multiplicity_of_the_previous_hop():
    """Hop h draws from the out-edges of hop h-1's sampled tails *with* their repeats: a tail
    sampled three times offers its edges three times (the original's list of memories)."""
    triples = np.array([[3, 0, 5], [5, 1, 6], [5, 1, 7]])
    train = np.array([[1, 3, 1]])
    mem = ripple_sets(train, triples, n_users=1, n_hop=2, n_memory=3, seed=1)
    assert mem[1, 2, 0].tolist() == [5, 5, 5]
    # 3 copies x 2 edges = 6 candidates >= 3: without replacement among the 6, so each of
    # 6 and 7 appears at most 3 times
    tails = mem[1, 2, 1].tolist()
    assert set(tails) <= {6, 7} and max(tails.count(6), tails.count(7)) <= 3


@pytest.fixture(params=["gathered", "by relation"])
def relate(request, monkeypatch):
    """Both ways RippleNet computes ``R h``: a matrix gathered per memory (small d) or one
    product per relation (d >= BY_RELATION_FROM): the by-hand tests hold for each."""
    from kni_core.models import ripplenet
    monkeypatch.setattr(ripplenet, "BY_RELATION_FROM", 10 ** 9 if request.param == "gathered" else 1)
    return request.param


def ripple_model(mode="plus_transform", all_hops=True, kge=0.3, l2=0.01):
    train = np.array([[1, 3, 1], [2, 4, 1]])
    mem = ripple_sets(train, TRIPLES, n_users=2, n_hop=2, n_memory=2, seed=0)
    m = RippleNet(n_users=2, n_kg_rows=7, n_relation=3, memories=mem, dim=2, n_hop=2, kge_weight=kge, l2=l2,
                  item_update_mode=mode, using_all_hops=all_hops)
    rng = np.random.default_rng(3)
    E = rng.normal(size=(7, 2))
    E[0] = 0
    R = rng.normal(size=(4, 2, 2))
    R[0] = 0
    T = rng.normal(size=(2, 2))
    with torch.no_grad():
        m.entity.copy_(torch.tensor(E))
        m.relation.copy_(torch.tensor(R))
        m.transform.copy_(torch.tensor(T))
    return m, mem, E, R, T


def ripple_by_hand(mem, E, R, T, user, item, mode, all_hops):
    row = lambda e: e - 2                     # noqa: E731  (entity id -> table row, n_users = 2)
    v = E[row(item)]
    os = []
    for hop in range(2):
        h = E[row(mem[user, 0, hop])]
        r = R[mem[user, 1, hop] + 1]
        t = E[row(mem[user, 2, hop])]
        p = softmax(np.array([v @ r[j] @ h[j] for j in range(2)]))
        o = (p[:, None] * t).sum(0)
        v = {"plus_transform": lambda: (v + o) @ T, "replace": lambda: o, "plus": lambda: v + o,
             "replace_transform": lambda: o @ T}[mode]()
        os.append(o)
    y = os[1] + os[0] if all_hops else os[1]
    return v @ y


@pytest.mark.parametrize("mode,all_hops", [("plus_transform", True), ("replace", True), ("plus", False),
                                           ("replace_transform", True)])
def test_ripplenet_prediction_by_hand(mode, all_hops, relate):
    m, mem, E, R, T = ripple_model(mode, all_hops)
    got = m(torch.tensor([1, 2, 1]), torch.tensor([3, 4, 4])).detach().numpy()
    expected = [ripple_by_hand(mem, E, R, T, u, i, mode, all_hops) for u, i in ((1, 3), (2, 4), (1, 4))]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    for user in (1, 2):                           # scoring a user's every item: the same numbers
        scores = m.score_matrix(user, torch.tensor([3, 4])).numpy()
        np.testing.assert_allclose(scores, sigmoid(np.array([ripple_by_hand(mem, E, R, T, user, i, mode, all_hops)
                                                             for i in (3, 4)])), rtol=1e-5)


def test_ripplenet_loss_by_hand(relate):
    m, mem, E, R, T = ripple_model(kge=0.3, l2=0.01)
    users, items, labels = torch.tensor([1, 2]), torch.tensor([3, 4]), torch.tensor([1, 0])
    logits = np.array([ripple_by_hand(mem, E, R, T, u, i, "plus_transform", True) for u, i in ((1, 3), (2, 4))])
    base = bce(logits, np.array([1, 0])).mean()
    kge, l2 = 0.0, 0.0
    for hop in range(2):
        hrt, sq = [], 0.0
        for u in (1, 2):
            for j in range(2):
                h, r, t = E[mem[u, 0, hop] - 2], R[mem[u, 1, hop, j] + 1], E[mem[u, 2, hop, j] - 2]
                h = h[j]
                hrt.append(sigmoid(h @ r @ t))
                sq += (h ** 2).sum() + (t ** 2).sum() + (r ** 2).sum()
        kge += np.mean(hrt)
        l2 += sq
    expected = base - 0.3 * kge + 0.01 * l2
    assert m.loss(users, items, labels).item() == pytest.approx(expected, rel=1e-5)


def test_ripplenet_relates_by_relation_with_the_gathered_numbers_and_gradients(monkeypatch):
    """At a realistic size (d 16, 20 relations, padding memories among them) the per-relation
    products give the loss and every gradient of the per-memory gather; padding gets none."""
    from kni_core.models import ripplenet
    rng = np.random.default_rng(0)
    n_users, n_kg_rows, n_rel, n_hop, n_mem = 30, 200, 20, 2, 16
    mem = np.stack([rng.integers(n_users + 1, n_users + n_kg_rows, (n_users + 1, n_hop, n_mem)),
                    rng.integers(0, n_rel, (n_users + 1, n_hop, n_mem)),
                    rng.integers(n_users + 1, n_users + n_kg_rows, (n_users + 1, n_hop, n_mem))], axis=1)
    mem[3, 0] = 0                                  # user 3: padding memories (no triple)
    torch.manual_seed(0)
    model = RippleNet(n_users, n_kg_rows, n_rel, mem, dim=16, n_hop=n_hop, kge_weight=0.1, l2=1e-3,
                      item_update_mode="plus_transform", using_all_hops=True).double()
    users = torch.tensor(rng.integers(1, n_users + 1, 64))
    users[:4] = 3
    items = torch.tensor(rng.integers(n_users + 1, n_users + 50, 64))
    labels = torch.tensor(rng.integers(0, 2, 64))

    def loss_and_grads(threshold):
        monkeypatch.setattr(ripplenet, "BY_RELATION_FROM", threshold)
        model.zero_grad()
        loss = model.loss(users, items, labels)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}

    gathered, by_relation = loss_and_grads(10 ** 9), loss_and_grads(1)
    assert by_relation[0] == pytest.approx(gathered[0], rel=1e-12)
    for name, grad in gathered[1].items():
        torch.testing.assert_close(by_relation[1][name], grad, rtol=1e-10, atol=1e-12)
    assert torch.all(by_relation[1]["relation"][0] == 0) and by_relation[1]["relation"].abs().sum() > 0


def test_ripplenet_init_bounds_and_padding(relate):
    torch.manual_seed(0)
    mem = np.zeros((2, 3, 1, 4), dtype=np.int64)
    m = RippleNet(1, 1001, 5, mem, dim=4, n_hop=1, kge_weight=0.0, l2=0.0, item_update_mode="plus",
                  using_all_hops=True)
    assert torch.all(m.entity[0] == 0) and torch.all(m.relation[0] == 0)
    assert m.entity.abs().max() <= np.sqrt(6 / (1000 + 4))
    assert m.relation.abs().max() <= np.sqrt(6 / (2 * 4 * 5)) and m.relation.abs().max() > 0.9 * np.sqrt(6 / 40)
    # a user without memories (all padding) still gets a finite score: o = mean of zero tails
    assert torch.isfinite(m(torch.tensor([1]), torch.tensor([5]))).all()


# --------------------------------------------------------------------------------------------
# KGCN


def test_sample_neighbours_undirected_with_and_without_replacement():
    # rows: 1 hub with 3 neighbours (2, 3, 4); 5 - 6 one edge; 7 isolated
    triples = np.array([[1, 1, 2], [1, 2, 3], [4, 3, 1], [5, 4, 6]])
    ent, rel = sample_neighbours(triples, n_rows=8, k=2, seed=0)
    pairs = {(int(e), int(r)) for e, r in zip(ent[1], rel[1])}
    assert len(pairs) == 2 and pairs <= {(2, 1), (3, 2), (4, 3)}     # distinct: without replacement
    assert ent[4].tolist() == [1, 1] and rel[4].tolist() == [3, 3]   # the tail sees its head
    assert ent[5].tolist() == [6, 6] and ent[6].tolist() == [5, 5]   # one neighbour, repeated
    assert ent[7].tolist() == [0, 0] and rel[7].tolist() == [0, 0]   # isolated: padding
    counts = np.zeros(5)
    for seed in range(200):                                           # every neighbour gets drawn
        e, _ = sample_neighbours(triples, 8, 2, seed)
        for x in e[1]:
            counts[x] += 1
    assert counts[2:5].min() > 100


def kgcn_model(aggregator="sum", n_iter=1, l2=0.0):
    # Entity space: user 1; item 2 (row 1), entities 3, 4 (rows 2, 3); K = 2 neighbours.
    # adjacency by table row: row 1 -> [2, 3] via relations [1, 2]; row 2 -> [1, 1]; row 3 -> [1, 1]
    adj_e = np.array([[0, 0], [2, 3], [1, 1], [1, 1]])
    adj_r = np.array([[0, 0], [1, 2], [1, 1], [2, 2]])
    m = KGCN(n_users=1, n_kg_rows=4, n_relation=2, adj_entity=adj_e, adj_relation=adj_r, dim=2, n_iter=n_iter,
             aggregator=aggregator, l2=l2)
    rng = np.random.default_rng(5)
    U, E, R = rng.normal(size=(1, 2)), rng.normal(size=(4, 2)), rng.normal(size=(3, 2))
    E[0], R[0] = 0, 0
    W = [rng.normal(size=tuple(p.shape)) for p in m.weights]
    B = [rng.normal(size=2) for _ in m.biases]
    with torch.no_grad():
        m.user.copy_(torch.tensor(U))
        m.entity.copy_(torch.tensor(E))
        m.relation.copy_(torch.tensor(R))
        for p, w in zip(m.weights, W):
            p.copy_(torch.tensor(w))
        for p, b in zip(m.biases, B):
            p.copy_(torch.tensor(b))
    return m, U[0], E, R, W, B, adj_e, adj_r


def kgcn_node(u, E, R, W, B, adj_e, adj_r, row, depth, i_layer, n_iter, aggregator):
    """The vector of table row ``row`` after layer ``i_layer`` (recursive definition)."""
    if i_layer < 0:
        return E[row]
    self_v = kgcn_node(u, E, R, W, B, adj_e, adj_r, row, depth, i_layer - 1, n_iter, aggregator)
    neigh = np.stack([kgcn_node(u, E, R, W, B, adj_e, adj_r, n, depth + 1, i_layer - 1, n_iter, aggregator)
                      for n in adj_e[row]])
    pi = softmax(np.array([np.mean(u * R[r]) for r in adj_r[row]]))
    agg = (pi[:, None] * neigh).mean(0)
    x = {"sum": lambda: self_v + agg, "concat": lambda: np.concatenate([self_v, agg]),
         "neighbor": lambda: agg}[aggregator]() @ W[i_layer] + B[i_layer]
    return np.tanh(x) if i_layer == n_iter - 1 else np.maximum(x, 0)


@pytest.mark.parametrize("aggregator,n_iter", [("sum", 1), ("sum", 2), ("concat", 1), ("neighbor", 1)])
def test_kgcn_prediction_by_hand(aggregator, n_iter):
    m, u, E, R, W, B, adj_e, adj_r = kgcn_model(aggregator, n_iter)
    item = kgcn_node(u, E, R, W, B, adj_e, adj_r, row=1, depth=0, i_layer=n_iter - 1, n_iter=n_iter,
                     aggregator=aggregator)
    got = m(torch.tensor([1]), torch.tensor([2])).item()
    assert got == pytest.approx(float(u @ item), rel=1e-5)


def test_kgcn_loss_regularises_the_whole_tables():
    m, u, E, R, W, B, adj_e, adj_r = kgcn_model("sum", 1, l2=0.01)
    logit = m(torch.tensor([1]), torch.tensor([2])).item()
    l2 = ((u ** 2).sum() + (E ** 2).sum() + (R ** 2).sum() + (W[0] ** 2).sum()) / 2   # not the biases
    expected = bce(logit, 0.0) + 0.01 * l2
    assert m.loss(torch.tensor([1]), torch.tensor([2]), torch.tensor([0])).item() == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------------------------
# data, dispatch, training


def test_prepared_data_keeps_typed_triples_users_and_items():
    # users 0, 1; items 0, 1; entities 2, 3; relation 0 (2 triples) kept, relation 1 (1) dropped
    ratings = np.array([[0, 0, 1], [0, 1, 0], [1, 1, 1], [1, 0, 0], [0, 1, 1], [1, 0, 1]] * 3)
    kg = np.array([[0, 0, 2], [1, 0, 3], [0, 1, 3]])
    raw = RawDataset.from_arrays(ratings, kg)
    triples, n_rel = kg_triples(kg, min_triples=2)
    assert triples.tolist() == [[0, 0, 2], [1, 0, 3]] and n_rel == 1
    triples, n_rel = kg_triples(np.array([[0, 3, 1], [1, 5, 2]]), min_triples=0)
    assert triples[:, 1].tolist() == [0, 1] and n_rel == 2          # renumbered, empty ids skipped
    # every row in training (a split a recipe refuses: build() itself takes it, for this check)
    cfg = RunConfig(dataset=DatasetConfig(path="x", min_relation_triples=2, split=[1.0, 0.0, 0.0]),
                    model=RippleNetConfig(n_hop=1))
    data = build(raw, cfg)
    assert data.n_users == 2 and data.n_relation == 1
    assert data.items.tolist() == [3, 4]                            # items 0, 1 after users 1, 2 and padding
    assert sorted(data.kg_triples.tolist()) == [[3, 0, 5], [4, 0, 6]]
    assert data.adjacency.shape == (data.n_entity, 0)               # no KNI table for RippleNet


def test_kni_data_unchanged_by_the_new_fields():
    """The baselines' additions leave KNI's splits, entities and adjacency as they were."""
    cfg = tiny_config(ModelConfig(max_degree=8))
    data = prepare(cfg, use_cache=False)
    again = prepare(cfg)                                             # through the cache
    for name in ("train", "valid", "test", "adjacency", "kg_triples", "items"):
        assert np.array_equal(getattr(data, name), getattr(again, name))
    assert (again.n_users, again.n_relation) == (data.n_users, data.n_relation)
    assert data.stats["kg_edges"] == len(np.unique(np.sort(data.kg_triples[:, [0, 2]], axis=1), axis=0))
    users = np.unique(data.train[:, 0])
    assert users.min() == 1 and users.max() == data.n_users


@pytest.mark.parametrize("model", [MFConfig(dim=4), RippleNetConfig(dim=4, n_memory=8),
                                   KGCNConfig(dim=4, n_iter=2, neighbor_sample_size=4)])
def test_trainer_builds_the_model_and_a_seed_reproduces_the_run(model):
    cfg = tiny_config(model)
    data = prepare(cfg)
    runs = []
    for _ in range(2):
        trainer = Trainer(cfg, data)
        assert type(trainer) is Trainer and trainer.model.name == model.name
        runs.append([r.to_dict() for r in trainer.fit()])
    strip = lambda rs: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rs]  # noqa: E731
    assert strip(runs[0]) == strip(runs[1]) and len(runs[0]) == 2
    assert all(0.0 <= r["test_auc"] <= 1.0 for r in runs[0])


def test_kgcn_skips_the_last_incomplete_batch_and_ripplenet_does_not():
    steps = {}
    for model in (KGCNConfig(dim=4, n_iter=1, neighbor_sample_size=2), RippleNetConfig(dim=2, n_memory=2)):
        cfg = tiny_config(model, epochs=1, batch_size=100)
        trainer = Trainer(cfg, prepare(cfg))
        n = len(trainer.splits["train"])
        assert n % 100
        count = [0]
        original = trainer.optimizer.step
        trainer.optimizer.step = lambda *a, **k: (count.__setitem__(0, count[0] + 1), original(*a, **k))
        trainer.train_epoch()
        steps[model.name] = (count[0], n)
    assert steps["kgcn"][0] == steps["kgcn"][1] // 100
    assert steps["ripplenet"][0] == -(-steps["ripplenet"][1] // 100)


def test_baselines_learn_on_planted_structure():
    """A few epochs on the tiny synthetic data (60 users) lift test AUC above chance for every
    baseline (a smoke test of the training loop; the math is checked by hand above)."""
    for model, lr in ((MFConfig(dim=8), 0.02), (RippleNetConfig(dim=8, n_memory=16), 0.02),
                      (KGCNConfig(dim=8, n_iter=1, neighbor_sample_size=4), 0.02)):
        cfg = tiny_config(model, epochs=6, lr=lr, batch_size=32)
        results = list(Trainer(cfg, prepare(cfg)).fit())
        assert max(r.test_auc for r in results) > 0.55, (model.name, [round(r.test_auc, 3) for r in results])


# --------------------------------------------------------------------------------------------
# recipes and configs

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def recipe_error(text: str, *overrides: str) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "r.yaml", overrides=list(overrides))
    return info.value


def test_model_keys_are_the_named_models():
    text = "dataset: {name: bc}\nmodel:\n  dim: 16\n  name: ripplenet\n  n_memory: 8\n"
    base = parse_recipe(text).base
    assert isinstance(base.model, RippleNetConfig) and (base.model.dim, base.model.n_memory) == (16, 8)
    assert base.model.kge_weight == 0.01 and label(base.model) == "RippleNet"
    e = recipe_error("dataset: {name: bc}\nmodel:\n  name: mf\n  attention: 2\n")
    assert (e.line, e.key) == (4, "model.attention")
    assert e.message.startswith("not a key of model 'mf' (a key of kni); model 'mf' takes name, dim, bias")
    e = recipe_error("dataset: {name: bc}\nmodel:\n  name: kgcn\n  n_iterr: 2\n")
    assert (e.line, e.key, e.message) == (4, "model.n_iterr", "unknown key; did you mean 'n_iter'?")
    e = recipe_error("dataset: {name: bc}\nmodel:\n  name: kgcn\n  aggregator: mean\n")
    assert (e.line, e.key) == (4, "model.aggregator") and "sum, concat, neighbor" in e.message
    e = recipe_error("dataset: {name: bc}\nmodel:\n  name: svd\n")
    assert (e.line, e.key) == (3, "model.name") and "kni, mf, ripplenet, kgcn" in e.message


def test_overrides_switch_the_model_and_are_checked_against_the_final_one():
    kni = "dataset: {name: bc}\nmodel:\n  attention: 1\n  hidden: 64\n"
    e = recipe_error(kni, "model.name=mf")
    assert (e.line, e.key) == (3, "model.attention") and "not a key of model 'mf'" in e.message
    base = parse_recipe("dataset: {name: bc}\n", overrides=["model.n_iter=2", "model.name=kgcn"]).base
    assert isinstance(base.model, KGCNConfig) and base.model.n_iter == 2
    e = recipe_error("dataset: {name: bc}\n", "model.n_iter=0", "model.name=kgcn")
    assert str(e) == "--set model.n_iter=0: expected a value >= 1; got 0"
    e = recipe_error("dataset: {name: bc}\n", "model.n_memory=4")
    assert str(e).startswith("--set model.n_memory=4: not a key of model 'kni' (a key of ripplenet)")
    base = parse_recipe("dataset: {name: bc}\n", overrides=["model.kge_weight=1e-3", "model.name=ripplenet"]).base
    assert base.model.kge_weight == 1e-3 and isinstance(base.model.kge_weight, float)


def test_eval_topk_is_a_nested_section():
    text = "dataset: {name: bc}\neval:\n  n_eval: 4\n  topk:\n    enabled: true\n    full_users: 500\n"
    topk = parse_recipe(text).base.eval.topk
    assert topk.enabled and topk.full_users == 500 and topk.k == [1, 2, 5, 10, 20, 50, 100]
    e = recipe_error(text.replace("full_users: 500", "ful_users: 500"))
    assert (e.line, e.key, e.message) == (6, "eval.topk.ful_users", "unknown key; did you mean 'full_users'?")
    e = recipe_error(text.replace("full_users: 500", "users: 0"))
    assert (e.line, e.key) == (6, "eval.topk.users") and e.message == "expected a value >= 1; got 0"
    e = recipe_error(text.replace("full_users: 500", "k: [5, 0]"))
    assert (e.line, e.key) == (6, "eval.topk.k") and "positive integers" in e.message
    assert parse_recipe("dataset: {name: bc}\n", overrides=["eval.topk.every=2"]).base.eval.topk.every == 2
    e = recipe_error("dataset: {name: bc}\n", "eval.topk=3")
    assert "'eval.topk' is a section, set one of its keys" in str(e)
    e = recipe_error("dataset: {name: bc}\n", "eval.topk.user=3")
    assert str(e) == "--set eval.topk.user=3: unknown key; did you mean 'users'?"


def test_kni_config_hash_is_unchanged_by_the_new_keys():
    """model.name and eval.topk joined the config later: at their defaults they stay out of the
    hash, so runs stored before keep grouping with new runs of the same configuration
    (train.checkpoint, train.keep_last and eval.strata, later still, stay out of it whatever their
    values)."""
    cfg = load_recipe(RECIPES / "bc.yaml").base
    old = cfg.to_dict()
    old["model"].pop("name")
    old["eval"].pop("topk")
    old["train"].pop("checkpoint")
    old["train"].pop("keep_last")              # later still, like checkpoint: never in the hash
    old["eval"].pop("strata")
    old.pop("seed")
    old.pop("device")
    assert cfg.config_hash() == stable_hash(old)
    stored = json.loads(json.dumps(old | {"seed": 1, "device": "cpu"}))     # a run stored before
    assert RunConfig.from_dict(stored).config_hash() == cfg.config_hash()
    cfg.eval.topk = TopKConfig(enabled=True)
    assert cfg.config_hash() != stable_hash(old)
    assert canonical(cfg.to_dict())["eval"]["topk"]["enabled"] is True


@pytest.mark.parametrize("name", ["bc-mf", "bc-ripplenet", "bc-kgcn", "lastfm-mf", "lastfm-ripplenet", "lastfm-kgcn"])
def test_baseline_recipes_validate_with_five_seeds(name):
    rec = load_recipe(RECIPES / f"{name}.yaml")
    assert rec.seeds == [1, 2, 3, 4, 5] and rec.base.model.name == name.split("-")[1]
    assert rec.base.dataset.min_relation_triples == 0 or rec.base.model.name == "mf"
    if rec.base.model.name != "mf":                  # the authors' settings, cited
        assert f"hwwang55/{ {'ripplenet': 'RippleNet', 'kgcn': 'KGCN'}[rec.base.model.name] }" in rec.text


@pytest.mark.parametrize("model", [MFConfig(dim=4), RippleNetConfig(dim=3, n_memory=4, n_hop=2),
                                   KGCNConfig(dim=4, n_iter=2, neighbor_sample_size=3),
                                   KGCNConfig(dim=4, n_iter=1, neighbor_sample_size=3, aggregator="concat"),
                                   KGCNConfig(dim=4, n_iter=2, neighbor_sample_size=3, aggregator="neighbor")])
def test_score_matrix_equals_the_pairwise_scores(model):
    """The top-N path (one user against every item, shared work) gives the forward pass's scores."""
    cfg = tiny_config(model, epochs=1)
    data = prepare(cfg)
    trainer = Trainer(cfg, data)
    trainer.train_epoch()                       # weights away from their init
    users = np.unique(data.test[:, 0])[:5]
    fast = trainer.score_matrix(users, data.items)
    pairs = torch.from_numpy(np.stack([np.repeat(users, len(data.items)), np.tile(data.items, len(users))], 1))
    slow = trainer.predict(pairs).reshape(len(users), len(data.items))
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
