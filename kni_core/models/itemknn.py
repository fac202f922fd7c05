"""ItemKNN: item-item cosine over the training positives, the classic neighbourhood floor.

``sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i| |U_j|) + shrink)`` over the users ``U_i`` with a
training positive on ``i`` (no self-similarity), each item keeping its ``k`` most similar
items. A user's score for item ``i`` is the sum of ``sim(i, j)`` over the user's training
positives ``j``. Probabilities are ``sigmoid(a * log(1 + score) + c * log(1 + popularity) + b)``, the
logistic regression of the training labels on both (so logloss and accuracy are those of a
calibrated predictor). The regression sees each training row as a held-out row would be seen:
its neighbourhood score and popularity without the row itself (leave one out; a positive row's
user is in its item's co-occurrences, and its label in the item's count, so the plain scores
would give the fit the answer: on bc, test logloss 0.705, worse than chance). A user none of
whose positives has a neighbour (every score 0) is
ranked by popularity (:mod:`.pop`), and popularity breaks the neighbourhood's ties. On bc,
where most users have two rows, the neighbourhood alone ranks test rows at AUC 0.617 and
popularity alone at 0.734; together, 0.745 (docs/results.md). Built once from
the training rows, deterministic; the epochs train nothing (``train.epochs: 1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import scipy.sparse as sp

from ..schema import setting
from .base import ModelSettings, Recommender, bce, model_name, no_grad, np, torch
from .pop import NoTraining, fit_calibration, item_counts

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class ItemKNNConfig(ModelSettings):
    """Item-item cosine neighbours (``kni_core.models.itemknn``)."""

    name: str = model_name("itemknn")
    k: int = setting(100, "neighbours kept per item (its most similar items)", lo=1)
    shrink: float = setting(10.0, "added to the cosine's denominator: damps the similarity of rarely seen items",
                            lo=0.0)

    def graph_needs(self) -> dict:
        return {"kg": False, "reach_hops": 0, "max_degree": 0}


def similarities(interactions, k: int, shrink: float):
    """The ``(items, items)`` sparse matrix of each item's ``k`` most similar items."""
    co = (interactions.T @ interactions).tocsr().astype(np.float64)
    co.setdiag(0)
    co.eliminate_zeros()
    counts = np.asarray(interactions.sum(axis=0)).ravel()
    co = co.tocoo()
    values = co.data / (np.sqrt(counts[co.row] * counts[co.col]) + shrink)
    sim = sp.csr_matrix((values, (co.row, co.col)), shape=co.shape)
    keep_rows, keep_cols, keep_vals = [], [], []
    for i in range(sim.shape[0]):               # the k largest of each row (ties: the lower item id)
        lo, hi = sim.indptr[i], sim.indptr[i + 1]
        cols, vals = sim.indices[lo:hi], sim.data[lo:hi]
        if len(cols) > k:
            top = np.lexsort((cols, -vals))[:k]
            cols, vals = cols[top], vals[top]
        keep_rows.append(np.full(len(cols), i))
        keep_cols.append(cols)
        keep_vals.append(vals)
    rows = np.concatenate(keep_rows) if keep_rows else np.zeros(0, np.int64)
    return sp.csr_matrix((np.concatenate(keep_vals) if keep_vals else np.zeros(0),
                          (rows, np.concatenate(keep_cols) if keep_cols else np.zeros(0, np.int64))), shape=sim.shape)


class ItemKNN(Recommender):
    name = "itemknn"
    config_class = ItemKNNConfig
    label = "ItemKNN"
    order = 6

    def __init__(self, interactions, sim, popularity, calibration):
        super().__init__()
        self.interactions = interactions        # (entities, entities) csr: users' training positives
        self.sim = sim                          # (entities, entities) csr: items' neighbours
        self.sim_by_neighbour = sim.T.tocsr()   # row j: the items that have j as a neighbour
        self.register_buffer("popularity", torch.as_tensor(popularity, dtype=torch.float64))
        self.register_buffer("calibration", torch.tensor(calibration, dtype=torch.float64))   # a, c, b

    @classmethod
    def build(cls, cfg, data) -> "ItemKNN":
        n = data.n_entity
        pos = data.train[data.train[:, 2] == 1]
        interactions = sp.csr_matrix((np.ones(len(pos)), (pos[:, 0], pos[:, 1])), shape=(n, n))
        interactions.data[:] = 1.0                                  # repeated pairs count once
        sim = similarities(interactions, cfg.model.k, cfg.model.shrink)
        positives = item_counts(data, n)[0]
        users, items, labels = data.train[:, 0], data.train[:, 1], data.train[:, 2]
        knn = _held_out_scores(interactions, sim, cfg.model.shrink, users, items, labels)
        features = np.column_stack([np.log1p(knn), np.log1p(positives[items] - labels)])
        return cls(interactions, sim, np.log1p(positives), fit_calibration(features, labels))

    def _logits(self, knn_scores, items):
        """float64 logits from the neighbourhood scores and the items' popularity."""
        a, c, b = self.calibration.tolist()
        return a * np.log1p(knn_scores) + c * self.popularity.cpu().numpy()[items] + b

    def logits(self, users, items):
        """float64 logits of the (user, item) pairs (numpy arrays)."""
        return self._logits(_pair_scores(self.interactions, self.sim, users, items), items)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        logits = self.logits(users.cpu().numpy(), items.cpu().numpy())
        return torch.as_tensor(logits, dtype=torch.float32, device=items.device)

    def loss(self, users: Tensor, items: Tensor, labels: Tensor) -> Tensor:
        return bce(self(users, items), labels)

    def optimizer(self, train) -> NoTraining:
        return NoTraining()

    @no_grad
    def scores(self, users: Tensor, items: Tensor) -> Tensor:
        """Probabilities computed in float64 (equal scores, equal probabilities: see :mod:`.pop`)."""
        return _probability(self.logits(users.cpu().numpy(), items.cpu().numpy()), items.device)

    @no_grad
    def score_matrix(self, user: int, items: Tensor) -> Tensor:
        """One user against ``items``: the user's positives' neighbour rows summed once."""
        idx = items.cpu().numpy()
        row = np.asarray((self.interactions[user] @ self.sim_by_neighbour).todense()).ravel()
        return _probability(self._logits(row[idx], idx), items.device)


def _probability(logits, device) -> Tensor:
    return torch.as_tensor(1.0 / (1.0 + np.exp(-logits)), dtype=torch.float32, device=device)


def _held_out_scores(interactions, sim, shrink: float, users, items, labels):
    """The pairs' neighbourhood scores as if each positive pair ``(u, i)`` were not in training:
    ``u`` leaves ``U_i``, so each term ``sim(i, j)`` over ``u``'s other positives ``j`` loses one
    co-occurrence and ``|U_i|`` one user (the neighbour lists stay those of the full data).
    A negative pair's score is already so: its user is not in ``U_i``."""
    if len(users) == 0:
        return np.zeros(0)
    terms = interactions[users].multiply(sim[items]).tocoo()      # row r, column j: sim(items[r], j)
    rows, j, value = terms.row, terms.col, terms.data
    counts = np.asarray(interactions.sum(axis=0)).ravel()
    i = items[rows]
    positive = labels[rows] == 1
    co = np.rint(value * (np.sqrt(counts[i] * counts[j]) + shrink))  # |U_i ∩ U_j|, an integer
    without = np.sqrt(np.maximum(counts[i] - 1, 0) * counts[j]) + shrink
    held_out = np.divide(co - 1, without, out=np.zeros_like(value), where=(co > 1) & (without > 0))
    return np.bincount(rows, weights=np.where(positive, held_out, value), minlength=len(users))


def _pair_scores(interactions, sim, users, items):
    """``sum_j sim[item, j]`` over each user's training positives ``j``, per (user, item) pair."""
    if len(users) == 0:
        return np.zeros(0)
    return np.asarray(interactions[users].multiply(sim[items]).sum(axis=1)).ravel()
