"""The interface every baseline implements, and what they share.

A :class:`Recommender` is built from the config and the :class:`~kni_core.data.prepare.PreparedData`,
gives logits for ``(users, items)`` (entity ids, as in the splits) and its regularised training
loss. Models whose prediction samples (``stochastic``) are averaged over ``eval.n_eval`` passes;
the baselines here are deterministic once built and score once.

Index spaces. The prepared data numbers 0 = padding, ``1..n_users`` users, then items and KG
entities. Baselines that embed users apart from entities (as their authors' code does) use
``user - 1`` as the user row and :func:`kg_index` (``entity - n_users``, 0 for padding) as the
entity row, so their tables hold exactly the entities the original's would, plus a zero
padding row that never receives a gradient (``padding_idx``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def glorot_bound(fan_in: int, fan_out: int) -> float:
    """TF's ``xavier_initializer`` (uniform): ``sqrt(6 / (fan_in + fan_out))``."""
    return math.sqrt(6.0 / (fan_in + fan_out))


def uniform_table(shape: tuple[int, ...], bound: float, padding: bool = False) -> nn.Parameter:
    """A parameter drawn from U(-bound, bound); row 0 zero when ``padding``."""
    t = torch.empty(shape).uniform_(-bound, bound)
    if padding:
        t[0] = 0.0
    return nn.Parameter(t)


def glorot_table(rows: int, cols: int, padding: bool = False) -> nn.Parameter:
    """A ``[rows (+1 padding), cols]`` table with TF's Glorot bound over the real rows."""
    return uniform_table((rows + int(padding), cols), glorot_bound(rows, cols), padding)


def kg_index(ids: Tensor, n_users: int) -> Tensor:
    """Entity ids -> rows of a KG-side table: ``id - n_users`` for items and KG entities, 0 for
    padding (and, defensively, for users, which never enter a KG table)."""
    return torch.where(ids > n_users, ids - n_users, torch.zeros_like(ids))


def lookup(table: Tensor, rows: Tensor) -> Tensor:
    """Rows of an embedding table whose row 0 is padding (gets no gradient)."""
    return F.embedding(rows, table, padding_idx=0)


class Recommender(nn.Module):
    """What ``ModelTrainer`` needs from a model."""

    #: Predictions sample (averaged over ``n_eval`` passes at evaluation)?
    stochastic = False
    #: Skip the last, incomplete training batch (KGCN's loop does).
    drop_last = False

    @classmethod
    def build(cls, cfg, data) -> "Recommender":     # (RunConfig, PreparedData)
        raise NotImplementedError

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Logits ``(B,)`` for entity ids ``users`` and ``items``."""
        raise NotImplementedError

    def loss(self, users: Tensor, items: Tensor, labels: Tensor) -> Tensor:
        """The training objective the authors minimise (mean BCE plus their regularisers)."""
        raise NotImplementedError

    @torch.no_grad()
    def score_matrix(self, user: int, items: Tensor) -> Tensor:
        """Probabilities ``(I,)`` of one user with every item of ``items`` (the top-N ranking).
        Models override it with a form that shares the user's part across the items; it must
        equal :meth:`scores` on the pairs."""
        return self.scores(torch.full_like(items, user), items)

    @torch.no_grad()
    def scores(self, users: Tensor, items: Tensor) -> Tensor:
        """Probabilities ``(B,)`` in evaluation mode."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(users, items))
        finally:
            self.train(was_training)


def bce(logits: Tensor, labels: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
