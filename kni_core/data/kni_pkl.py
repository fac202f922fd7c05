"""KNI's released pickles: ``bc.pkl``, ``ab.pkl``, ``ml-1m.pkl`` and ``ml-20m.pkl``.

Each holds a dict with ``train_data`` and ``test_data`` (integer arrays of ``(user, item,
label)`` rows) and ``adj``, the knowledge graph as an adjacency matrix (or one per relation),
all in a single entity id space shared by users, items and KG entities. Our pipeline splits
6:2:2 itself, so train and test rows are concatenated and re-split later; the original
train/test boundary is not kept.

Ids are renumbered to the :class:`RawDataset` convention: users and items by sorted original id,
items first among entities, then the other KG entities by sorted original id. KG edges that
touch a user are dropped (users are not KG entities; KNI adds user-item edges itself).
Without ``adj``, the ``kg_triples`` array written by KNI's ``process_rip.py`` is used if present.

A pickle can name any function to call while it loads (``os.system`` included). These files
are read by :class:`SafeUnpickler`, which knows only what the authors' files hold (numpy
arrays and their dtypes, scipy sparse matrices, dicts, lists, tuples, sets and numbers) and
refuses any other name with the file and the name it met, before anything runs.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..config import DatasetConfig
from ..errors import DataError
from .raw import RawDataset, as_int64
from .setops import isin_sorted, unique

PICKLE_NAMES = ("bc.pkl", "ab.pkl", "ml-1m.pkl", "ml-20m.pkl")
RATING_KEYS = ("train_data", "test_data")
EXPECTED_KEYS = "train_data, test_data (integer arrays of user, item, label rows) and adj (optional)"


def detect(folder: Path) -> bool:
    return any((Path(folder) / name).is_file() for name in PICKLE_NAMES)


def read(folder: Path, cfg: DatasetConfig) -> RawDataset:
    path = _choose_pickle(Path(folder), cfg)
    dataset = _load(path)
    rows = np.concatenate([_rating_table(dataset, key, path) for key in RATING_KEYS])
    users, items = unique(rows[:, 0]), unique(rows[:, 1])
    _check_disjoint(users, items, path)
    ratings = np.column_stack([np.searchsorted(users, rows[:, 0]), np.searchsorted(items, rows[:, 1]), rows[:, 2]])
    kg = _renumber_kg(_kg_triples(dataset, path), users, items)
    raw = RawDataset.from_arrays(ratings, kg, source=str(path), n_items=len(items))
    raw.files = (str(path),)                                  # the provenance: the pickle, not the folder
    return raw


def _choose_pickle(folder: Path, cfg: DatasetConfig) -> Path:
    present = [name for name in PICKLE_NAMES if (folder / name).is_file()]
    if cfg.name is not None and f"{cfg.name}.pkl" in present:
        return folder / f"{cfg.name}.pkl"
    if len(present) == 1:
        return folder / present[0]
    if not present:
        raise DataError(f"no KNI pickle here (expected one of {', '.join(PICKLE_NAMES)})", folder)
    raise DataError(f"several KNI pickles here ({', '.join(present)}): set dataset.name to one of "
                    f"{', '.join(Path(n).stem for n in present)} to choose", folder)


#: Globals a KNI pickle may name: numpy's array and scalar reconstructors (both module paths,
#: numpy 1 and 2), dtypes, and the few builtins their states use.
_ALLOWED = {
    **dict.fromkeys(("numpy.core.multiarray", "numpy._core.multiarray"), {"_reconstruct", "scalar"}),
    "numpy": {"ndarray", "dtype"},
    **dict.fromkeys(("copyreg", "copy_reg"), {"_reconstructor"}),          # Python 3 and 2 names
    **dict.fromkeys(("builtins", "__builtin__"), {"object", "set", "frozenset", "complex", "slice"}),
    "_codecs": {"encode"},                  # protocol-2 pickles carry bytes as latin-1 text through it
}
#: scipy.sparse matrix and array classes, under any of scipy's module paths for them.
_SPARSE = {f"{kind}_{form}" for kind in ("csr", "csc", "coo", "lil", "dok", "dia", "bsr")
           for form in ("matrix", "array")}


class RefusedGlobal(DataError):
    """The pickle names a function or class outside what KNI's pickles hold."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :data:`_ALLOWED` (and scipy's sparse
    classes); any other one is refused before it can be called."""

    def __init__(self, handle, path: Path, encoding: str):
        super().__init__(handle, encoding=encoding)
        self.path = path

    def find_class(self, module: str, name: str):
        allowed = name in _ALLOWED.get(module, ()) or \
            (name in _SPARSE and (module == "scipy.sparse" or module.startswith("scipy.sparse.")))
        if not allowed:
            raise RefusedGlobal(f"refused to load: the pickle calls {module}.{name}, which KNI's pickles never "
                                "hold (they hold numpy arrays, scipy sparse matrices, dicts, lists and numbers); "
                                "nothing of it was run", self.path)
        return super().find_class(module, name)


def _load(path: Path) -> Mapping:
    """Unpickle safely, retrying as Latin-1 for pickles written by Python 2 (numpy arrays inside)."""
    for encoding in ("ASCII", "latin1"):
        try:
            with open(path, "rb") as handle:
                dataset = SafeUnpickler(handle, path, encoding).load()
            break
        except UnicodeDecodeError:
            continue
        except RefusedGlobal:
            raise
        except Exception as exc:  # unpickling can raise almost anything on a foreign file
            raise DataError(f"not a readable pickle ({type(exc).__name__}: {exc})", path) from None
    else:
        raise DataError("not a readable pickle (undecodable strings)", path)
    if not isinstance(dataset, Mapping):
        raise DataError(f"expected a dict with keys {EXPECTED_KEYS}; got a {type(dataset).__name__}", path)
    return dataset


def _rating_table(dataset: Mapping, key: str, path: Path) -> np.ndarray:
    if key not in dataset:
        found = ", ".join(sorted(map(str, dataset.keys()))) or "none"
        raise DataError(f"missing key '{key}'; found keys: {found}; expected keys: {EXPECTED_KEYS}", path)
    table = np.asarray(dataset[key])
    if table.ndim != 2 or table.shape[1] != 3 or not np.issubdtype(table.dtype, np.integer):
        raise DataError(f"dataset['{key}'] must be an integer array of shape (N, 3) (user, item, label); "
                        f"got {table.dtype} {table.shape}", path)
    return as_int64(table, path, f"dataset['{key}']")


def _check_disjoint(users: np.ndarray, items: np.ndarray, path: Path) -> None:
    shared = users[isin_sorted(users, items)]
    if len(shared):
        raise DataError(f"{len(shared)} ids are both users and items (e.g. {shared[0]}); expected users and "
                        "items in one entity id space, with distinct ids", path)


def _kg_triples(dataset: Mapping, path: Path) -> np.ndarray:
    """``(head, relation, tail)`` in the pickle's own ids, from ``adj`` or ``kg_triples``."""
    adj = dataset.get("adj")
    if adj is None and dataset.get("kg_triples") is not None:
        triples = np.asarray(dataset["kg_triples"])
        if triples.ndim != 2 or triples.shape[1] != 3 or not np.issubdtype(triples.dtype, np.integer):
            raise DataError(f"dataset['kg_triples'] must be an integer array of shape (M, 3); "
                            f"got {triples.dtype} {triples.shape}", path)
        return as_int64(triples, path, "dataset['kg_triples']")
    if adj is None:
        return np.zeros((0, 3), np.int64)
    if isinstance(adj, np.ndarray) and adj.ndim == 3:
        adj = list(adj)
    matrices = adj if isinstance(adj, (list, tuple)) else [adj]
    return np.concatenate([_edges(m, relation, path) for relation, m in enumerate(matrices)] or
                          [np.zeros((0, 3), np.int64)])


def _edges(matrix, relation: int, path: Path) -> np.ndarray:
    """Nonzero ``(row, col)`` entries of one adjacency matrix as ``(row, relation, col)``."""
    if sp.issparse(matrix):
        coo = sp.coo_matrix(matrix)
        keep = coo.data != 0
        rows, cols = coo.row[keep], coo.col[keep]
    elif isinstance(matrix, np.ndarray) and matrix.ndim == 2:
        rows, cols = np.nonzero(matrix)
    else:
        raise DataError("dataset['adj'] must be a scipy sparse matrix, a 2-D numpy array or a list of "
                        f"them (one per relation); got {type(matrix).__name__}", path)
    return np.column_stack([rows, np.full(len(rows), relation), cols]).astype(np.int64)


def _renumber_kg(triples: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Drop edges touching users; items -> 0..I-1, other entities -> I.. by sorted original id."""
    ends = triples[:, [0, 2]]
    triples = triples[~isin_sorted(ends.ravel(), users).reshape(ends.shape).any(axis=1)]
    ends = triples[:, [0, 2]]
    is_item = isin_sorted(ends.ravel(), items).reshape(ends.shape)
    others = unique(ends[~is_item])
    new_ends = np.where(is_item, np.searchsorted(items, ends), len(items) + np.searchsorted(others, ends))
    return np.column_stack([new_ends[:, 0], triples[:, 1], new_ends[:, 1]])
