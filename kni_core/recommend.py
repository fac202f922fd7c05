"""A user's top-k items from a saved model, scored as the top-N evaluation scores them.

Candidates are the top-N protocol's (:class:`kni_core.topk.TopKEvaluator`): every item of the
splits except the user's training items (positives and negatives); scores are the mean
sigmoid over ``n_eval`` sampled passes for a model that samples (KNI), one pass for the
others, ranked with ties in item order (:func:`kni_core.topk.ranked_hits`'s order). :func:`hit_rate` runs the sampled
protocol's user sample (same seed, same users as the stored top-N when ``users`` matches); with the
stored run's ``eval.batch_size`` and its top-N seed (:func:`kni_core.topk.topk_seed`), on the device
type it ran on, it gives the stored precision@K and recall@K.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from .config import TopKConfig
from .data.prepare import PreparedData
from .errors import KniError
from .topk import ScoreFn, TopKEvaluator, sampled_metrics
from .train import EVAL_ROWS_BUDGET


class RecommendError(KniError):
    """A user or a k that :func:`recommend` cannot serve."""


#: ``eval.batch_size``'s default: what a caller without the run's config gets.
EVAL_BATCH = 1024


class ModelScorer:
    """What :func:`kni_core.topk.score_function` needs from a trainer, for a bare model: the
    same chunked, generator-seeded ``predict`` as :meth:`kni_core.train.Trainer.predict`. KNI
    draws one set of table columns per chunk, so the scores are the run's only with the run's
    ``eval.batch_size`` (``eval_batch``) and the trainer's rows budget of the device."""

    def __init__(self, model, eval_batch: int = EVAL_BATCH):
        self.model = model.eval()
        self.device = model_device(model)
        self.eval_batch = eval_batch

    def eval_chunk(self, repeats: int) -> int:
        """Examples per scoring step (:meth:`kni_core.train.Trainer.eval_chunk`'s)."""
        return self.model.eval_chunk(self.eval_batch, repeats, EVAL_ROWS_BUDGET.get(self.device.type, 1 << 16))

    @torch.no_grad()
    def predict(self, pairs: torch.Tensor, repeats: int = 1, seed: int = 0) -> np.ndarray:
        model = self.model
        generator = torch.Generator(device=self.device).manual_seed(seed)
        chunk = self.eval_chunk(repeats)
        out = [model.predict(pairs[s:s + chunk, 0], pairs[s:s + chunk, 1], repeats, generator)
               for s in range(0, len(pairs), chunk)]
        return torch.cat(out).cpu().numpy() if out else np.zeros(0)


def model_device(model) -> torch.device:
    """Where the model's tensors are (the floors hold buffers, or nothing: then the CPU)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def effective_n_eval(model, n_eval: int) -> int:
    """Sampled passes per score: ``n_eval`` for a model that samples (KNI), else 1."""
    return model.passes(n_eval)


@dataclass(frozen=True)
class Recommendation:
    user: int
    items: np.ndarray               # entity ids, best first
    scores: np.ndarray
    marks: list[str]                # "test positive", "valid negative", ... or ""
    candidates: int
    n_eval: int
    seed: int


def split_marks(data: PreparedData, user: int) -> dict[int, str]:
    """The user's validation and test items: ``{item: "valid positive" | "test negative" | ...}``."""
    marks: dict[int, str] = {}
    for split in ("valid", "test"):
        rows = getattr(data, split)
        for item, label in rows[rows[:, 0] == user][:, 1:].tolist():
            marks[int(item)] = f"{split} {'positive' if label == 1 else 'negative'}"
    return marks


def recommend(model, data: PreparedData, user: int, k: int = 20, *, n_eval: int = 40, seed: int = 0,
              evaluator: TopKEvaluator | None = None, eval_batch: int = EVAL_BATCH) -> Recommendation:
    """The user's ``k`` best-scored candidates (internal entity ids)."""
    from .topk import score_function
    if not isinstance(user, (int, np.integer)) or not 0 < user <= data.n_users:
        raise RecommendError(f"entity {user} is not a user of this data; these are internal ids (users "
                             f"1..{data.n_users}): kni_core.explain.Namer.lookup finds one by its id in the files")
    if k < 1:
        raise RecommendError(f"k: expected at least 1, got {k}")
    evaluator = evaluator or TopKEvaluator(data, TopKConfig(full=False))
    n_eval = effective_n_eval(model, n_eval)
    score: ScoreFn = score_function(ModelScorer(model, eval_batch), n_eval)
    scores = np.asarray(score(np.array([user]), evaluator.items, seed), dtype=np.float64).reshape(-1)
    seen = evaluator.train[user].toarray().reshape(-1) if user < evaluator.train.shape[0] else \
        np.zeros(len(evaluator.items), dtype=bool)
    ranked = np.where(seen, -np.inf, scores)
    order = np.argsort(-ranked, kind="stable")[:min(k, int((~seen).sum()))]
    marks = split_marks(data, user)
    items = evaluator.items[order]
    return Recommendation(user, items, scores[order], [marks.get(int(i), "") for i in items],
                          int((~seen).sum()), n_eval, seed)


def hit_rate(model, data: PreparedData, *, users: int = 100, k: int = 20, n_eval: int = 40, user_seed: int = 0,
             seed: int = 0, eval_batch: int = EVAL_BATCH) -> dict:
    """Over ``users`` test users (the sampled top-N protocol's draw with ``user_seed``): the share
    whose top ``k`` holds a test positive, and precision@k / recall@k as the sampled protocol
    computes them (the stored values, given the stored run's users, n_eval, seed and eval_batch)."""
    from .topk import score_function
    evaluator = TopKEvaluator(data, TopKConfig(users=users, seed=user_seed, full=False, k=[k]))
    n_eval = effective_n_eval(model, n_eval)
    sample = evaluator.sampled_users
    hits = evaluator.hits(score_function(ModelScorer(model, eval_batch), n_eval), sample, k, seed)
    if hits.shape[1] < k:
        hits = np.pad(hits, ((0, 0), (0, k - hits.shape[1])))
    metrics = sampled_metrics(hits, evaluator.n_relevant[sample], [k]) if len(sample) else {}
    return {"users": int(len(sample)), "k": k, "n_eval": n_eval, "user_seed": user_seed, "seed": seed,
            f"hit_rate@{k}": float(hits.any(axis=1).mean()) if len(sample) else float("nan"),
            f"precision@{k}": metrics.get(f"precision@{k}", float("nan")),
            f"recall@{k}": metrics.get(f"recall@{k}", float("nan"))}
