"""Item popularity: the floor every model must beat (no user, no graph, nothing learned).

An item's score counts its training rows: ``log(1 + positives)`` (``count: positives``), or
``positives - negatives`` squashed the same way, ``sign(x) log(1 + |x|)`` (``count: net``). The
ranking is the score's; a probability is ``sigmoid(a * score + b)``, with ``a`` and ``b``
fitted to the training rows by logistic regression (Newton's method, deterministic), so logloss
and accuracy are those of a calibrated predictor and AUC that of the ranking. Each training row
enters the fit with its item's count *without that row* (leave one out): a row's own label is
part of its item's count, so the plain counts would tell the fit the answer and make it
over-confident on the held-out rows (on bc, test logloss 0.612 instead of 0.588). Each entity's
logit and probability are computed once, in float64: items of one count get one probability
(float32 kernels may round equal inputs differently, which would break the ties AUC counts). Nothing is trained
in the epochs: one epoch evaluates it (the recipes set ``train.epochs: 1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..schema import setting
from .base import ModelSettings, Recommender, bce, model_name, no_grad, np, torch

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class PopConfig(ModelSettings):
    """Item popularity (``kni_core.models.pop``)."""

    name: str = model_name("pop")
    count: str = setting("positives", "what an item's score counts in the training rows: its positives, or "
                                      "net: positives minus negatives", choices=("positives", "net"))

    def graph_needs(self) -> dict:
        return {"kg": False, "reach_hops": 0, "max_degree": 0}


class NoTraining:
    """The optimizer of a model fitted when it is built: a step changes nothing."""

    steps = 0

    def step(self, loss) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def item_counts(data, n_entity: int) -> tuple:
    """Training positives and negatives of every entity (as an item; 0 for the others)."""
    train = data.train
    positives = np.bincount(train[train[:, 2] == 1, 1], minlength=n_entity)
    negatives = np.bincount(train[train[:, 2] == 0, 1], minlength=n_entity)
    return positives, negatives


def fit(data, count: str = "positives") -> tuple:
    """``(score of every entity, a, b)``: the counts of ``count`` (``positives`` or ``net``)
    squashed, and their calibration fitted on the training rows' leave-one-out scores."""
    positives, negatives = item_counts(data, data.n_entity)
    items, labels = data.train[:, 1], data.train[:, 2]
    if count == "positives":
        counts, own = positives, labels               # a positive row adds 1 to its item's count
    else:
        counts, own = positives - negatives, 2 * labels - 1   # +1 for a positive, -1 for a negative
    a, b = fit_calibration(squash(counts[items] - own), labels)
    return squash(counts), a, b


def calibrated(score, a: float, b: float) -> tuple:
    """``(logit, probability)`` of ``sigmoid(a * score + b)``, in float64 then float32: equal
    scores get equal probabilities (the ties AUC counts survive)."""
    logit = a * np.asarray(score, np.float64) + b
    return logit.astype(np.float32), (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)


def squash(x):
    """``sign(x) log(1 + |x|)``: a count on the scale a logit can take."""
    return np.sign(x) * np.log1p(np.abs(x))


def fit_calibration(features, labels, iterations: int = 50) -> tuple[float, ...]:
    """The weights then the intercept of the logistic regression ``P(label) = sigmoid(w . x +
    b)`` of ``features`` (one column, or one column per feature), by Newton's method on the
    mean log-likelihood with a tiny ridge (so a constant feature still converges)."""
    x = np.asarray(features, np.float64)
    x = np.column_stack([x.reshape(len(x), -1), np.ones(len(x))])
    y = np.asarray(labels, np.float64)
    w = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) / len(y) + 1e-6 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x / len(y) + 1e-6 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return tuple(float(v) for v in w)


class Pop(Recommender):
    name = "pop"
    config_class = PopConfig
    label = "Pop"
    order = 5

    def __init__(self, score, a: float, b: float):
        super().__init__()
        logit, probability = calibrated(score, a, b)
        self.register_buffer("score", torch.as_tensor(score, dtype=torch.float32))
        self.register_buffer("calibration", torch.tensor([a, b], dtype=torch.float64))
        self.register_buffer("logit", torch.from_numpy(logit))
        self.register_buffer("probability", torch.from_numpy(probability))

    @classmethod
    def build(cls, cfg, data) -> "Pop":
        return cls(*fit(data, cfg.model.count))

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        return self.logit[items]

    @no_grad
    def scores(self, users: Tensor, items: Tensor) -> Tensor:
        return self.probability[items]

    def loss(self, users: Tensor, items: Tensor, labels: Tensor) -> Tensor:
        return bce(self(users, items), labels)

    def optimizer(self, train) -> NoTraining:
        return NoTraining()

    @no_grad
    def score_matrix(self, user: int, items: Tensor) -> Tensor:
        return self.probability[items]
