"""Top-N evaluation: the protocol of KGCN's and MKR's code, and a full-ranking variant.

``sampled`` (hwwang55/KGCN and hwwang55/MKR, ``src/train.py``: ``topk_settings``, ``topk_eval``):
``users`` (100) users drawn without replacement from those with a training interaction and a
test positive; for each, the candidates are all items minus the user's training items
(positives and negatives), the relevant items its test positives; candidates are ranked by
score (ties in item order, as their stable ``sorted``) and, for K in ``k``::

    precision@K = mean over users of hits@K / K
    recall@K    = mean over users of hits@K / |relevant|
    f1@K        = 2 P R / (P + R) of those two means (MKR's; 0 when both are 0)

``full`` (an all-ranking protocol): every user with a test positive (or a seeded sample of
``full_users`` of them, to bound its cost), and for K in ``full_k``: ``full_recall@K`` (as above)
and ``full_ndcg@K`` = DCG@K / IDCG@K with binary gains ``1 / log2(rank + 1)``, IDCG over
``min(|relevant|, K)`` hits, averaged over users. Its candidates depend on ``full_exclude_valid``:
false (the default, what runs stored before the setting existed used): the sampled protocol's,
every item but the user's training items, so the user's validation items stay candidates and a
validation positive ranked high takes a place from the test positives; true: the user's
validation items (positives and negatives, like the training items) are removed too, as
full-sort protocols that mask the training and validation interactions (RecBole's) do. The
setting is part of the run's stored config (``eval.topk``), not of the results' rows.

"All items" are the items that occur in a split (after the users without a training positive
are dropped): the same set for every model on a dataset. The originals' ``range(n_item)`` also
counts items rated only by dropped users (they can never be relevant). User samples come from
``numpy.random.default_rng(seed)``: first the sampled protocol's users, then the full ranking's
cap; both are sorted, so the same split gives every model the same users.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp

from .config import TopKConfig
from .data.prepare import PreparedData
from .results import TopKResult

SAMPLED, FULL = "sampled", "full"
#: (user, item) pairs scored per call of the score function.
CHUNK_PAIRS = 1 << 21

#: score(users (n,), items (m,), seed) -> (n, m) probabilities of every user with every item.
ScoreFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


# --------------------------------------------------------------------------------------------
# metrics


def sampled_metrics(hits: np.ndarray, n_relevant: np.ndarray, ks: list[int]) -> dict[str, float]:
    """``hits (U, >= max K)``: whether each user's r-th ranked candidate is relevant."""
    out: dict[str, float] = {}
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    for k in ks:
        h = hits[:, :k].sum(axis=1)
        p, r = float(np.mean(h / k)), float(np.mean(h / n_relevant))
        out[f"precision@{k}"], out[f"recall@{k}"] = p, r
        out[f"f1@{k}"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return out


def full_metrics(hits: np.ndarray, n_relevant: np.ndarray, ks: list[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    n_relevant = np.asarray(n_relevant)
    width = hits.shape[1]
    gains = 1.0 / np.log2(np.arange(2, width + 2))
    ideal = np.cumsum(gains)
    for k in ks:
        h = hits[:, :k]
        out[f"full_recall@{k}"] = float(np.mean(h.sum(axis=1) / n_relevant))
        dcg = (h * gains[:h.shape[1]]).sum(axis=1)
        idcg = ideal[np.minimum(n_relevant, min(k, width)) - 1]
        out[f"full_ndcg@{k}"] = float(np.mean(dcg / idcg))
    return out


def ranked_hits(scores: np.ndarray, excluded: np.ndarray, relevant: np.ndarray, depth: int) -> np.ndarray:
    """``(U, depth)`` hits of the top ``depth`` candidates, ranked by score descending with ties
    in column order; ``excluded`` columns (bool, like ``scores``) are never candidates."""
    scores = np.where(excluded, -np.inf, scores.astype(np.float64))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    rows = np.arange(len(scores))[:, None]
    return relevant[rows, order] & np.isfinite(scores[rows, order])


# --------------------------------------------------------------------------------------------
# the protocols


class TopKEvaluator:
    """Users, candidates and relevant items of a prepared dataset; :meth:`run` scores them."""

    def __init__(self, data: PreparedData, cfg: TopKConfig):
        self.cfg = cfg
        self.items = np.asarray(data.items, dtype=np.int64)
        n_rows = int(max(data.n_users, data.train[:, 0].max() if len(data.train) else 0)) + 1

        def matrix(pairs: np.ndarray) -> sp.csr_matrix:
            cols = np.searchsorted(self.items, pairs[:, 1])
            return sp.csr_matrix((np.ones(len(pairs), dtype=bool), (pairs[:, 0], cols)),
                                 shape=(n_rows, len(self.items)))

        self.train = matrix(data.train)
        self.valid = matrix(data.valid)
        self.relevant = matrix(data.test[data.test[:, 2] == 1])
        has_train = np.diff(self.train.indptr) > 0
        n_relevant = np.diff(self.relevant.indptr)
        self.n_relevant = n_relevant
        eligible = np.flatnonzero(has_train & (n_relevant > 0))
        rng = np.random.default_rng(cfg.seed)
        self.sampled_users = eligible if len(eligible) <= cfg.users else \
            np.sort(rng.choice(eligible, size=cfg.users, replace=False))
        self.full_users = eligible if not cfg.full_users or len(eligible) <= cfg.full_users else \
            np.sort(rng.choice(eligible, size=cfg.full_users, replace=False))
        self.eligible = eligible

    def excluded(self, users: np.ndarray, exclude_valid: bool = False) -> np.ndarray:
        """``(U, items)``: the columns that are not candidates of each user (its training items,
        and with ``exclude_valid`` its validation items)."""
        out = self.train[users].toarray()
        if exclude_valid:
            out |= self.valid[users].toarray()
        return out

    def hits(self, score: ScoreFn, users: np.ndarray, depth: int, seed: int, exclude_valid: bool = False) -> np.ndarray:
        depth = min(depth, len(self.items))
        out = np.zeros((len(users), depth), dtype=bool)
        chunk = max(1, CHUNK_PAIRS // max(len(self.items), 1))
        for n, lo in enumerate(range(0, len(users), chunk)):
            part = users[lo:lo + chunk]
            scores = np.asarray(score(part, self.items, seed + n)).reshape(len(part), len(self.items))
            out[lo:lo + chunk] = ranked_hits(scores, self.excluded(part, exclude_valid), self.relevant[part].toarray(),
                                             depth)
        return out

    def run(self, score: ScoreFn, epoch: int, n_eval: int, seed: int = 0) -> list[TopKResult]:
        """Both protocols (the full one if ``cfg.full``) with the model's current weights."""
        c = self.cfg
        results = []
        jobs = [(SAMPLED, self.sampled_users, list(c.k), sampled_metrics, False)]
        if c.full:
            jobs.append((FULL, self.full_users, list(c.full_k), full_metrics, c.full_exclude_valid))
        for i, (protocol, users, ks, metrics, exclude_valid) in enumerate(jobs):
            t0 = time.perf_counter()
            if len(users):
                hits = self.hits(score, users, max(ks), seed + 1_000_003 * i, exclude_valid)
                values = metrics(_pad(hits, max(ks)), self.n_relevant[users], ks)
            else:
                values = {}
            results.append(TopKResult(protocol, epoch, int(len(users)), c.seed, n_eval,
                                      round(time.perf_counter() - t0, 3), values))
        return results


def _pad(hits: np.ndarray, width: int) -> np.ndarray:
    """Fewer candidates than K: the missing ranks are misses."""
    if hits.shape[1] >= width:
        return hits
    return np.pad(hits, ((0, 0), (0, width - hits.shape[1])))


# --------------------------------------------------------------------------------------------
# the trainer's hook


class TopKHook:
    """What :meth:`kni_core.train.Trainer.fit` calls when ``eval.topk.enabled``: top-N after
    every ``every``-th epoch, and at the end with the selected epoch's weights (which the
    trainer keeps whenever the selection moves to an epoch without results)."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.cfg: TopKConfig = trainer.cfg.eval.topk
        self.enabled = self.cfg.enabled
        self._evaluator: TopKEvaluator | None = None

    @property
    def evaluator(self) -> TopKEvaluator:
        if self._evaluator is None:
            self._evaluator = TopKEvaluator(self.trainer.data, self.cfg)
        return self._evaluator

    def after_epoch(self, result):
        if self.enabled and self.cfg.every and result.epoch % self.cfg.every == 0:
            return dataclasses.replace(result, topk=tuple(self.evaluate(result.epoch)))
        return result

    def wants_weights(self, result) -> bool:
        """Whether the end needs the weights of ``result`` (a new selection without top-N)."""
        return self.enabled and not result.topk

    def finish(self, best):
        """``best`` with its top-N results (the trainer has put its weights back)."""
        if not self.enabled or best.topk:
            return best
        return dataclasses.replace(best, topk=tuple(self.evaluate(best.epoch)))

    def evaluate(self, epoch: int) -> list[TopKResult]:
        trainer = self.trainer
        n_eval = trainer.effective_n_eval(self.cfg.n_eval or trainer.cfg.eval.n_eval)
        return self.evaluator.run(score_function(trainer, n_eval), epoch, n_eval,
                                  seed=topk_seed(trainer.cfg.seed, epoch))


def topk_seed(run_seed: int, epoch: int) -> int:
    """The seed of the top-N passes with epoch ``epoch``'s weights: what ``kni recommend
    --hit-rate`` takes to reproduce a stored run's top-N (apart from the valid / test
    evaluations' seeds, ``kni_core.train``)."""
    from .protocol import eval_seed
    return eval_seed(run_seed, epoch, "topk")


def score_function(scorer, n_eval: int) -> ScoreFn:
    """The top-N score function of ``scorer`` (a Trainer, or kni_core.recommend.ModelScorer):
    a model that samples averages ``n_eval`` seeded passes of ``predict`` over every (user,
    item) pair; one that does not scores each user once with its ``score_matrix``, which shares
    the user's part across the items (:func:`user_matrix`)."""
    import torch

    def score(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
        if not scorer.model.stochastic:
            return user_matrix(scorer.model, users, items, scorer.device)
        pairs = np.stack([np.repeat(users, len(items)), np.tile(items, len(users))], axis=1)
        scores = scorer.predict(torch.from_numpy(pairs).to(scorer.device), repeats=n_eval, seed=seed)
        return np.asarray(scores).reshape(len(users), len(items))

    return score


def user_matrix(model, users: np.ndarray, items: np.ndarray, device) -> np.ndarray:
    """``(U, I)`` probabilities of every user with every item from the model's
    ``score_matrix`` (one pass, evaluation mode)."""
    import torch

    model.eval()
    items_t = torch.from_numpy(np.asarray(items, dtype=np.int64)).to(device)
    with torch.no_grad():
        return np.stack([model.score_matrix(int(u), items_t).cpu().numpy() for u in users]) \
            if len(users) else np.zeros((0, len(items)), dtype=np.float32)
