"""Set operations on integer arrays with numpy's results, at the scale of Movie-20M.

numpy 2's hash-based ``np.unique`` (and ``np.isin``, which calls it) took ~10 s per call on
the 5-18M keys of the Movie-20M-shaped data, most of its preprocessing; sorting them takes a
fraction of a second. Every function here returns exactly what the numpy call it names does.
"""

from __future__ import annotations

import numpy as np


def unique_ids(ids: np.ndarray, n: int) -> np.ndarray:
    """``np.unique(ids)`` for ids in ``[0, n)``: one counting pass."""
    return np.flatnonzero(np.bincount(ids.ravel(), minlength=n))


def unique(keys: np.ndarray) -> np.ndarray:
    """``np.unique(keys)`` of a 1-D integer array: sorted, without repeats."""
    keys = np.sort(keys)
    first = np.ones(len(keys), dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return keys[first]


def isin_sorted(keys: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """``np.isin(keys, sorted_unique)`` for a sorted, repeat-free ``sorted_unique``: the keys
    are looked up in sorted order, so the binary searches walk memory forwards."""
    found = np.zeros(len(keys), dtype=bool)
    if len(keys) == 0 or len(sorted_unique) == 0:
        return found
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    at = np.minimum(np.searchsorted(sorted_unique, ordered), len(sorted_unique) - 1)
    found[order] = sorted_unique[at] == ordered
    return found


def unique_rows(rows: np.ndarray) -> np.ndarray:
    """``np.unique(rows, axis=0)`` for a 2-D array of non-negative integers: each row as one
    integer that sorts as the row does (numpy's own way when that integer could overflow)."""
    if len(rows) == 0:
        return rows
    sizes = [int(c) + 1 for c in rows.max(axis=0)]
    if np.prod(np.array(sizes, dtype=float)) >= 2.0 ** 62:
        return np.unique(rows, axis=0)
    keys = np.zeros(len(rows), dtype=np.int64)
    for column, size in zip(rows.T, sizes):
        keys = keys * size + column
    keys = unique(keys)
    out = np.empty((len(keys), len(sizes)), dtype=rows.dtype)
    for j in range(len(sizes) - 1, -1, -1):
        keys, out[:, j] = np.divmod(keys, sizes[j])
    return out
