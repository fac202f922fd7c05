"""From a RawDataset to the tensors KNI trains on, exactly as DESIGN.md specifies.

Steps: seeded 6:2:2 split (users without a training positive dropped from every split);
one entity space (0 = padding, then users, then items and KG entities); relations with
fewer than ``min_relation_triples`` triples dropped and the rest collapsed into undirected
edges; entities kept only if reachable from a user or item within ``len(hop_n_sample)``
KG hops; the graph = those KG edges + the *training* positive user-item pairs, both ways;
a fixed-degree adjacency table sampled once from a seeded generator.

The result is cached on disk under a hash of every setting that shapes it, so the seeds of
a group and repeated runs share one copy.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..config import RunConfig, stable_hash
from .raw import RawDataset
from .setops import unique_ids, unique_rows

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass
class PreparedData:
    """Splits as ``(N, 3)`` int64 ``(user entity, item entity, label)`` and the adjacency table."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    adjacency: np.ndarray            # (n_entity, max_degree) int32, row 0 = padding
    n_entity: int                    # including the padding entity 0
    stats: dict = field(default_factory=dict)
    key: str = ""
    from_cache: bool = False

    @property
    def threshold(self) -> float:
        """Accuracy threshold: the training set's positive rate (as the original code)."""
        return float(self.train[:, 2].mean())


def preprocessing_settings(cfg: RunConfig) -> dict:
    """Every setting the prepared data depends on (and nothing else)."""
    d = cfg.dataset
    return {"version": CACHE_VERSION, "split": list(d.split), "split_seed": d.split_seed,
            "min_relation_triples": d.min_relation_triples, "rating_threshold": d.rating_threshold,
            "kg": cfg.model.kg, "reach_hops": len(cfg.model.hop_n_sample),
            "max_degree": cfg.model.max_degree}


def split_ratings(ratings: np.ndarray, fractions: list[float], seed: int) -> tuple[np.ndarray, ...]:
    """Seeded random split; then users with no training positive are dropped everywhere (RippleNet)."""
    n = len(ratings)
    order = np.random.default_rng(seed).permutation(n)
    n_valid, n_test = int(n * fractions[1]), int(n * fractions[2])
    valid_idx, test_idx = order[:n_valid], order[n_valid:n_valid + n_test]
    train_idx = order[n_valid + n_test:]
    train = ratings[np.sort(train_idx)]
    users_with_positive = np.unique(train[train[:, 2] == 1, 0])

    def keep(part: np.ndarray) -> np.ndarray:
        return part[np.isin(part[:, 0], users_with_positive)]

    return keep(train), keep(ratings[np.sort(valid_idx)]), keep(ratings[np.sort(test_idx)])


def kg_edges(kg: np.ndarray, min_triples: int) -> np.ndarray:
    """Undirected (head, tail) pairs of the relations with at least ``min_triples`` triples."""
    if len(kg) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    counts = np.bincount(kg[:, 1])
    kept = kg[counts[kg[:, 1]] >= min_triples]
    return kept[:, [0, 2]]


def reachable(n_nodes: int, edges: np.ndarray, seeds: np.ndarray, hops: int) -> np.ndarray:
    """Boolean mask of nodes within ``hops`` undirected steps of ``seeds``."""
    mask = np.zeros(n_nodes, dtype=bool)
    mask[seeds] = True
    if len(edges) == 0:
        return mask
    adj = sp.coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])),
                        shape=(n_nodes, n_nodes)).tocsr()
    adj = (adj + adj.T).tocsr()
    frontier = mask.copy()
    for _ in range(hops):
        nxt = (adj.T @ frontier.astype(np.int8)) > 0
        frontier = nxt & ~mask
        if not frontier.any():
            break
        mask |= frontier
    return mask


def neighbour_lists(n_nodes: int, edges: np.ndarray) -> sp.csr_matrix:
    """Symmetric, de-duplicated adjacency in CSR form (row i lists i's neighbours)."""
    both = np.vstack([edges, edges[:, ::-1]])
    adj = sp.coo_matrix((np.ones(len(both), dtype=np.int8), (both[:, 0], both[:, 1])),
                        shape=(n_nodes, n_nodes)).tocsr()
    adj.sum_duplicates()
    adj.sort_indices()
    return adj


def fixed_degree_table(adj: sp.csr_matrix, max_degree: int, seed: int, chunk: int = 4096) -> np.ndarray:
    """``[n, max_degree]`` table: a random subset of a rich node's neighbours, a sample with
    replacement of a poor node's, padding (0) for an isolated node."""
    rng = np.random.default_rng(seed)
    n = adj.shape[0]
    deg = np.diff(adj.indptr)
    table = np.zeros((n, max_degree), dtype=np.int32)
    rich = np.flatnonzero(deg >= max_degree)
    for row in rich:
        start = adj.indptr[row]
        pick = rng.choice(deg[row], size=max_degree, replace=False)
        table[row] = adj.indices[start + pick]
    poor = np.flatnonzero((deg > 0) & (deg < max_degree))
    for lo in range(0, len(poor), chunk):
        rows = poor[lo:lo + chunk]
        offsets = (rng.random((len(rows), max_degree)) * deg[rows, None]).astype(np.int64)
        table[rows] = adj.indices[adj.indptr[rows, None] + offsets]
    return table


def build(raw: RawDataset, cfg: RunConfig) -> PreparedData:
    """Run the whole pipeline (no cache)."""
    s = preprocessing_settings(cfg)
    t0 = time.perf_counter()
    train, valid, test = split_ratings(raw.ratings, s["split"], s["split_seed"])
    # One entity space: 0 padding, users 1..U, then items/KG entities shifted by U + 1.
    shift = raw.n_users + 1
    n_nodes = shift + raw.n_entities

    def to_entities(part: np.ndarray) -> np.ndarray:
        return np.column_stack([part[:, 0] + 1, part[:, 1] + shift, part[:, 2]])

    train, valid, test = (to_entities(p) for p in (train, valid, test))
    seeds = unique_ids(np.concatenate([p[:, :2].ravel() for p in (train, valid, test)]), n_nodes)
    kg = kg_edges(raw.kg, s["min_relation_triples"]) + shift if s["kg"] else np.zeros((0, 2), np.int64)
    keep = reachable(n_nodes, kg, seeds, s["reach_hops"])
    keep[0] = True
    kg = kg[keep[kg[:, 0]] & keep[kg[:, 1]]]

    remap = np.cumsum(keep) - 1                 # old id -> new id; padding stays 0
    n_entity = int(keep.sum())
    train, valid, test = (np.column_stack([remap[p[:, 0]], remap[p[:, 1]], p[:, 2]]) for p in (train, valid, test))
    kg = remap[kg]
    positives = train[train[:, 2] == 1, :2]
    adj = neighbour_lists(n_entity, np.vstack([kg, positives]))
    table = fixed_degree_table(adj, s["max_degree"], s["split_seed"])
    degree = np.diff(adj.indptr)
    stats = {
        "users": int(len(unique_ids(train[:, 0], n_entity))), "items": int(len(unique_ids(np.concatenate(
            [train[:, 1], valid[:, 1], test[:, 1]]), n_entity))),
        "entities": n_entity, "kg_edges": int(len(unique_rows(np.sort(kg, axis=1)))) if len(kg) else 0,
        "user_item_edges": int(len(positives)), "train": int(len(train)), "valid": int(len(valid)),
        "test": int(len(test)), "mean_degree": float(degree[1:].mean()) if n_entity > 1 else 0.0,
        "isolated": int((degree[1:] == 0).sum()), "seconds": round(time.perf_counter() - t0, 2),
    }
    return PreparedData(train, valid, test, table, n_entity, stats)


def cache_root() -> Path:
    return Path(os.environ.get("KNI_CACHE_DIR") or Path.home() / ".cache" / "kni-workbench")


def source_fingerprint(folder: Path) -> list:
    """Names, sizes and mtimes of the source files: a changed file invalidates the cache."""
    return sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in Path(folder).iterdir() if p.is_file())


def prepared_dir(dataset_id: str, key: str) -> Path:
    return cache_root() / "prepared" / f"{dataset_id}-{key}"


def save(prepared: PreparedData, directory: Path) -> None:
    """Write atomically: a half-written cache is never taken for a good one."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
    np.savez(tmp / "splits.npz", train=prepared.train, valid=prepared.valid, test=prepared.test)
    np.save(tmp / "adjacency.npy", prepared.adjacency)
    (tmp / "meta.json").write_text(json.dumps({"n_entity": prepared.n_entity, "stats": prepared.stats,
                                               "key": prepared.key}, indent=2))
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)


def load(directory: Path) -> PreparedData | None:
    try:
        meta = json.loads((directory / "meta.json").read_text())
        splits = np.load(directory / "splits.npz")
        table = np.load(directory / "adjacency.npy")
    except (OSError, ValueError, KeyError):
        return None
    return PreparedData(splits["train"], splits["valid"], splits["test"], table, meta["n_entity"],
                        meta["stats"], meta["key"], from_cache=True)


def prepare_cached(raw_loader, cfg: RunConfig, dataset_id: str, fingerprint: object,
                   use_cache: bool = True) -> PreparedData:
    """Load the prepared data for ``cfg`` from the cache, or build and store it.

    ``raw_loader`` is only called on a cache miss, so a hit skips reading the source files.
    """
    key = stable_hash({"settings": preprocessing_settings(cfg), "source": fingerprint})
    directory = prepared_dir(dataset_id, key)
    if use_cache:
        hit = load(directory)
        if hit is not None:
            log.info("reused the preprocessed cache %s", directory)
            return hit
    raw = raw_loader()
    prepared = build(raw, cfg)
    prepared.key = key
    if use_cache:
        save(prepared, directory)
        log.info("preprocessed in %.1f s, cached at %s", prepared.stats["seconds"], directory)
    return prepared
