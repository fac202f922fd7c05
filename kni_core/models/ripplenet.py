"""RippleNet (Wang et al., CIKM'18), after the authors' TensorFlow code (hwwang55/RippleNet,
``src/data_loader.py``, ``src/model.py``).

Ripple sets (``get_ripple_set``): per user and hop, ``n_memory`` (head, relation, tail) triples
drawn from the *directed* KG: hop 0 from the out-edges of the user's training positives, hop
``h`` from those of hop ``h-1``'s sampled tails (with their multiplicity); with replacement only
when fewer triples exist; an empty hop repeats the previous one. Drawn once, from
``dataset.split_seed`` (the original's ``np.random.seed(555)``). A user with no triple at hop 0
(the original would crash; it never happens on bc or Last.FM with their full KG) gets padding.

Prediction (``_key_addressing``, ``predict``), for item vector ``v``::

    p_i = softmax_i(v^T R_i h_i)          o = sum_i p_i t_i
    v <- (v + o) @ T                       (item_update_mode plus_transform; or replace, plus,
                                            replace_transform)
    logit = v_final . (o_1 + ... + o_H)    (using_all_hops; else o_H only)

Loss (``_build_loss``): mean BCE ``- kge_weight * sum_hops mean(sigmoid(h^T R t))``
``+ l2 * sum_hops (sum h^2 + sum t^2 + sum R^2)`` over the batch's memories (a sum, not a mean,
and without TF's ``l2_loss`` halving, as the original). Embeddings use TF's Glorot bound (for the
``[n_relation, dim, dim]`` relation tensor, fans of ``dim * n_relation``). The original computes
in float64; this one in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..schema import setting
from .base import (
    ModelSettings,
    Recommender,
    bce,
    glorot_bound,
    glorot_table,
    kg_index,
    lookup,
    model_name,
    no_grad,
    np,
    torch,
    uniform_table,
)

if TYPE_CHECKING:
    from torch import Tensor

#: The embedding size from which ``R h`` is computed per relation rather than per memory
#: (:meth:`RippleNet._relate`). A Last.FM epoch on 2 cores, gathered -> by relation: d 4 0.59 ->
#: 0.61 s, d 8 1.13 -> 0.91 s, d 16 (m 64) 12.1 -> 2.4 s, d 32 (m 64) 66 -> 3.8 s (docs/results.md).
BY_RELATION_FROM = 8


@dataclass
class RippleNetConfig(ModelSettings):
    """RippleNet (Wang et al., CIKM'18; hwwang55/RippleNet, ``kni_core.models.ripplenet``)."""

    name: str = model_name("ripplenet")
    dim: int = setting(4, "entity and relation embedding size", lo=1)
    n_hop: int = setting(2, "hops of the ripple sets", lo=1)
    n_memory: int = setting(32, "memories (KG triples) sampled per user and hop", lo=1)
    kge_weight: float = setting(0.01, "weight of the KGE term (-mean sigmoid(h R t) per hop)", lo=0.0)
    item_update_mode: str = setting("plus_transform", "how the item vector is updated after each hop",
                                    choices=("replace", "plus", "replace_transform", "plus_transform"))
    using_all_hops: bool = setting(True, "predict with the sum of every hop's response (false: the last hop only)")

    def graph_needs(self) -> dict:
        return {"kg": True, "reach_hops": self.n_hop, "max_degree": 0}


def ripple_sets(train: np.ndarray, triples: np.ndarray, n_users: int, n_hop: int, n_memory: int,
                seed: int) -> np.ndarray:
    """``(n_users + 1, 3, n_hop, n_memory)`` int64: per user (row = user id) the heads, relations
    and tails of each hop's memories, in the entity space of ``triples``; zeros (padding) for a
    user without any. See the module docstring for the rule."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n_users + 1, 3, n_hop, n_memory), dtype=np.int64)
    if len(triples) == 0:
        return out
    n_nodes = int(max(triples[:, [0, 2]].max(), train[:, :2].max())) + 1
    order = np.argsort(triples[:, 0], kind="stable")           # out-edges in file order
    tails, rels = triples[order, 2], triples[order, 1]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(triples[:, 0], minlength=n_nodes))])
    positives = train[train[:, 2] == 1]
    positives = positives[np.argsort(positives[:, 0], kind="stable")]   # per user, in row order
    bounds = np.searchsorted(positives[:, 0], np.arange(n_users + 2))
    for user in range(1, n_users + 1):
        entities = positives[bounds[user]:bounds[user + 1], 1]
        for hop in range(n_hop):
            deg = indptr[entities + 1] - indptr[entities]
            total = int(deg.sum())
            if total == 0:
                if hop > 0:
                    out[user, :, hop] = out[user, :, hop - 1]
                continue
            picks = rng.choice(total, size=n_memory, replace=total < n_memory)
            ends = np.cumsum(deg)
            slot = np.searchsorted(ends, picks, side="right")         # which entity's edges
            edge = indptr[entities[slot]] + picks - (ends[slot] - deg[slot])
            out[user, 0, hop] = entities[slot]
            out[user, 1, hop] = rels[edge]
            out[user, 2, hop] = tails[edge]
            entities = out[user, 2, hop]
    return out


class RippleNet(Recommender):
    name = "ripplenet"
    config_class = RippleNetConfig
    label = "RippleNet"
    order = 2
    setup_memory = ("model.n_memory", "model.dim")

    def __init__(self, n_users: int, n_kg_rows: int, n_relation: int, memories: np.ndarray, dim: int,
                 n_hop: int, kge_weight: float, l2: float, item_update_mode: str, using_all_hops: bool):
        super().__init__()
        self.n_users, self.dim, self.n_hop = n_users, dim, n_hop
        self.kge_weight, self.l2 = kge_weight, l2
        self.mode, self.all_hops = item_update_mode, using_all_hops
        self.entity = glorot_table(n_kg_rows - 1, dim, padding=True)
        rel = max(n_relation, 1)
        self.relation = uniform_table((n_relation + 1, dim, dim), glorot_bound(dim * rel, dim * rel), padding=True)
        self.transform = glorot_table(dim, dim)
        # memories as rows of the tables: entities via kg_index, relations shifted past padding
        mem = torch.from_numpy(memories)
        heads, tails = kg_index(mem[:, 0], n_users), kg_index(mem[:, 2], n_users)
        rels = torch.where(heads > 0, mem[:, 1] + 1, torch.zeros_like(mem[:, 1]))
        self.register_buffer("memories", torch.stack([heads, rels, tails], dim=1), persistent=False)

    @classmethod
    def build(cls, cfg, data) -> "RippleNet":
        m = cfg.model
        memories = ripple_sets(data.train, data.kg_triples, data.n_users, m.n_hop, m.n_memory,
                               cfg.dataset.split_seed)
        return cls(data.n_users, data.n_entity - data.n_users, data.n_relation, memories, m.dim, m.n_hop,
                   m.kge_weight, cfg.train.l2, m.item_update_mode, m.using_all_hops)

    def _memories(self, users: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per hop: h ``(B, m, d)``, the relation rows ``(B, m)``, t ``(B, m, d)``."""
        mem = self.memories[users]                                  # (B, 3, H, m)
        hs = [lookup(self.entity, mem[:, 0, k]) for k in range(self.n_hop)]
        rels = [mem[:, 1, k] for k in range(self.n_hop)]
        ts = [lookup(self.entity, mem[:, 2, k]) for k in range(self.n_hop)]
        return hs, rels, ts

    def _relate(self, rels: Tensor, h: Tensor, t: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
        """``R h`` per memory ``(..., d)``; with ``t``, ``h^T R t`` per memory (the KGE score);
        and ``sum ||R||^2`` over the memories.

        The authors' code gathers a ``(d, d)`` matrix per memory: ``B m d^2`` floats per hop
        and their gradient (268 MB at d 32, m 64, B 1024: 66 s a Last.FM epoch on 2 cores).
        From d = ``BY_RELATION_FROM`` on, the memories are grouped by relation instead, one
        ``(n_r, d) @ (d, 2d)`` product per relation in the batch; below it, gathering costs as little
        and keeps the numbers of the runs made before, bit for bit."""
        d = self.dim
        if d < BY_RELATION_FROM:
            r = lookup(self.relation.view(-1, d * d), rels).view(*rels.shape, d, d)
            hrt = None if t is None else torch.einsum("...i,...ij,...j->...", h, r, t)
            return torch.einsum("...ij,...j->...i", r, h), hrt, r.pow(2).sum()
        flat, rows = h.reshape(-1, d), rels.reshape(-1)
        order = torch.argsort(rows, stable=True)
        counts = torch.bincount(rows, minlength=self.relation.shape[0])
        grouped, pieces, start = flat[order], [], 0
        for rel, n in enumerate(counts.tolist()):
            if n and rel:                        # relation row 0 is padding: R = 0, no gradient
                r = self.relation[rel]
                pieces.append(grouped[start:start + n] @ torch.cat([r.T, r], dim=1))
            elif n:
                pieces.append(grouped.new_zeros(n, 2 * d))
            start += n
        both = torch.cat(pieces)[torch.argsort(order)].view(*h.shape[:-1], 2 * d)
        square = (counts[1:].to(flat.dtype) * self.relation[1:].pow(2).sum((1, 2))).sum()
        hrt = None if t is None else (both[..., d:] * t).sum(-1)
        return both[..., :d], hrt, square

    def _update(self, v: Tensor, o: Tensor) -> Tensor:
        if self.mode == "replace":
            return o
        if self.mode == "plus":
            return v + o
        if self.mode == "replace_transform":
            return o @ self.transform
        return (v + o) @ self.transform                            # plus_transform

    def _logits(self, users: Tensor, items: Tensor, hs, rels, ts) -> Tensor:
        return self._respond(lookup(self.entity, kg_index(items, self.n_users)),     # (B, d)
                             [self._relate(r, h)[0] for r, h in zip(rels, hs)], ts)

    def _respond(self, v: Tensor, rhs: list[Tensor], ts: list[Tensor]) -> Tensor:
        responses = []
        for rh, t in zip(rhs, ts):
            probs = torch.softmax(torch.einsum("bmi,bi->bm", rh, v), dim=1)
            o = torch.einsum("bm,bmi->bi", probs, t)
            v = self._update(v, o)
            responses.append(o)
        y = responses[-1]
        if self.all_hops:
            y = y + sum(responses[:-1], torch.zeros_like(y))
        return (v * y).sum(-1)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        return self._logits(users, items, *self._memories(users))

    @no_grad
    def score_matrix(self, user: int, items: Tensor) -> Tensor:
        """One user's memories, hence ``R h`` and ``t`` per hop, serve every item."""
        hs, rels, ts = self._memories(torch.tensor([user], device=items.device))
        v = lookup(self.entity, kg_index(items, self.n_users))                 # (I, d)
        responses = []
        for h, r, t in zip(hs, rels, ts):
            rh = self._relate(r[0], h[0])[0]                                   # (m, d)
            o = torch.softmax(v @ rh.T, dim=1) @ t[0]                           # (I, d)
            v = self._update(v, o)
            responses.append(o)
        y = responses[-1]
        if self.all_hops:
            y = y + sum(responses[:-1], torch.zeros_like(y))
        return torch.sigmoid((v * y).sum(-1))

    def loss(self, users: Tensor, items: Tensor, labels: Tensor) -> Tensor:
        hs, rels, ts = self._memories(users)
        related = [self._relate(r, h, t) for r, h, t in zip(rels, hs, ts)]
        v = lookup(self.entity, kg_index(items, self.n_users))
        base = bce(self._respond(v, [rh for rh, _, _ in related], ts), labels)
        kge = sum(torch.sigmoid(hrt).mean() for _, hrt, _ in related)
        l2 = sum(h.pow(2).sum() + t.pow(2).sum() + square for h, t, (_, _, square) in zip(hs, ts, related))
        return base - self.kge_weight * kge + self.l2 * l2
