"""KNI's math against hand-computed values, the sampler, dropout and the exact fast optimizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kni_core.config import ModelConfig
from kni_core.models.kni import KNI, dropout
from kni_core.train import RowSparseAdam, tf_adam_eps


def make_model(adjacency: list[list[int]], embeddings: np.ndarray, **model) -> KNI:
    cfg = ModelConfig(hidden=embeddings.shape[1], dropout=0.0, **model)
    m = KNI(len(embeddings), torch.tensor(adjacency, dtype=torch.int32), cfg)
    with torch.no_grad():
        m.embedding.copy_(torch.tensor(embeddings, dtype=torch.float32))
    return m.eval()


# Entities: 0 padding, 1 user, 2 item, 3 neighbour of the user, 4 neighbour of the item, 5 two hops out.
E = np.array([[0.0, 0.0], [1.0, 0.5], [0.2, -1.0], [0.3, 0.7], [-0.6, 0.4], [0.9, -0.2]])
# Every column of a row holds the same neighbour, so sampling is deterministic.
ADJ = [[0, 0], [3, 3], [4, 4], [5, 5], [2, 2], [3, 3]]


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def test_ni1_matches_hand_computation():
    m = make_model(ADJ, E, attention=1, hop_n_sample=[1, 2], max_degree=2, temperature=10.0)
    nu = E[[1, 3, 3]]                       # user, then its two sampled neighbours
    nv = E[[2, 4, 4]]
    logits = (nu @ nv.T).ravel()
    expected = float((softmax(logits / 10.0) * logits).sum())
    got = m(torch.tensor([1]), torch.tensor([2]))
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_ni2_matches_hand_computation():
    m = make_model(ADJ, E, attention=2, hop_n_sample=[1, 2], max_degree=2, temperature=2.0)
    w_u, w_v = np.array([[0.5], [-1.0]]), np.array([[2.0], [0.25]])
    with torch.no_grad():
        m.atn_weight_u.copy_(torch.tensor(w_u))
        m.atn_weight_v.copy_(torch.tensor(w_v))
        m.atn_bias_u.fill_(0.1)
        m.atn_bias_v.fill_(-0.3)
    nu, nv = E[[1, 3, 3]], E[[2, 4, 4]]
    logits = nu @ nv.T
    scores = np.tanh((nu @ w_u + 0.1) + (nv @ w_v - 0.3).T)
    expected = float((softmax(scores.ravel() / 2.0) * logits.ravel()).sum())
    assert m(torch.tensor([1]), torch.tensor([2])).item() == pytest.approx(expected, rel=1e-5)


def test_two_hops_interact_on_the_outer_layer_output():
    """hop_n_sample [1, 1, 1]: one (outermost, weightless, relu) layer runs; N = its outputs."""
    m = make_model(ADJ, E, attention=1, hop_n_sample=[1, 1, 1], max_degree=2, temperature=1.0)
    assert len(m.layers) == 1 and m.layers[0].weight is None
    with torch.no_grad():
        m.layers[0].bias.copy_(torch.tensor([0.05, -0.1]))
    b = np.array([0.05, -0.1])
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    # user 1 -> 3 -> 5, item 2 -> 4 -> 2
    nu = np.stack([relu((E[1] + E[3]) / 2 + b), relu((E[3] + E[5]) / 2 + b)])
    nv = np.stack([relu((E[2] + E[4]) / 2 + b), relu((E[4] + E[2]) / 2 + b)])
    logits = (nu @ nv.T).ravel()
    expected = float((softmax(logits) * logits).sum())
    assert m(torch.tensor([1]), torch.tensor([2])).item() == pytest.approx(expected, rel=1e-5)


def test_three_hops_weight_on_all_but_the_outermost_layer():
    m = make_model(ADJ, E, hop_n_sample=[1, 2, 2, 2], max_degree=2)
    assert [layer.weight is None for layer in m.layers] == [True, False]


def test_padding_row_is_zero_and_init_is_glorot_scale():
    torch.manual_seed(0)
    m = KNI(1000, torch.zeros(1000, 4, dtype=torch.int32), ModelConfig(hidden=16))
    bound = np.sqrt(6 / (1000 + 16))
    assert torch.all(m.embedding[0] == 0)
    assert m.embedding.abs().max().item() <= bound
    assert m.embedding[1:].abs().max().item() > 0.9 * bound


def test_sampler_shapes_and_only_true_neighbours_or_padding():
    rng = np.random.default_rng(0)
    n, width = 50, 8
    neighbours = {i: set(rng.choice(np.arange(1, n), size=rng.integers(0, 4), replace=False).tolist())
                  for i in range(1, n)}
    table = np.zeros((n, width), dtype=np.int32)
    for i, ns in neighbours.items():
        if ns:
            table[i] = rng.choice(sorted(ns), size=width)
    m = KNI(n, torch.tensor(table), ModelConfig(hidden=4, hop_n_sample=[1, 3, 2], max_degree=width))
    ids = torch.arange(1, n).expand(5, -1)
    sampled = m.sample(ids, 3)
    assert sampled.shape == (5, n - 1, 3)
    for r in range(5):
        for row, node in enumerate(range(1, n)):
            allowed = neighbours[node] or {0}
            assert set(sampled[r, row].tolist()) <= allowed
    blocks = m.neighbourhood(torch.tensor([1, 2, 3]), repeats=4)
    assert [b.shape for b in blocks] == [(12, 4), (36, 2)]
    assert torch.equal(blocks[0][:, 0], torch.tensor([1, 2, 3]).repeat(4))


def test_sampler_takes_distinct_columns_shared_by_the_batch():
    width = 16
    table = torch.arange(width, dtype=torch.int32).repeat(3, 1)   # row value = column index
    m = KNI(3, table, ModelConfig(hidden=2, hop_n_sample=[1, 6], max_degree=width))
    cols = m.sample(torch.tensor([[0, 1, 2]]), 6)[0]
    assert len(set(cols[0].tolist())) == 6                        # without replacement
    assert torch.equal(cols[0], cols[1]) and torch.equal(cols[1], cols[2])


def test_dropout_keeps_the_expected_share_and_rescales():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    for p in (0.1, 0.5, 0.9):
        y = dropout(x, p, training=True)
        kept = (y != 0).float().mean().item()
        assert kept == pytest.approx(1 - p, abs=0.01)
        assert y[y != 0].unique().tolist() == pytest.approx([1 / (1 - p)])
    assert dropout(x, 0.5, training=False) is x


@pytest.mark.parametrize("attention", [1, 2])
def test_row_sparse_adam_equals_dense_adam_on_the_full_loss(attention):
    """The fast path (row gradients + weight decay) takes the same step as autograd on
    BCE + l2 * sum(W^2) / 2 over the whole table."""
    n, h, l2 = 40, 8, 1e-2
    table = torch.randint(1, n, (n, 6), dtype=torch.int32)
    cfg = ModelConfig(hidden=h, hop_n_sample=[1, 3], max_degree=6, dropout=0.0, attention=attention)
    torch.manual_seed(0)
    fast = KNI(n, table, cfg)
    dense = KNI(n, table, cfg)
    dense.load_state_dict(fast.state_dict())
    fast.row_leaf = True
    opt_fast = RowSparseAdam(fast.embedding, lr=0.01, eps=1e-8, l2=l2)
    opt_dense = torch.optim.Adam([dense.embedding], lr=0.01, eps=1e-8)
    users, items = torch.tensor([1, 2, 3, 1]), torch.tensor([5, 6, 7, 8])
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    for step in range(3):
        torch.manual_seed(step)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(fast(users, items)[0], labels)
        loss.backward()
        opt_fast.step([(ids, leaf.grad) for ids, leaf in fast.last_rows])

        torch.manual_seed(step)
        opt_dense.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(dense(users, items)[0], labels)
        (loss + l2 * dense.embedding[1:].pow(2).sum() / 2).backward()
        tf_adam_eps(opt_dense, 1e-8, step + 1)
        opt_dense.step()
        torch.testing.assert_close(fast.embedding, dense.embedding, rtol=1e-5, atol=1e-7)
    assert torch.all(fast.embedding[0] == 0)
