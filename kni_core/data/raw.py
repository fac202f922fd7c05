"""The common in-memory form every reader produces, and checks on it.

Ids are labels, not sizes: every table downstream is as long as the largest id, so ids far
beyond the number of distinct ids (a user id of 10^9 in a file of a thousand rows, a KG entity
id of 10^12) are renumbered in order (users, entities and relations each), which changes no
result (the ids that vanish belonged to nothing, and preprocessing keeps only the entities a
user or an item reaches); the files' ids are kept, so that a user is named by them. Ids that
do not fit 64 bits are refused with their line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .setops import unique

log = logging.getLogger(__name__)

INT64_MAX = int(np.iinfo(np.int64).max)
#: An id space up to this much larger than the ids in use is kept as it is (dense enough).
SPARSE_SLACK = 1 << 20


@dataclass
class RawDataset:
    """Labelled user-item pairs plus a knowledge graph, RippleNet-style.

    ``ratings`` is ``(N, 3)`` int64 ``(user, item, label)`` with users ``0..n_users-1``,
    items ``0..n_items-1`` and labels 0/1. ``kg`` is ``(M, 3)`` int64
    ``(head, relation, tail)`` over entities ``0..n_entities-1`` where the first
    ``n_items`` entities are the items themselves. ``files`` are the paths the rows were read
    from (what provenance records; empty when a reader does not say: then every file of its
    folder is recorded); ``warnings`` go into the prepared data's stats, so that they outlive
    the log line once the data is cached.
    """

    ratings: np.ndarray
    kg: np.ndarray
    n_users: int
    n_items: int
    n_entities: int
    n_relations: int
    source: str = ""

    kg_source: str = ""
    files: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)
    # The files' ids of renumbered users / entities / relations, indexed by the new id (None:
    # not renumbered, the ids are the files'): what names them to a user (kni explain).
    file_ids: dict[str, np.ndarray | None] = field(default_factory=dict)

    def file_ratings(self) -> np.ndarray:
        """``ratings`` with the ids the files have (the renumbered ones mapped back)."""
        out = self.ratings.copy()
        for column, kind in ((0, "users"), (1, "entities")):
            if self.file_ids.get(kind) is not None:
                out[:, column] = self.file_ids[kind][out[:, column]]
        return out

    @classmethod
    def from_arrays(cls, ratings: np.ndarray, kg: np.ndarray, source: str = "",
                    n_items: int | None = None, kg_source: str | None = None) -> "RawDataset":
        """Build and check a dataset, inferring the sizes from the ids present.

        ``source`` names the ratings (file) and ``kg_source`` the knowledge graph (default:
        ``source``), so that an error names the file at fault."""
        ratings = np.asarray(ratings, dtype=np.int64).reshape(-1, 3)
        kg = np.asarray(kg, dtype=np.int64).reshape(-1, 3)
        kg_source = source if kg_source is None else kg_source
        if len(ratings) == 0:
            raise DataError("no ratings: the ratings file is empty", source)
        _check_values(ratings, kg, source, kg_source)
        ratings, kg, n_items, file_ids = _compact(ratings, kg, n_items, source, kg_source)
        n_users = int(ratings[:, 0].max()) + 1
        n_items = int(ratings[:, 1].max()) + 1 if n_items is None else n_items
        n_entities = max(n_items, int(kg[:, [0, 2]].max()) + 1 if len(kg) else 0)
        n_relations = int(kg[:, 1].max()) + 1 if len(kg) else 0
        raw = cls(ratings, kg, n_users, n_items, n_entities, n_relations, source, kg_source, file_ids=file_ids)
        raw.check()
        pairs = ratings[:, 0] * raw.n_items + ratings[:, 1]       # ids are compact: no overflow
        duplicates = len(pairs) - len(unique(pairs))
        if duplicates:
            raw.warnings.append(f"{source}: {duplicates} rating row(s) repeat a (user, item) pair already rated; "
                                "a pair can then land in both the training and the test split")
            log.warning("%s", raw.warnings[-1])
        for warning in _sparse_users(ratings, raw, source) + _repeated_triples(kg, raw, kg_source):
            raw.warnings.append(warning)
            log.warning("%s", warning)
        return raw

    def check(self) -> None:
        _check_values(self.ratings, self.kg, self.source, self.kg_source or self.source)
        r = self.ratings
        if r[:, 1].max() >= self.n_items:
            raise DataError(f"item id {r[:, 1].max()} out of range (expected < {self.n_items})", self.source)

    def summary(self) -> dict:
        pos = int(self.ratings[:, 2].sum())
        return {"users": self.n_users, "items": self.n_items, "interactions": len(self.ratings),
                "positives": pos, "entities": self.n_entities, "relations": self.n_relations,
                "triples": len(self.kg)}


#: Users counted by the largest id beyond those who rate anything, before a warning says so.
SPARSE_USERS = 0.5


def _sparse_users(ratings: np.ndarray, raw: "RawDataset", source: str) -> list[str]:
    """A warning when the user count (the largest id + 1, below the renumbering threshold) is far
    above the users that rate anything: one stray id makes every count and the model's table grow."""
    rating = int(np.count_nonzero(np.bincount(ratings[:, 0])))      # ids are compact here: a short count
    if raw.n_users - rating <= max(1000, SPARSE_USERS * rating):
        return []
    top = int(np.argmax(ratings[:, 0]))
    return [f"{source}: user ids run to {raw.n_users - 1:,} (row {top + 1}) but {rating:,} users rate anything: "
            f"the dataset counts {raw.n_users:,} users, most without a rating (a stray id?)"]


def _repeated_triples(kg: np.ndarray, raw: "RawDataset", kg_source: str) -> list[str]:
    """A warning for knowledge-graph rows that repeat a triple (counted, and sampled twice as often)."""
    if not len(kg) or raw.n_entities ** 2 * max(raw.n_relations, 1) >= 2 ** 62:
        return []
    keys = (kg[:, 0] * max(raw.n_relations, 1) + kg[:, 1]) * raw.n_entities + kg[:, 2]
    repeated = len(keys) - len(unique(keys))
    if not repeated:
        return []
    return [f"{kg_source}: {repeated} knowledge-graph row(s) repeat a triple already listed (counted among the "
            "triples)"]


def _check_values(ratings: np.ndarray, kg: np.ndarray, source: str, kg_source: str) -> None:
    """Negative ids and labels other than 0/1, each reported with its file and line (its row in
    a file that has no lines)."""
    ids = ratings[:, :2]
    if ids.size and ids.min() < 0:
        bad = int(np.argwhere(ids < 0)[0, 0])
        raise _at_row(source, bad, f"negative user or item id {ratings[bad, :2].tolist()}")
    labels = ratings[:, 2]
    wrong = (labels != 0) & (labels != 1)
    if wrong.any():
        bad = int(np.argmax(wrong))
        raise _at_row(source, bad, f"label {labels[bad]} is not 0 or 1 (RippleNet format expects implicit "
                      "feedback labels)")
    if len(kg) and kg.min() < 0:
        bad = int(np.argwhere(kg < 0)[0, 0])
        raise _at_row(kg_source, bad, f"negative id {kg[bad].tolist()}", "knowledge graph row")


def _at_row(source: str, row: int, message: str, what: str = "row") -> DataError:
    """The error of data row ``row`` (0-based) of ``source``: at its line in a text table (blank
    lines skipped, as :func:`read_int_table` reads it), else by its row number."""
    if source.endswith(".txt") and Path(source).is_file():
        seen = -1
        with open(source, encoding="utf-8-sig", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                seen += bool(line.strip())
                if seen == row:
                    return DataError(message, source, number)
    return DataError(f"{what} {row + 1}: {message}", source)


def _dense(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(distinct ids, new id of each)`` when ``ids`` are sparse enough to renumber, else None."""
    if ids.size == 0:
        return None
    largest = int(ids.max())
    if largest < SPARSE_SLACK:
        return None
    distinct = unique(ids.ravel())
    if largest + 1 <= 2 * len(distinct) + SPARSE_SLACK:
        return None
    return distinct, np.searchsorted(distinct, ids)


def _compact(ratings: np.ndarray, kg: np.ndarray, n_items: int | None, source: str,
             kg_source: str) -> tuple[np.ndarray, np.ndarray, int | None, dict[str, np.ndarray | None]]:
    """Renumber sparse users, entities (items and KG entities together, items first, in order)
    and relations; ``n_items`` follows the items' new ids. Also returns the files' id of each
    new id, per kind (None where nothing was renumbered)."""
    ratings, kg = ratings.copy(), kg.copy()
    file_ids: dict[str, np.ndarray | None] = {"users": None, "entities": None, "relations": None}
    users = _dense(ratings[:, 0])
    if users is not None:
        log.warning("%s: user ids up to %d for %d users: renumbered in order", source,
                    int(users[0][-1]), len(users[0]))
        ratings[:, 0] = users[1]
        file_ids["users"] = users[0]
    ends = np.concatenate([ratings[:, 1], kg[:, 0], kg[:, 2]])
    entities = _dense(ends)
    if entities is not None:
        distinct, new = entities
        log.warning("%s: item / entity ids up to %d for %d entities: renumbered in order",
                    kg_source if int(ratings[:, 1].max()) < int(distinct[-1]) else source,
                    int(distinct[-1]), len(distinct))
        limit = int(ratings[:, 1].max()) + 1 if n_items is None else n_items
        n = len(ratings)
        ratings[:, 1], kg[:, 0], kg[:, 2] = new[:n], new[n:n + len(kg)], new[n + len(kg):]
        n_items = int(np.searchsorted(distinct, limit))      # items keep the lowest ids
        file_ids["entities"] = distinct
    relations = _dense(kg[:, 1])
    if relations is not None:
        log.warning("%s: relation ids up to %d for %d relations: renumbered in order", kg_source,
                    int(relations[0][-1]), len(relations[0]))
        kg[:, 1] = relations[1]
        file_ids["relations"] = relations[0]
    return ratings, kg, n_items, file_ids


def as_int64(table: np.ndarray, path: str | Path, what: str = "array") -> np.ndarray:
    """An integer table as int64; values beyond 64 bits (unsigned arrays) are refused."""
    if table.dtype == np.uint64 and table.size and int(table.max()) > INT64_MAX:
        row = int(np.argwhere(table > INT64_MAX)[0, 0])
        raise DataError(f"{what} row {row + 1}: id {int(table[row].max())} does not fit a 64-bit integer "
                        f"(largest {INT64_MAX})", path)
    return table.astype(np.int64)


def read_int_table(path: Path, ncols: int, *, skip_header: bool = False,
                   delimiter: str | None = None) -> np.ndarray:
    """Read a whitespace (or ``delimiter``) separated table of integers.

    Fast path through numpy; on any failure the file is scanned line by line so the error
    names the first bad line. A UTF-8 byte order mark at the start is skipped (as recipes do).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", path) from None
    lines = text.splitlines()
    first = 1 if skip_header else 0
    rows = [ln.replace(delimiter, " ") for ln in lines[first:]] if delimiter else lines[first:]
    body = "\n".join(rows)
    if not body.strip():
        raise DataError("the file is empty (expected lines of "
                        f"{ncols} integers)", path)
    try:
        values = np.array(body.split(), dtype=np.int64)
        # Every line, not only the total: a line short of a field next to one with a field too
        # many would otherwise shift the rows silently.
        if set(map(len, map(str.split, rows))) <= {0, ncols}:
            return values.reshape(-1, ncols)
    except (ValueError, OverflowError):       # OverflowError: a value beyond 64 bits
        pass
    for number, line in enumerate(lines[first:], start=first + 1):
        if not line.strip():
            continue
        fields = line.replace(delimiter, " ").split() if delimiter else line.split()
        if len(fields) != ncols:
            raise DataError(f"expected {ncols} fields, found {len(fields)}: {line.strip()[:80]!r}", path, number)
        for value in fields:
            try:
                number_value = int(value)
            except ValueError:
                raise DataError(f"{value!r} is not an integer: {line.strip()[:80]!r}", path, number) from None
            if not -INT64_MAX - 1 <= number_value <= INT64_MAX:
                raise DataError(f"{value} does not fit a 64-bit integer (largest {INT64_MAX}): "
                                f"{line.strip()[:80]!r}", path, number)
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
    return as_int64(table, path)
