"""Logistic matrix factorisation: the no-graph floor.

``logit(u, i) = p_u . q_i + b_u + b_i + b`` (biases optional, ``model.bias``), trained on the
same labelled pairs as every model with mean BCE plus ``l2 * (|p_u|^2 + |q_i|^2) / 2`` summed
over the batch's rows (TF's ``l2_loss`` of the looked-up embeddings, the usual regulariser of
MF in the KG-recommendation literature; biases are not penalised). Users and items share one
Glorot-initialised table over the entity space (users and items only: MF asks for no KG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..schema import setting
from .base import ModelSettings, Recommender, bce, glorot_table, lookup, model_name, nn, no_grad, torch

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class MFConfig(ModelSettings):
    """Logistic matrix factorisation (``kni_core.models.mf``): the no-graph floor."""

    name: str = model_name("mf")
    dim: int = setting(8, "embedding size of users and items", lo=1)
    bias: bool = setting(True, "add user, item and global biases to the dot product")

    def graph_needs(self) -> dict:
        return {"kg": False, "reach_hops": 0, "max_degree": 0}


class MF(Recommender):
    name = "mf"
    config_class = MFConfig
    label = "MF"
    order = 1
    setup_memory = ("model.dim",)

    def __init__(self, n_entity: int, dim: int, bias: bool, l2: float):
        super().__init__()
        self.embedding = glorot_table(n_entity - 1, dim, padding=True)
        self.use_bias = bias
        if bias:
            self.entity_bias = nn.Parameter(torch.zeros(n_entity))
            self.global_bias = nn.Parameter(torch.zeros(()))
        self.l2 = l2

    @classmethod
    def build(cls, cfg, data) -> "MF":
        return cls(data.n_entity, cfg.model.dim, cfg.model.bias, cfg.train.l2)

    def _logits(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p, q = lookup(self.embedding, users), lookup(self.embedding, items)
        logits = (p * q).sum(-1)
        if self.use_bias:
            logits = logits + self.entity_bias[users] + self.entity_bias[items] + self.global_bias
        return logits, p, q

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        return self._logits(users, items)[0]

    @no_grad
    def score_matrix(self, user: int, items: Tensor) -> Tensor:
        logits = self.embedding[items] @ self.embedding[user]
        if self.use_bias:
            logits = logits + self.entity_bias[user] + self.entity_bias[items] + self.global_bias
        return torch.sigmoid(logits)

    def loss(self, users: Tensor, items: Tensor, labels: Tensor) -> Tensor:
        logits, p, q = self._logits(users, items)
        return bce(logits, labels) + self.l2 * (p.pow(2).sum() + q.pow(2).sum()) / 2
