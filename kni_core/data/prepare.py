"""From a RawDataset to the tensors KNI trains on, exactly as docs/design.md specifies.

Steps: seeded 6:2:2 split, by default exactly the original's (users without a training
positive dropped from every split);
one entity space (0 = padding, then users, then items and KG entities); relations with
fewer than ``min_relation_triples`` triples dropped and the rest collapsed into undirected
edges; entities kept only if reachable from a user or item within ``len(hop_n_sample)``
KG hops; the graph = those KG edges + the *training* positive user-item pairs, both ways;
a fixed-degree adjacency table sampled once from a seeded generator (KNI's; models that do
not use it ask for none). The relation-typed KG triples, the number of relations and of users
and the items are kept as well, for the baselines and the top-N evaluation.

The result is cached on disk under a hash of every setting that shapes it, so the seeds of
a group and repeated runs share one copy.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:                    # scipy is imported where a graph is built: validating a
    import scipy.sparse as sp  # recipe (which imports this package) stays light

from ..config import RunConfig, stable_hash
from ..errors import DataError
from .raw import RawDataset
from .setops import isin_sorted, unique, unique_ids, unique_rows

log = logging.getLogger(__name__)

# 2: reachability counted in int32, the original's split; 3: typed triples, items; 4: the files' ids of
# renumbered (sparse) ids, which 3 named by their new ids
CACHE_VERSION = 4


@dataclass
class PreparedData:
    """Splits as ``(N, 3)`` int64 ``(user entity, item entity, label)`` and the adjacency table.

    Entity ids: 0 is padding, ``1..n_users`` the users, then the items and the KG entities.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    adjacency: np.ndarray            # (n_entity, max_degree) int32, row 0 = padding
    n_entity: int                    # including the padding entity 0
    stats: dict = field(default_factory=dict)
    key: str = ""
    from_cache: bool = False
    # (M, 3) int64 (head, relation, tail) entity ids, directed as in the source KG: the kept
    # relations (renumbered 0..n_relation-1) between kept entities; empty with kg: false.
    kg_triples: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    n_relation: int = 0
    n_users: int = 0                 # users are the entities 1..n_users
    # Entity ids of every item that occurs in a split, ascending: the top-N candidates.
    items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # The ids of the dataset's files (after the reader's renumbering of sparse ids, if any):
    # per entity, its user id (users) or entity id (items, KG entities), -1 for padding; per
    # kept relation, its relation id. None in caches written before they were kept (names
    # then show the internal ids only: kni explain).
    raw_ids: np.ndarray | None = None
    raw_relations: np.ndarray | None = None
    # The sha256 of each source file the data was prepared from (empty for generated data):
    # what a run records so a reader can check which files gave its numbers.
    sources: dict = field(default_factory=dict)
    # What the data was prepared for (:func:`made_for`): a Trainer refuses data of another
    # dataset section or other preprocessing settings. Empty: not known (built by hand).
    made_for: dict = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        """Accuracy threshold: the training set's positive rate (as the original code)."""
        return float(self.train[:, 2].mean())


def preprocessing_settings(cfg: RunConfig) -> dict:
    """Every setting the prepared data depends on (and nothing else)."""
    d = cfg.dataset
    needs = cfg.model.graph_needs()
    return {"version": CACHE_VERSION, "split": list(d.split), "split_seed": d.split_seed,
            "split_method": d.split_method,
            "min_relation_triples": d.min_relation_triples, "rating_threshold": d.rating_threshold,
            "kg": needs["kg"], "reach_hops": needs["reach_hops"], "max_degree": needs["max_degree"]}


def made_for(cfg: RunConfig) -> dict:
    """What prepared data for ``cfg`` depends on: its dataset section and the preprocessing
    settings its model asks for (the knowledge graph or not, the hops, the table's width)."""
    return {"dataset": cfg.to_dict()["dataset"], "settings": preprocessing_settings(cfg)}


def check_prepared_for(cfg: RunConfig, data: PreparedData) -> None:
    """ConfigError naming what differs when ``data`` was prepared for another configuration
    than ``cfg`` (a model trained on it would not be the one the config describes)."""
    if not data.made_for:
        return
    wanted, had = made_for(cfg), data.made_for
    differ = [f"dataset.{k}" for k in sorted(set(wanted["dataset"]) | set(had.get("dataset", {})))
              if wanted["dataset"].get(k) != had.get("dataset", {}).get(k)]
    differ += [f"the graph's {k} (model settings)" for k in sorted(set(wanted["settings"]) - set(wanted["dataset"]))
               if wanted["settings"].get(k) != had.get("settings", {}).get(k)]
    if differ:
        from ..errors import ConfigError
        raise ConfigError(f"the data was prepared for another configuration ({', '.join(differ)} differ); "
                          "prepare(cfg) the data for this one")


def split_ratings(ratings: np.ndarray, fractions: list[float], seed: int,
                  method: str = "ripplenet") -> tuple[np.ndarray, ...]:
    """Seeded split; then users with no training positive are dropped everywhere (RippleNet).

    ``ripplenet`` draws the rows exactly as RippleNet's and KNI's preprocessing does under
    ``np.random.seed(seed)``: ``int(n * valid)`` validation rows without replacement from all
    rows, then ``int(n * test)`` test rows from the rest (in ascending row order, which is the
    order a Python set of the remaining row numbers iterates in), training = what is left, in
    row order; validation and test keep the order they were drawn in. On Book-Crossing with
    seed 555 it gives the original's 80,513 / 24,038 / 23,981 rows. ``permutation`` (the
    default before that was known) is one shuffle with numpy's Generator.
    """
    n = len(ratings)
    n_valid, n_test = int(n * fractions[1]), int(n * fractions[2])
    if method == "ripplenet":
        # RandomState.choice(n, k, replace=False) is permutation(n)[:k]: the legacy stream
        # is frozen by numpy's compatibility policy, so these rows never change.
        rs = np.random.RandomState(seed)
        valid_idx = rs.permutation(n)[:n_valid]
        taken = np.zeros(n, dtype=bool)         # setdiff1d's ascending rows, without its hashing
        taken[valid_idx] = True
        rest = np.flatnonzero(~taken)
        test_idx = rest[rs.permutation(len(rest))[:n_test]]
        taken[test_idx] = True
        train_idx = np.flatnonzero(~taken)
    elif method == "permutation":
        order = np.random.default_rng(seed).permutation(n)
        valid_idx, test_idx = np.sort(order[:n_valid]), np.sort(order[n_valid:n_valid + n_test])
        train_idx = np.sort(order[n_valid + n_test:])
    else:
        raise ValueError(f"unknown split method {method!r}")
    train = ratings[train_idx]
    users_with_positive = unique(train[train[:, 2] == 1, 0])

    def keep(part: np.ndarray) -> np.ndarray:
        return part[isin_sorted(part[:, 0], users_with_positive)]

    return keep(train), keep(ratings[valid_idx]), keep(ratings[test_idx])


def check_splits(parts: dict[str, np.ndarray], fractions: list[float], raw: RawDataset) -> None:
    """Refuse a split that cannot give metrics: a split asked for (share > 0) that is empty or
    holds one label only (AUC undefined), or a training split of one label."""
    r = raw.ratings
    pos = int(r[:, 2].sum())
    data = (f"the data has {len(r):,} rating(s) of {len(unique(r[:, 0])):,} user(s), {pos:,} positive and "
            f"{len(r) - pos:,} negative")
    for (name, part), share in zip(parts.items(), fractions):
        if share <= 0:
            continue
        if len(part) == 0:
            why = ("no user has a positive rating in the training split (users without one are dropped)"
                   if name == "train" else "no rating is left in it")
            raise DataError(f"degenerate split: the {name} split is empty: {why}; {data}. Each split needs "
                            "ratings of both labels from several users.", raw.source)
        labels = unique(part[:, 2])
        if len(labels) < 2:
            only = "positive" if labels[0] == 1 else "negative"
            why = "the model cannot learn to tell them apart" if name == "train" else "its AUC is undefined"
            raise DataError(f"degenerate split: the {name} split holds only {only} labels ({len(part):,} rows), so "
                            f"{why}"
                            f"; {data}. Each split needs ratings of both labels from several users.", raw.source)


def kg_edges(kg: np.ndarray, min_triples: int) -> np.ndarray:
    """Undirected (head, tail) pairs of the relations with at least ``min_triples`` triples."""
    if len(kg) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    counts = np.bincount(kg[:, 1])
    kept = kg[counts[kg[:, 1]] >= min_triples]
    return kept[:, [0, 2]]


def kg_triples(kg: np.ndarray, min_triples: int) -> tuple[np.ndarray, int]:
    """The triples of the relations with at least ``min_triples`` triples, relations renumbered
    ``0..R-1`` in ascending order of their ids; returns ``(triples, R)``. The rows are those
    :func:`kg_edges` keeps, in the same order."""
    if len(kg) == 0:
        return np.zeros((0, 3), dtype=np.int64), 0
    counts = np.bincount(kg[:, 1])
    kept_relations = np.flatnonzero(counts >= min_triples)
    kept_relations = kept_relations[counts[kept_relations] > 0]
    renumber = np.full(len(counts), -1, dtype=np.int64)
    renumber[kept_relations] = np.arange(len(kept_relations))
    kept = kg[counts[kg[:, 1]] >= min_triples]
    return np.column_stack([kept[:, 0], renumber[kept[:, 1]], kept[:, 2]]).astype(np.int64), len(kept_relations)


def reachable(n_nodes: int, edges: np.ndarray, seeds: np.ndarray, hops: int) -> np.ndarray:
    """Boolean mask of nodes within ``hops`` undirected steps of ``seeds``."""
    import scipy.sparse as sp
    mask = np.zeros(n_nodes, dtype=bool)
    mask[seeds] = True
    if len(edges) == 0:
        return mask
    # int32 counts: with int8 a node with 128-255 (or 256) frontier neighbours summed to a
    # negative (or zero) count and was never reached, silently dropping the KG's hubs.
    adj = sp.coo_matrix((np.ones(len(edges), dtype=np.int32), (edges[:, 0], edges[:, 1])),
                        shape=(n_nodes, n_nodes)).tocsr()
    adj = (adj + adj.T).tocsr()
    frontier = mask.copy()
    for _ in range(hops):
        nxt = (adj.T @ frontier.astype(np.int32)) > 0
        frontier = nxt & ~mask
        if not frontier.any():
            break
        mask |= frontier
    return mask


def neighbour_lists(n_nodes: int, edges: np.ndarray) -> sp.csr_matrix:
    """Symmetric, de-duplicated adjacency in CSR form (row i lists i's neighbours)."""
    import scipy.sparse as sp
    both = np.vstack([edges, edges[:, ::-1]])
    # int32: summing duplicates in int8 could wrap to 0 and scipy drops zero entries.
    adj = sp.coo_matrix((np.ones(len(both), dtype=np.int32), (both[:, 0], both[:, 1])),
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
    train, valid, test = split_ratings(raw.ratings, s["split"], s["split_seed"], s["split_method"])
    check_splits({"train": train, "valid": valid, "test": test}, s["split"], raw)
    # One entity space: 0 padding, users 1..U, then items/KG entities shifted by U + 1.
    shift = raw.n_users + 1
    n_nodes = shift + raw.n_entities

    def to_entities(part: np.ndarray) -> np.ndarray:
        return np.column_stack([part[:, 0] + 1, part[:, 1] + shift, part[:, 2]])

    train, valid, test = (to_entities(p) for p in (train, valid, test))
    seeds = unique_ids(np.concatenate([p[:, :2].ravel() for p in (train, valid, test)]), n_nodes)
    kg = kg_edges(raw.kg, s["min_relation_triples"]) + shift if s["kg"] else np.zeros((0, 2), np.int64)
    if s["kg"]:
        triples, n_relation = kg_triples(raw.kg, s["min_relation_triples"])
        triples[:, [0, 2]] += shift
        counts = np.bincount(raw.kg[:, 1]) if len(raw.kg) else np.zeros(0, np.int64)
        raw_relations = np.flatnonzero((counts >= s["min_relation_triples"]) & (counts > 0)).astype(np.int64)
    else:
        triples, n_relation = np.zeros((0, 3), np.int64), 0
        raw_relations = np.zeros(0, np.int64)
    warnings = []
    if s["kg"] and len(raw.kg) and not len(kg):
        largest = int(np.bincount(raw.kg[:, 1]).max())
        warnings.append(f"the knowledge graph is dropped: each of its {raw.n_relations} relation(s) has fewer than "
                        f"dataset.min_relation_triples = {s['min_relation_triples']} triples (the largest has "
                        f"{largest}), so this KNI run has no KG (as NI); lower min_relation_triples to keep it")
    keep = reachable(n_nodes, kg, seeds, s["reach_hops"])
    keep[0] = True
    inside = keep[kg[:, 0]] & keep[kg[:, 1]]
    kg = kg[inside]
    triples = triples[inside]

    remap = np.cumsum(keep) - 1                 # old id -> new id; padding stays 0
    old = np.flatnonzero(keep)                  # new id -> old id
    raw_ids = np.where(old < shift, old - 1, old - shift).astype(np.int64)
    raw_ids[0] = -1
    for kind, ids in (("users", old < shift), ("entities", old >= shift)):
        renumbered = raw.file_ids.get(kind)
        if renumbered is not None:            # the reader renumbered sparse ids: name them as the files do
            ids[0] = False
            raw_ids[ids] = renumbered[raw_ids[ids]]
    n_entity = int(keep.sum())
    n_users = int(keep[1:shift].sum())          # users come first, so they stay 1..n_users
    train, valid, test = (np.column_stack([remap[p[:, 0]], remap[p[:, 1]], p[:, 2]]) for p in (train, valid, test))
    kg = remap[kg]
    triples = np.column_stack([remap[triples[:, 0]], triples[:, 1], remap[triples[:, 2]]]).astype(np.int64)
    items = unique(np.concatenate([train[:, 1], valid[:, 1], test[:, 1]]))
    positives = train[train[:, 2] == 1, :2]
    adj = neighbour_lists(n_entity, np.vstack([kg, positives]))
    if s["max_degree"] > 0:
        table = fixed_degree_table(adj, s["max_degree"], s["split_seed"])
    else:                                       # a model without KNI's adjacency table
        table = np.zeros((n_entity, 0), dtype=np.int32)
    degree = np.diff(adj.indptr)
    stats = {
        "users": int(len(unique_ids(train[:, 0], n_entity))), "items": int(len(unique_ids(np.concatenate(
            [train[:, 1], valid[:, 1], test[:, 1]]), n_entity))),
        "entities": n_entity, "kg_edges": int(len(unique_rows(np.sort(kg, axis=1)))) if len(kg) else 0,
        "user_item_edges": int(len(positives)), "train": int(len(train)), "valid": int(len(valid)),
        "test": int(len(test)), "mean_degree": float(degree[1:].mean()) if n_entity > 1 else 0.0,
        "isolated": int((degree[1:] == 0).sum()), "relations": n_relation,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    for w in warnings:
        log.warning("%s: %s", raw.kg_source or raw.source, w)
    if raw.warnings or warnings:                # the reader logged its own already
        stats["warnings"] = raw.warnings + warnings
    return PreparedData(train, valid, test, table, n_entity, stats, kg_triples=triples, n_relation=n_relation,
                        n_users=n_users, items=items, raw_ids=raw_ids, raw_relations=raw_relations,
                        made_for=made_for(cfg))


def cache_root() -> Path:
    return Path(os.environ.get("KNI_CACHE_DIR") or Path.home() / ".cache" / "kni-workbench")


def source_fingerprint(folder: Path) -> list:
    """What identifies each source file, so that a changed file invalidates the cache: its name,
    size, mtime, ctime (ns) and inode. A copy that keeps the mtime (``cp -p``, ``rsync -a``,
    ``tar x``, ``shutil.copy2``) or an edit that restores it (``touch -r``) still gets a new
    ctime or inode, which no tool can set. Hashing the files instead would make every cache hit
    read them all (bc: 6 ms, but growing with the data)."""
    return sorted((p.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
                  for p in Path(folder).iterdir() if p.is_file() for st in (p.stat(),))


def source_digests(folder: Path, files: tuple[str, ...] | list[str] | None = None) -> dict[str, str]:
    """The sha256 of the source files ``files`` (paths: their names in ``folder`` are used) or,
    by default, of every file of ``folder``."""
    names = None if files is None else {Path(f).name for f in files}
    return {p.name: _sha256(p) for p in sorted(Path(folder).iterdir())
            if p.is_file() and (names is None or p.name in names)}


def prepared_dir(dataset_id: str, key: str) -> Path:
    return cache_root() / "prepared" / f"{dataset_id}-{key}"


#: The files of a prepared cache; each one's sha256 is written in meta.json with it.
CACHE_FILES = ("splits.npz", "adjacency.npy", "id_maps.npz")


class CacheDamaged(Exception):
    """A prepared cache that does not load or does not check: it is rebuilt, never used."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def save(prepared: PreparedData, directory: Path) -> bool:
    """Write atomically: a half-written cache is never taken for a good one. A write that fails
    (a full disk) leaves nothing behind and is logged, saying where; the run goes on with the
    data in memory. Returns whether the cache was written."""
    tmp: Path | None = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.parent / f".tmp-{secrets.token_hex(8)}"
        tmp.mkdir()                 # not mkdtemp: its mode 0700 would hide a shared cache from other users
        np.savez(tmp / "splits.npz", train=prepared.train, valid=prepared.valid, test=prepared.test,
                 kg_triples=prepared.kg_triples, items=prepared.items)
        np.save(tmp / "adjacency.npy", prepared.adjacency)
        if prepared.raw_ids is not None and prepared.raw_relations is not None:
            np.savez(tmp / "id_maps.npz", entities=prepared.raw_ids, relations=prepared.raw_relations)
        digests = {name: _sha256(tmp / name) for name in CACHE_FILES if (tmp / name).exists()}
        (tmp / "meta.json").write_text(json.dumps({"n_entity": prepared.n_entity, "stats": prepared.stats,
                                                   "key": prepared.key, "n_relation": prepared.n_relation,
                                                   "n_users": prepared.n_users, "digests": digests,
                                                   "sources": prepared.sources}, indent=2))
        _publish(tmp, directory)
        return True
    except OSError as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        log.warning("could not cache the prepared data in %s (%s%s); the data is used from memory and "
                    "prepared again next time", directory.parent, e.strerror or e, _space_left(directory.parent, e))
        return False


def _publish(tmp: Path, directory: Path) -> None:
    """Rename ``tmp`` to ``directory``. A complete cache already there (another process prepared
    the same key, so the same data) is kept and ``tmp`` discarded; a damaged one is renamed aside
    first, so that a reader never finds a cache half removed."""
    if not _complete(directory):
        aside = tmp.with_name(tmp.name + "-old")
        try:
            directory.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
        except FileNotFoundError:              # none there, or another process moved it first
            pass
        try:
            tmp.rename(directory)
            return
        except OSError as e:                   # another process renamed its copy in meanwhile
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not _complete(directory):
                raise
    shutil.rmtree(tmp, ignore_errors=True)


def _complete(directory: Path) -> bool:
    try:
        return load(directory) is not None
    except CacheDamaged:
        return False


def _space_left(folder: Path, error: OSError) -> str:
    """What to say of the disk a write failed on (numpy's short writes carry no errno)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    if error.errno == errno.ENOSPC or free < 1 << 20:
        return f"; {free:,} bytes free there: the disk is full, free space or set KNI_CACHE_DIR elsewhere"
    return f"; {free:,} bytes free there"


def load(directory: Path, mmap: bool = False) -> PreparedData | None:
    """The cache in ``directory``; None when there is none. :class:`CacheDamaged` when it does
    not load or does not check: a file whose digest differs from the one written with it, or
    arrays whose shapes or ids do not fit its entity count."""
    if not (directory / "meta.json").exists():
        return None
    try:
        meta = json.loads((directory / "meta.json").read_text())
        for name, digest in (meta.get("digests") or {}).items():      # caches before digests: none
            if _sha256(directory / name) != digest:
                raise CacheDamaged(f"{name} is not the file written with it (its sha256 differs)")
        with np.load(directory / "splits.npz") as splits:
            arrays = {k: splits[k] for k in ("train", "valid", "test", "kg_triples", "items")}
        table = np.load(directory / "adjacency.npy", mmap_mode="r" if mmap else None)
        data = PreparedData(arrays["train"], arrays["valid"], arrays["test"], table, meta["n_entity"],
                            meta["stats"], meta["key"], from_cache=True, kg_triples=arrays["kg_triples"],
                            n_relation=meta["n_relation"], n_users=meta["n_users"], items=arrays["items"],
                            sources=meta.get("sources") or {})
    except CacheDamaged:
        raise
    except Exception as e:               # a truncated zip, a bad header, a missing key: not a usable cache
        raise CacheDamaged(f"{type(e).__name__}: {e}") from None
    _check(data)
    if (directory / "id_maps.npz").exists():
        try:
            with np.load(directory / "id_maps.npz") as maps:
                data.raw_ids, data.raw_relations = maps["entities"], maps["relations"]
        except Exception as e:           # noqa: BLE001 - the digest passed; an older numpy's file?
            raise CacheDamaged(f"id_maps.npz: {type(e).__name__}: {e}") from None
    return data


def _check(data: PreparedData) -> None:
    """Shapes and id ranges that every prepared cache has (CacheDamaged otherwise)."""
    n = data.n_entity
    for name in ("train", "valid", "test"):
        rows = getattr(data, name)
        if rows.ndim != 2 or rows.shape[1] != 3:
            raise CacheDamaged(f"{name} rows have shape {rows.shape}, expected (N, 3)")
        if len(rows) and (rows[:, :2].min() < 0 or rows[:, :2].max() >= n or not np.isin(rows[:, 2], (0, 1)).all()):
            raise CacheDamaged(f"{name} rows hold ids outside [0, {n}) or labels other than 0/1")
    table = data.adjacency
    if table.ndim != 2 or table.shape[0] != n:
        raise CacheDamaged(f"the adjacency table has shape {table.shape}, expected ({n}, max_degree)")
    if table.size and (table.min() < 0 or table.max() >= n):
        raise CacheDamaged(f"the adjacency table holds ids outside [0, {n})")


def prepare_cached(raw_loader, cfg: RunConfig, dataset_id: str, fingerprint: object,
                   use_cache: bool = True, mmap: bool = False, digests=None) -> PreparedData:
    """Load the prepared data for ``cfg`` from the cache, or build and store it.

    ``raw_loader`` is only called on a cache miss, so a hit skips reading the source files.
    ``digests`` (a callable giving the sha256 of the source files it is given, by default of all)
    is called with the files the data was read from when it is built and its result kept in the
    cache; a hit on a cache written without them calls it again (the fingerprint in the key says
    the files are the same).
    """
    key = stable_hash({"settings": preprocessing_settings(cfg), "source": fingerprint})
    directory = prepared_dir(dataset_id, key)
    if use_cache:
        try:
            hit = load(directory, mmap=mmap)
        except CacheDamaged as e:
            log.warning("the preprocessed cache %s is damaged (%s); it is rebuilt", directory, e)
            hit = None
        if hit is not None:
            if not hit.sources and digests is not None:
                hit.sources = digests()
            log.info("reused the preprocessed cache %s", directory)
            for w in hit.stats.get("warnings", []):
                log.warning("%s: %s", dataset_id, w)
            hit.made_for = made_for(cfg)       # its key holds these settings and the dataset's files
            return hit
    raw = raw_loader()
    prepared = build(raw, cfg)
    prepared.key = key
    if digests is not None:
        prepared.sources = digests(raw.files) if raw.files else digests()
    if use_cache and save(prepared, directory):
        log.info("preprocessed in %.1f s, cached at %s", prepared.stats["seconds"], directory)
    return prepared
