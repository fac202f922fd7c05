"""The common in-memory form every reader produces, and checks on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError


@dataclass
class RawDataset:
    """Labelled user-item pairs plus a knowledge graph, RippleNet-style.

    ``ratings`` is ``(N, 3)`` int64 ``(user, item, label)`` with users ``0..n_users-1``,
    items ``0..n_items-1`` and labels 0/1. ``kg`` is ``(M, 3)`` int64
    ``(head, relation, tail)`` over entities ``0..n_entities-1`` where the first
    ``n_items`` entities are the items themselves.
    """

    ratings: np.ndarray
    kg: np.ndarray
    n_users: int
    n_items: int
    n_entities: int
    n_relations: int
    source: str = ""

    @classmethod
    def from_arrays(cls, ratings: np.ndarray, kg: np.ndarray, source: str = "",
                    n_items: int | None = None) -> "RawDataset":
        """Build and check a dataset, inferring the sizes from the ids present."""
        ratings = np.asarray(ratings, dtype=np.int64).reshape(-1, 3)
        kg = np.asarray(kg, dtype=np.int64).reshape(-1, 3)
        if len(ratings) == 0:
            raise DataError("no ratings: the ratings file is empty", source)
        n_users = int(ratings[:, 0].max()) + 1
        n_items = int(ratings[:, 1].max()) + 1 if n_items is None else n_items
        n_entities = max(n_items, int(kg[:, [0, 2]].max()) + 1 if len(kg) else 0)
        n_relations = int(kg[:, 1].max()) + 1 if len(kg) else 0
        raw = cls(ratings, kg, n_users, n_items, n_entities, n_relations, source)
        raw.check()
        return raw

    def check(self) -> None:
        r, k = self.ratings, self.kg
        if r.min() < 0:
            bad = int(np.argwhere(r[:, :2] < 0)[0, 0])
            raise DataError(f"row {bad + 1}: negative user or item id {r[bad, :2].tolist()}", self.source)
        labels = np.unique(r[:, 2])
        if not set(labels.tolist()) <= {0, 1}:
            bad = int(np.argwhere((r[:, 2] != 0) & (r[:, 2] != 1))[0, 0])
            raise DataError(f"row {bad + 1}: label {r[bad, 2]} is not 0 or 1 "
                            "(RippleNet format expects implicit feedback labels)", self.source)
        if r[:, 1].max() >= self.n_items:
            raise DataError(f"item id {r[:, 1].max()} out of range (expected < {self.n_items})", self.source)
        if len(k) and k.min() < 0:
            bad = int(np.argwhere(k < 0)[0, 0])
            raise DataError(f"knowledge graph row {bad + 1}: negative id {k[bad].tolist()}", self.source)

    def summary(self) -> dict:
        pos = int(self.ratings[:, 2].sum())
        return {"users": self.n_users, "items": self.n_items, "interactions": len(self.ratings),
                "positives": pos, "entities": self.n_entities, "relations": self.n_relations,
                "triples": len(self.kg)}


def read_int_table(path: Path, ncols: int, *, skip_header: bool = False,
                   delimiter: str | None = None) -> np.ndarray:
    """Read a whitespace (or ``delimiter``) separated table of integers.

    Fast path through numpy; on any failure the file is scanned line by line so the error
    names the first bad line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", path) from None
    lines = text.splitlines()
    first = 1 if skip_header else 0
    body = "\n".join(lines[first:])
    if delimiter:
        body = body.replace(delimiter, " ")
    if not body.strip():
        raise DataError("the file is empty (expected lines of "
                        f"{ncols} integers)", path)
    try:
        values = np.array(body.split(), dtype=np.int64)
        if values.size % ncols == 0:
            table = values.reshape(-1, ncols)
            if len(table) == sum(1 for ln in lines[first:] if ln.strip()):
                return table
    except ValueError:
        pass
    for number, line in enumerate(lines[first:], start=first + 1):
        if not line.strip():
            continue
        fields = line.replace(delimiter, " ").split() if delimiter else line.split()
        if len(fields) != ncols:
            raise DataError(f"expected {ncols} fields, found {len(fields)}: {line.strip()[:80]!r}", path, number)
        for value in fields:
            try:
                int(value)
            except ValueError:
                raise DataError(f"{value!r} is not an integer: {line.strip()[:80]!r}", path, number) from None
    raise DataError("could not parse the file as a table of integers", path)


def read_npy_table(path: Path, ncols: int) -> np.ndarray:
    try:
        table = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"not a readable .npy array ({exc})", path) from None
    if table.ndim != 2 or table.shape[1] != ncols or not np.issubdtype(table.dtype, np.integer):
        raise DataError(f"expected an integer array of shape (N, {ncols}), got {table.dtype} {table.shape}", path)
    if len(table) == 0:
        raise DataError("the array is empty", path)
    return table.astype(np.int64)
