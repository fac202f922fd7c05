"""Look inside a KNI prediction: the neighbour-pair matrix of the paper's case study.

For a (user, item) pair, KNI samples ``n1`` neighbours on each side, scores every pair
(user-side neighbour i incl. the user itself, item-side neighbour j incl. the item) with
``Nu_i . Nv_j`` and mixes those scores with one softmax attention over all ``(n1+1)^2`` pairs.
:func:`explain` returns, for seeded neighbourhood samples, that matrix with each neighbour
named (its kind, its id in the dataset's files, the relation linking it to its centre), the
model's probability for the pair (the mean of ``n_eval`` passes of explain's own seeded draws, the
pair scored alone), and how stable the top pairs are across samples. That probability is not the
score the run's evaluation gave the pair: that evaluation drew one set of adjacency-table columns
per step from a generator seeded with the run's seed, so the pair's draws depend on the seed and
on how many steps came before its own (not on the rows beside it); :func:`run_score` replays
them.
:func:`centre_mass` is the paper's early-summarization question in one number per example:
the attention on the (user itself, item itself) cell, against the rest of the matrix.

Everything here reads a trained model with neighbour-pair attention (``explainable``: KNI,
:class:`~kni_core.models.kni.KNI`); the draws are the model's own
(:meth:`~kni_core.models.kni.KNI.neighbour_pairs`), so a sample's logit is exactly the logit of a
forward pass with the same generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data.prepare import PreparedData
from .errors import KniError

if TYPE_CHECKING:
    from .models.kni import KNI

PADDING, USER, ITEM, ENTITY = "padding", "user", "item", "KG entity"
CENTRE = "itself"
INTERACTED = "interacted"           # a training positive (the graph's user-item edges)


class ExplainError(KniError):
    """The run or the pair cannot be explained (a baseline, an unknown user or item)."""


@dataclass(frozen=True)
class Neighbour:
    entity: int                     # internal entity id (0 = padding)
    kind: str                       # user / item / KG entity / padding
    raw: int | None                 # the id in the dataset's files, when known
    relation: str                   # how it links to its side's centre ("itself" for the centre)

    @property
    def name(self) -> str:
        if self.kind == PADDING:
            return "padding"
        kind = "entity" if self.kind == ENTITY else self.kind
        return f"{kind} {self.raw}" if self.raw is not None else f"{kind} #{self.entity}"

    def to_dict(self) -> dict:
        return {"entity": self.entity, "kind": self.kind, "raw_id": self.raw, "relation": self.relation,
                "name": self.name}


@dataclass(frozen=True)
class PairMatrix:
    """One sampled neighbourhood: rows the user side, columns the item side (centre first)."""

    seed: int
    users: list[Neighbour]
    items: list[Neighbour]
    attention: np.ndarray           # (n1+1, n1+1), sums to 1
    score: np.ndarray               # (n1+1, n1+1), Nu_i . Nv_j
    logit: float                    # sum(attention * score)

    @property
    def probability(self) -> float:
        return float(1.0 / (1.0 + np.exp(-self.logit)))

    @property
    def centre_mass(self) -> float:
        return float(self.attention[0, 0])

    def top_pairs(self, k: int = 5) -> list[dict]:
        """The ``k`` entity pairs of most attention. Neighbours are drawn with replacement, so one
        pair can fill several cells: its ``attention`` and ``contribution`` (attention x score) are
        summed over its ``cells``, ``score`` is their attention-weighted mean, and ``row`` /
        ``col`` is its cell of most attention (the first such in reading order)."""
        pairs: dict[tuple[int, int], dict] = {}
        for flat in np.argsort(-self.attention, axis=None, kind="stable"):
            i, j = divmod(int(flat), self.attention.shape[1])
            a, sc = float(self.attention[i, j]), float(self.score[i, j])
            key = (self.users[i].entity, self.items[j].entity)
            if key not in pairs:
                pairs[key] = {"row": i, "col": j, "user_side": self.users[i].name, "item_side": self.items[j].name,
                              "user_entity": key[0], "item_entity": key[1], "cells": 0, "attention": 0.0,
                              "contribution": 0.0}
            p = pairs[key]
            p["cells"] += 1
            p["attention"] += a
            p["contribution"] += a * sc
        out = sorted(pairs.values(), key=lambda p: -p["attention"])[:k]     # stable: ties keep cell order
        for p in out:
            p["score"] = p["contribution"] / p["attention"] if p["attention"] > 0 else \
                float(self.score[p["row"], p["col"]])
        return out

    def to_dict(self, top: int = 5) -> dict:
        return {"seed": self.seed, "rows": [n.to_dict() for n in self.users],
                "cols": [n.to_dict() for n in self.items], "attention": self.attention.tolist(),
                "score": self.score.tolist(), "logit": self.logit, "probability": self.probability,
                "centre_mass": self.centre_mass, "top_pairs": self.top_pairs(top)}


@dataclass(frozen=True)
class Explanation:
    user: Neighbour
    item: Neighbour
    probability: float              # mean sigmoid over n_eval passes seeded ``seed``, the pair alone in its batch
    n_eval: int
    seed: int
    label: str | None               # "train/valid/test positive|negative", or None for an unseen pair
    samples: list[PairMatrix]
    stability: list[dict] = field(default_factory=list)

    def to_dict(self, top: int = 5) -> dict:
        return {"user": self.user.to_dict(), "item": self.item.to_dict(), "probability": self.probability,
                "n_eval": self.n_eval, "seed": self.seed, "label": self.label,
                "samples": [m.to_dict(top) for m in self.samples], "stability": self.stability}


class Namer:
    """Names entities of a prepared dataset and the relations between a centre and its neighbours."""

    def __init__(self, data: PreparedData):
        self.data = data
        self.n_users = int(data.n_users)
        self.items = np.asarray(data.items, dtype=np.int64)
        self.triples = np.asarray(data.kg_triples, dtype=np.int64)
        self.raw_ids = data.raw_ids
        self.raw_relations = data.raw_relations

    def kind(self, entity: int) -> str:
        if entity <= 0:
            return PADDING
        if entity <= self.n_users:
            return USER
        i = np.searchsorted(self.items, entity)
        return ITEM if i < len(self.items) and self.items[i] == entity else ENTITY

    def raw(self, entity: int) -> int | None:
        if self.raw_ids is None or entity <= 0 or entity >= len(self.raw_ids):
            return None
        return int(self.raw_ids[entity])

    def relation_name(self, r: int) -> str:
        raw = self.raw_relations
        return f"relation {int(raw[r]) if raw is not None and r < len(raw) else r}"

    def relations(self, centre: int, neighbours: np.ndarray) -> list[str]:
        """How each neighbour is linked to ``centre`` in the graph: a training interaction, or the
        KG relation(s) (``relation R`` from centre to neighbour, ``relation R (inverse)`` the
        other way), ``-`` for padding."""
        t = self.triples
        rows = t[(t[:, 0] == centre) | (t[:, 2] == centre)] if len(t) else t
        out = []
        for nb in neighbours.tolist():
            if nb <= 0:
                out.append("-")
                continue
            names = [self.relation_name(int(r)) for r in rows[(rows[:, 0] == centre) & (rows[:, 2] == nb), 1]]
            names += [self.relation_name(int(r)) + " (inverse)"
                      for r in rows[(rows[:, 2] == centre) & (rows[:, 0] == nb), 1]]
            if (centre <= self.n_users) != (nb <= self.n_users):
                names.insert(0, INTERACTED)
            out.append(" / ".join(dict.fromkeys(names)) or "?")
        return out

    def side(self, ids: np.ndarray) -> list[Neighbour]:
        centre = int(ids[0])
        rel = [CENTRE] + self.relations(centre, ids[1:])
        return [Neighbour(int(e), self.kind(int(e)), self.raw(int(e)), r) for e, r in zip(ids.tolist(), rel)]

    def entity(self, entity: int) -> Neighbour:
        return Neighbour(entity, self.kind(entity), self.raw(entity), CENTRE)

    def lookup(self, kind: str, raw: int) -> int:
        """The internal entity id of the ``kind`` (user / item) whose id in the dataset's files
        is ``raw``; without the id maps, ``raw`` is taken as the internal id."""
        if self.raw_ids is None:
            entity = int(raw)
        else:
            lo, hi = (1, self.n_users + 1) if kind == USER else (self.n_users + 1, len(self.raw_ids))
            hits = np.flatnonzero(self.raw_ids[lo:hi] == raw)
            entity = int(hits[0]) + lo if len(hits) else -1
        if entity <= 0 or self.kind(entity) != kind:
            raise ExplainError(f"no {kind} {raw} in this run's prepared data (ids as in the dataset's files): "
                               f"{ABSENT[kind]}")
        return entity


#: Why an id the prepared data lacks may be missing, when the ratings file is not at hand.
ABSENT = {USER: "either the ratings file has no such user, or preprocessing dropped it (a user with no positive "
                "rating in the training split is dropped from every split)",
          ITEM: "either no rating in the ratings file names it, or every user who rated it was dropped (users "
                "with no positive rating in the training split are dropped from every split)"}


def why_absent(kind: str, raw: int, ratings: np.ndarray) -> str:
    """Which of :data:`ABSENT`'s reasons holds for a ``kind`` id the prepared data lacks, read in
    the dataset's ``(user, item, label)`` ratings (ids as in its files)."""
    column = ratings[:, 0] if kind == USER else ratings[:, 1]
    if not (column == raw).any():
        return f"no {kind} {raw} in the ratings file (ids as in the dataset's files)"
    if kind == USER:
        return (f"user {raw} is in the ratings file but not in this run's data: it has no positive rating in the "
                f"training split, and such users are dropped from every split (RippleNet's preprocessing)")
    return (f"item {raw} is in the ratings file but not in this run's data: every user who rated it has no "
            f"positive rating in the training split, and such users are dropped from every split")


def pair_label(data: PreparedData, user: int, item: int) -> str | None:
    """Where the pair is in the splits (``test positive``, ...), None when in none."""
    for split in ("train", "valid", "test"):
        rows = getattr(data, split)
        hit = rows[(rows[:, 0] == user) & (rows[:, 1] == item)]
        if len(hit):
            return f"{split} {'positive' if hit[0, 2] == 1 else 'negative'}"
    return None


def check_model(model) -> KNI:
    if not getattr(model, "explainable", False):
        raise ExplainError("explain reads KNI's neighbour-pair attention: it works for KNI and NI runs "
                           "(model.name kni), not for baselines (kni recommend scores them)")
    return model


def check_pair(namer: Namer, user: int, item: int | None = None, samples: int = 1) -> None:
    """ExplainError unless ``user`` is a user entity and ``item`` (when given) an item entity of
    the data (internal ids: :meth:`Namer.lookup` finds them from the files' ids)."""
    n = int(namer.data.n_entity)
    for entity, kind in ((user, USER), (item, ITEM)):
        if entity is None:
            continue
        inside = isinstance(entity, (int, np.integer)) and 0 < entity < n
        if not inside or namer.kind(int(entity)) != kind:
            found = _a(namer.kind(int(entity))) if inside else f"outside 1..{n - 1}"
            raise ExplainError(f"entity {entity} is not {_a(kind)} of this data ({found}); these are internal ids "
                               f"(users 1..{namer.n_users}): Namer.lookup finds one by its id in the files")
    if samples < 1:
        raise ExplainError(f"samples: expected at least 1, got {samples}")


def _a(kind: str) -> str:
    return {ITEM: "an item", PADDING: "the padding entity"}.get(kind, f"a {kind}")


def explain(model: KNI, data: PreparedData, user: int, item: int, *, n_eval: int = 40, seed: int = 0,
            samples: int = 1, namer: Namer | None = None) -> Explanation:
    """Explain the prediction of internal entities ``user`` and ``item``: the probability averaged
    over ``n_eval`` passes of the pair alone (a batch of one, generator seeded ``seed``), and
    ``samples`` neighbourhood samples (sample ``s`` drawn from a generator seeded ``seed + s``)
    with their pair matrices and the stability of their top pairs."""
    check_model(model)
    namer = namer or Namer(data)
    check_pair(namer, user, item, samples)
    device = model.embedding.device
    u = torch.tensor([user], device=device)
    v = torch.tensor([item], device=device)
    gen = torch.Generator(device=device)
    probability = float(model.predict(u, v, n_eval, gen.manual_seed(seed))[0])
    mats = []
    for s in range(max(1, samples)):
        uid, vid, score, atn = model.neighbour_pairs(u, v, 1, gen.manual_seed(seed + s))
        a, sc = atn[0].double().cpu().numpy(), score[0].double().cpu().numpy()
        mats.append(PairMatrix(seed + s, namer.side(uid[0].cpu().numpy()), namer.side(vid[0].cpu().numpy()),
                               a, sc, float((a * sc).sum())))
    return Explanation(namer.entity(user), namer.entity(item), probability, n_eval, seed, pair_label(data, user, item),
                       mats, stability(mats))


@dataclass(frozen=True)
class RunScore:
    split: str                      # valid / test: where the run's evaluation scored the pair
    row: int                        # its row in that split
    score: float
    seed: int                       # the generator's seed of the split's evaluation
    batch: int                      # rows per evaluation step of the split (the run's batches)

    def to_dict(self) -> dict:
        return {"split": self.split, "row": self.row, "score": self.score, "seed": self.seed, "batch": self.batch}


def run_score(model, data: PreparedData, user: int, item: int, *, run_seed: int, epoch: int, n_eval: int,
              eval_batch: int) -> RunScore | None:
    """The score the run's evaluation at ``epoch`` gave the pair (run seed ``run_seed``, its
    ``eval.n_eval`` and ``eval.batch_size``, the weights of that epoch): its split is scored
    again batch by batch, with the run's seed, up to the pair's batch. The same number only on
    the device type the run ran on (CPU and CUDA generators draw differently). None for a pair
    in neither the validation nor the test split."""
    from .protocol import eval_seed
    from .recommend import ModelScorer
    for split in ("valid", "test"):
        rows = getattr(data, split)
        hit = np.flatnonzero((rows[:, 0] == user) & (rows[:, 1] == item))
        if len(hit):
            scorer = ModelScorer(model, eval_batch)
            repeats = model.passes(n_eval)
            chunk = scorer.eval_chunk(repeats)
            row = int(hit[0])
            end = min(len(rows), (row // chunk + 1) * chunk)
            seed = eval_seed(run_seed, epoch, split)
            pairs = torch.from_numpy(np.ascontiguousarray(rows[:end])).to(scorer.device)
            return RunScore(split, row, float(scorer.predict(pairs, repeats, seed)[row]), seed, chunk)
    return None


def stability(mats: list[PairMatrix], top: int = 8) -> list[dict]:
    """Across samples, per pair of *entities* (positions change from sample to sample): the mean
    attention it gets (summed over the cells it fills - neighbours drawn with replacement can
    repeat - and 0 in a sample that did not draw it), the share of samples that drew it, and the
    share in which it was the sample's top pair (the most attention summed over its cells: the
    first row of :meth:`PairMatrix.top_pairs`, so both tables name the same pair)."""
    total: dict[tuple[int, int], float] = {}
    drawn: dict[tuple[int, int], int] = {}
    first: dict[tuple[int, int], int] = {}
    names: dict[tuple[int, int], tuple[str, str]] = {}
    for m in mats:
        cells: dict[tuple[int, int], float] = {}
        for i, nu in enumerate(m.users):
            for j, nv in enumerate(m.items):
                key = (nu.entity, nv.entity)
                cells[key] = cells.get(key, 0.0) + float(m.attention[i, j])
                names.setdefault(key, (nu.name, nv.name))
        leader = m.top_pairs(1)[0]
        best = (leader["user_entity"], leader["item_entity"])
        first[best] = first.get(best, 0) + 1
        for key, value in cells.items():
            total[key] = total.get(key, 0.0) + value
            drawn[key] = drawn.get(key, 0) + 1
    n = len(mats)
    rows = [{"user_side": names[k][0], "item_side": names[k][1], "user_entity": k[0], "item_entity": k[1],
             "mean_attention": total[k] / n, "drawn": drawn[k] / n, "top1": first.get(k, 0) / n} for k in total]
    rows.sort(key=lambda r: (-r["top1"], -r["mean_attention"]))
    return rows[:top]


@torch.no_grad()
def centre_mass(model: KNI, pairs: np.ndarray, *, repeats: int = 4, seed: int = 0,
                rows_budget: int = 1 << 17) -> np.ndarray:
    """Per (user, item) row of ``pairs``: the attention on the centre cell (the user itself with
    the item itself), averaged over ``repeats`` sampled neighbourhoods. ``1 / (n1+1)^2`` is what
    uniform attention would give; a KNI that "summarises early" would put most mass there."""
    check_model(model)
    device = model.embedding.device
    gen = torch.Generator(device=device).manual_seed(seed)
    hops = model.hops
    support = sum(int(np.prod(hops[:k + 1])) for k in range(len(hops)))
    chunk = max(1, rows_budget // (repeats * 2 * support))
    out = []
    t = torch.from_numpy(np.asarray(pairs, dtype=np.int64)).to(device)
    for lo in range(0, len(t), chunk):
        batch = t[lo:lo + chunk]
        _, _, _, atn = model.neighbour_pairs(batch[:, 0], batch[:, 1], repeats, gen)
        out.append(atn[:, 0, 0].view(repeats, len(batch)).mean(dim=0).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def side_size(model) -> int:
    """``n1 + 1``: a side of the neighbour-pair matrix (the user or the item and its sampled neighbours)."""
    return check_model(model).hops[1] + 1


def summary(values: np.ndarray) -> dict:
    """Mean and quartiles of a distribution (the early-summarization statistic's view)."""
    if len(values) == 0:
        return {"n": 0, "mean": float("nan"), "q1": float("nan"), "median": float("nan"), "q3": float("nan")}
    q1, med, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return {"n": int(len(values)), "mean": float(values.mean()), "q1": float(q1), "median": float(med),
            "q3": float(q3)}
