"""KGCN (Wang et al., WWW'19), after the authors' TensorFlow code (hwwang55/KGCN, ``src/data_loader.py``,
``src/model.py``, ``src/aggregators.py``).

Neighbours (``construct_kg``, ``construct_adj``): the KG taken as undirected (each triple gives
both ends the other as a neighbour, with the triple's relation), and for every entity
``neighbor_sample_size`` neighbours drawn once - without replacement when it has at least that
many, with replacement otherwise - from ``dataset.split_seed`` (the original's
``np.random.seed(555)``). An entity without neighbours (the original would crash) gets padding.

Prediction, for user ``u`` and item ``v`` with ``n_iter`` = H (``aggregate``): the item's
H-hop tree of sampled neighbours is folded H times, outermost first; on iteration ``i`` every
node ``e`` of depth < H - i becomes::

    pi_n  = softmax_n(mean_d(u * r_n))                      (user-relation attention)
    e_N   = mean_n(pi_n * e_n)                              (the original's reduce_mean)
    sum:      act((e + e_N) W_i + b_i)
    concat:   act([e, e_N] W_i + b_i)
    neighbor: act(e_N W_i + b_i)

with ``act`` = ReLU, tanh on the last iteration; logit = ``u . v_H``. Loss (``_build_train``):
mean BCE + ``l2 * (l2_loss(users) + l2_loss(entities) + l2_loss(relations) + sum l2_loss(W_i))``
over the *whole* tables, ``l2_loss(x) = sum(x^2) / 2``. The training loop skips the last,
incomplete batch, as the original's. Dropout is 0 in the original and is not built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..schema import setting
from .base import F, ModelSettings, Recommender, bce, glorot_table, kg_index, lookup, model_name, nn, no_grad, np, torch

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class KGCNConfig(ModelSettings):
    """KGCN (Wang et al., WWW'19; hwwang55/KGCN, ``kni_core.models.kgcn``)."""

    name: str = model_name("kgcn")
    dim: int = setting(64, "user, entity and relation embedding size", lo=1)
    n_iter: int = setting(1, "aggregation iterations (receptive field in KG hops)", lo=1)
    neighbor_sample_size: int = setting(8, "neighbours sampled once per entity (with replacement when it has fewer)",
                                        lo=1)
    aggregator: str = setting("sum", "sum, concat or neighbor", choices=("sum", "concat", "neighbor"))

    def graph_needs(self) -> dict:
        return {"kg": True, "reach_hops": self.n_iter, "max_degree": 0}


def sample_neighbours(triples: np.ndarray, n_rows: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(adj_entity, adj_relation)``, each ``(n_rows, k)``, over the rows of ``triples``' ids
    (``head, relation, tail`` already as table rows, relations already shifted past padding)."""
    rng = np.random.default_rng(seed)
    adj_entity = np.zeros((n_rows, k), dtype=np.int64)
    adj_relation = np.zeros((n_rows, k), dtype=np.int64)
    if len(triples) == 0:
        return adj_entity, adj_relation
    # Both directions, interleaved so that each row lists its neighbours in file order.
    src = np.column_stack([triples[:, 0], triples[:, 2]]).ravel()
    dst = np.column_stack([triples[:, 2], triples[:, 0]]).ravel()
    rel = np.repeat(triples[:, 1], 2)
    order = np.argsort(src, kind="stable")
    src, dst, rel = src[order], dst[order], rel[order]
    deg = np.bincount(src, minlength=n_rows)
    start = np.concatenate([[0], np.cumsum(deg)[:-1]])
    rich = np.flatnonzero(deg >= k)
    if len(rich):                      # without replacement: the k smallest random keys per row
        in_rich = deg[src] >= k
        rows, nbr, r = src[in_rich], dst[in_rich], rel[in_rich]
        keys = rng.random(len(rows))
        by = np.lexsort((keys, rows))
        rows, nbr, r = rows[by], nbr[by], r[by]
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
        take = rank < k
        adj_entity[rows[take], rank[take]] = nbr[take]
        adj_relation[rows[take], rank[take]] = r[take]
    poor = np.flatnonzero((deg > 0) & (deg < k))
    if len(poor):                      # with replacement
        picks = start[poor, None] + (rng.random((len(poor), k)) * deg[poor, None]).astype(np.int64)
        adj_entity[poor] = dst[picks]
        adj_relation[poor] = rel[picks]
    return adj_entity, adj_relation


class KGCN(Recommender):
    name = "kgcn"
    config_class = KGCNConfig
    label = "KGCN"
    order = 3
    setup_memory = ("model.neighbor_sample_size", "model.dim")
    drop_last = True

    def __init__(self, n_users: int, n_kg_rows: int, n_relation: int, adj_entity: np.ndarray,
                 adj_relation: np.ndarray, dim: int, n_iter: int, aggregator: str, l2: float):
        super().__init__()
        self.n_users, self.dim, self.n_iter, self.aggregator, self.l2 = n_users, dim, n_iter, aggregator, l2
        self.n_neighbor = adj_entity.shape[1]
        self.user = glorot_table(n_users, dim)                      # row = user id - 1
        self.entity = glorot_table(n_kg_rows - 1, dim, padding=True)
        self.relation = glorot_table(max(n_relation, 1), dim, padding=True)
        fan_in = 2 * dim if aggregator == "concat" else dim
        self.weights = nn.ParameterList(glorot_table(fan_in, dim) for _ in range(n_iter))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(n_iter))
        self.register_buffer("adj_entity", torch.from_numpy(adj_entity), persistent=False)
        self.register_buffer("adj_relation", torch.from_numpy(adj_relation), persistent=False)

    @classmethod
    def build(cls, cfg, data) -> "KGCN":
        m = cfg.model
        n_rows = data.n_entity - data.n_users
        t = data.kg_triples
        rows = np.column_stack([t[:, 0] - data.n_users, t[:, 1] + 1, t[:, 2] - data.n_users])
        adj_entity, adj_relation = sample_neighbours(rows, n_rows, m.neighbor_sample_size, cfg.dataset.split_seed)
        return cls(data.n_users, n_rows, data.n_relation, adj_entity, adj_relation, m.dim, m.n_iter,
                   m.aggregator, cfg.train.l2)

    def _aggregate(self, i: int, self_vecs: Tensor, neigh: Tensor, weights: Tensor) -> Tensor:
        """``self_vecs (B, n, d)``, ``neigh (B, n, K, d)``, attention ``weights (B, n, K)`` -> ``(B, n, d)``."""
        agg = (weights.unsqueeze(-2) @ neigh).squeeze(-2) / self.n_neighbor      # mean_n(pi_n * e_n)
        if self.aggregator == "sum":
            x = self_vecs + agg
        elif self.aggregator == "concat":
            x = torch.cat([self_vecs, agg], dim=-1)
        else:
            x = agg
        x = x @ self.weights[i] + self.biases[i]
        return torch.tanh(x) if i == self.n_iter - 1 else F.relu(x)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """The receptive field (entities and relations of every hop) is gathered once per batch,
        and so is the attention of each hop: ``mean_d(u * r)`` is ``u . r / d``, one score per
        (user, relation) from a ``(B, R)`` product, picked by each edge's relation. It does not
        change between iterations, so the H iterations share it (the original recomputes it)."""
        batch, d, k = len(users), self.dim, self.n_neighbor
        user = self.user[users - 1]
        # padding (relation 0) scores 0 and gets no gradient, as a looked-up padding row would
        by_relation = F.pad(user @ self.relation[1:].T / d, (1, 0))                 # (B, R + 1)
        entities = [kg_index(items, self.n_users).unsqueeze(1)]
        weights = []
        for i in range(self.n_iter):
            relations = self.adj_relation[entities[i]].reshape(batch, -1)
            weights.append(torch.softmax(by_relation.gather(1, relations).view(batch, -1, k), dim=-1))
            entities.append(self.adj_entity[entities[i]].reshape(batch, -1))
        vectors = [lookup(self.entity, e) for e in entities]
        for i in range(self.n_iter):
            vectors = [self._aggregate(i, vectors[hop], vectors[hop + 1].view(batch, -1, k, d), weights[hop])
                       for hop in range(self.n_iter - i)]
        return (user * vectors[0].view(batch, d)).sum(-1)

    @no_grad
    def score_matrix(self, user: int, items: Tensor) -> Tensor:
        """For one user a node's vector after iteration i depends only on the node (its sampled
        subtree is fixed), so one propagation over the whole table serves every item: the
        tree-shaped forward pass without recomputing shared subtrees."""
        u = self.user[user - 1]
        pi = torch.softmax((self.relation @ u / self.dim)[self.adj_relation], dim=-1).unsqueeze(-1)  # (rows, K, 1)
        h = self.entity
        for i in range(self.n_iter):
            agg = (pi * h[self.adj_entity]).mean(dim=1)
            if self.aggregator == "sum":
                x = h + agg
            elif self.aggregator == "concat":
                x = torch.cat([h, agg], dim=-1)
            else:
                x = agg
            x = x @ self.weights[i] + self.biases[i]
            h = torch.tanh(x) if i == self.n_iter - 1 else F.relu(x)
        return torch.sigmoid(h[kg_index(items, self.n_users)] @ u)

    def l2_loss(self) -> Tensor:
        tables = [self.user, self.entity, self.relation, *self.weights]
        return sum(t.pow(2).sum() for t in tables) / 2

    def loss(self, users: Tensor, items: Tensor, labels: Tensor) -> Tensor:
        return bce(self(users, items), labels) + self.l2 * self.l2_loss()
