"""RippleNet's raw inputs, run through a re-implementation of RippleNet's ``preprocess.py``.

Two layouts are understood (files as in github.com/hwwang55/RippleNet, ``data/movie`` and
``data/book``):

* MovieLens-1M: ``ratings.dat`` (``user::movie::rating::timestamp``) with
  ``item_index2entity_id_rehashed.txt``, ``kg_part1_rehashed.txt`` and ``kg_part2_rehashed.txt``.
  A rating >= ``dataset.rating_threshold`` (default 4, RippleNet's value) is positive.
* Book-Crossing: ``BX-Book-Ratings.csv`` (``"User-ID";"ISBN";"Book-Rating"``) with
  ``item_index2entity_id_rehashed.txt`` and ``kg_rehashed.txt``. Every rating is positive
  (RippleNet's threshold 0 for books, fixed here whatever ``rating_threshold`` says, because
  implicit ratings are 0 and still mean the user read the book).

The procedure follows RippleNet: items are numbered in the order of the item-to-entity file and
their entities share those ids; ratings of unmapped items are dropped; each user with positives
gets them with label 1 plus as many label-0 items drawn without replacement from the items the
user never rated; users are numbered in the order of their first positive; other KG entities
and the relation names are numbered in order of first appearance. Two deliberate differences:
negatives are drawn with ``numpy.random.default_rng(dataset.split_seed)`` (so the rows are not
byte-identical to RippleNet's ``ratings_final.txt``), and the first line of ``ratings.dat`` is
kept (RippleNet skips line 1 of every ratings file, which for MovieLens drops a real rating);
only a first line that does not parse as a rating is treated as a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterable, Iterator

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from .raw import RawDataset

ITEM_MAP_FILE = "item_index2entity_id_rehashed.txt"


@dataclass(frozen=True)
class Layout:
    """How one of RippleNet's datasets is laid out on disk."""

    name: str
    ratings_file: str
    separator: str
    n_fields: int
    kg_files: tuple[str, ...]
    line_format: str
    quoted: bool  # values wrapped in double quotes
    source_hint: str

    @property
    def files(self) -> tuple[str, ...]:
        return (self.ratings_file, ITEM_MAP_FILE) + self.kg_files


MOVIE = Layout("MovieLens-1M", "ratings.dat", "::", 4, ("kg_part1_rehashed.txt", "kg_part2_rehashed.txt"),
               "user::movie::rating::timestamp", quoted=False,
               source_hint="ratings.dat from grouplens.org/datasets/movielens/1m/ (ml-1m.zip)")
BOOK = Layout("Book-Crossing", "BX-Book-Ratings.csv", ";", 3, ("kg_rehashed.txt",),
              '"User-ID";"ISBN";"Book-Rating"', quoted=True,
              source_hint="BX-Book-Ratings.csv from Cai-Nicolas Ziegler's Book-Crossing dataset page")
LAYOUTS = (MOVIE, BOOK)
BOOK_THRESHOLD = 0.0


def detect(folder: Path) -> bool:
    """A ratings file of either dataset next to RippleNet's item-to-entity file."""
    folder = Path(folder)
    return (folder / ITEM_MAP_FILE).is_file() and any((folder / lay.ratings_file).is_file() for lay in LAYOUTS)


def read(folder: Path, cfg: DatasetConfig) -> RawDataset:
    folder = Path(folder)
    layout = _choose_layout(folder, cfg)
    threshold = BOOK_THRESHOLD if layout is BOOK else cfg.rating_threshold
    item_of_raw, entity_ids = read_item_map(folder / ITEM_MAP_FILE)
    positives, rated = _read_ratings(folder / layout.ratings_file, layout, item_of_raw, threshold)
    if not any(positives.values()):
        raise DataError(f"no positive ratings (rating >= {threshold:g}) on items listed in {ITEM_MAP_FILE}",
                        folder / layout.ratings_file)
    ratings = labelled_pairs(positives, rated, len(item_of_raw), np.random.default_rng(cfg.split_seed))
    kg = _read_kg([folder / name for name in layout.kg_files], entity_ids)
    raw = RawDataset.from_arrays(ratings, kg, source=str(folder / layout.ratings_file), n_items=len(item_of_raw))
    raw.files = tuple(str(folder / name) for name in layout.files)     # the provenance: these, not the folder
    return raw


# ---------------------------------------------------------------------------------------------
# helpers shared with the RecBole reader


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, line)`` for each non-blank line, without the line break.

    UTF-8 first, Latin-1 as a fallback: the original Book-Crossing dump is Latin-1. Splitting on
    ``\\n`` only keeps line numbers right where ``str.splitlines`` would also break on ``\\x85``.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror})", path) from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")      # a BOM is no part of the first field
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


def labelled_pairs(positives: dict[Hashable, set[int]], rated: dict[Hashable, set[int]],
                   n_items: int, rng: np.random.Generator) -> np.ndarray:
    """RippleNet's labelling: each user's positives, then as many never-rated items as negatives.

    Users are numbered in the iteration order of ``positives``; users with no positive are
    skipped. ``rated`` holds every item a user rated (positive or not): none of them may be
    drawn as a negative. A user who rated nearly every item gets fewer negatives than
    positives rather than an error (RippleNet would crash there).
    """
    unrated = np.ones(n_items, dtype=bool)
    blocks = []
    for user_index, user in enumerate(user for user, items in positives.items() if items):
        pos = np.array(sorted(positives[user]), dtype=np.int64)
        seen = np.fromiter(rated[user], dtype=np.int64)
        unrated[seen] = False
        candidates = np.flatnonzero(unrated)
        unrated[seen] = True
        neg = np.sort(rng.choice(candidates, size=min(len(pos), len(candidates)), replace=False))
        items = np.concatenate([pos, neg])
        labels = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
        blocks.append(np.column_stack([np.full(len(items), user_index, np.int64), items, labels]))
    return np.concatenate(blocks) if blocks else np.zeros((0, 3), np.int64)


def index_triples(triples: Iterable[tuple[str, str, str]], entity_ids: dict[str, int]) -> np.ndarray:
    """Number KG triples: known entities (the items) keep their ids, new entities and relations
    get ids in order of first appearance."""
    entity_ids = dict(entity_ids)
    relation_ids: dict[str, int] = {}
    rows = [(entity_ids.setdefault(head, len(entity_ids)),
             relation_ids.setdefault(relation, len(relation_ids)),
             entity_ids.setdefault(tail, len(entity_ids)))
            for head, relation, tail in triples]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


# ---------------------------------------------------------------------------------------------


def _choose_layout(folder: Path, cfg: DatasetConfig) -> Layout:
    """The dataset whose ratings file is here (``dataset.name`` decides if both are), all files present."""
    present = [lay for lay in LAYOUTS if (folder / lay.ratings_file).is_file()]
    if not present:
        raise DataError(_missing_message("no RippleNet raw ratings file (ratings.dat or BX-Book-Ratings.csv)"),
                        folder)
    if len(present) == 2:
        by_name = {"ml-1m": MOVIE, "movie": MOVIE, "bc": BOOK, "book": BOOK}
        if cfg.name not in by_name:
            raise DataError(f"both {MOVIE.ratings_file} and {BOOK.ratings_file} are here: set dataset.name "
                            "to ml-1m or bc to choose, or keep one dataset per folder", folder)
        present = [by_name[cfg.name]]
    layout = present[0]
    missing = [name for name in layout.files if not (folder / name).is_file()]
    if missing:
        raise DataError(_missing_message(f"missing {', '.join(missing)} for {layout.name}"), folder)
    return layout


def _missing_message(head: str) -> str:
    expected = "\n".join(f"  - {lay.name}: {', '.join(lay.files)}" for lay in LAYOUTS)
    return (f"{head}; RippleNet raw inputs expect, per dataset:\n{expected}\n"
            "The item-to-entity and kg files are in github.com/hwwang55/RippleNet (data/movie for "
            "MovieLens-1M, data/book for Book-Crossing); "
            + "; ".join(lay.source_hint for lay in LAYOUTS) + ".")


def read_item_map(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Raw item id -> item index and entity id -> the same index, both in file order."""
    item_of_raw: dict[str, int] = {}
    entity_ids: dict[str, int] = {}
    for number, line in text_lines(path):
        fields = line.strip().split("\t")
        if len(fields) != 2:
            raise DataError(f"expected 2 tab-separated fields (raw item id, entity id), found {len(fields)}: "
                            f"{line.strip()[:80]!r}", path, number)
        raw_item, entity = fields
        for kind, key, seen in (("item", raw_item, item_of_raw), ("entity", entity, entity_ids)):
            if key in seen:
                raise DataError(f"{kind} {key!r} is listed twice (expected a one-to-one item-to-entity map)",
                                path, number)
        item_of_raw[raw_item] = entity_ids[entity] = len(item_of_raw)
    if not item_of_raw:
        raise DataError("the file is empty (expected lines of 'raw item id<TAB>entity id')", path)
    return item_of_raw, entity_ids


def _read_ratings(path: Path, layout: Layout, item_of_raw: dict[str, int], threshold: float
                  ) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """Per user (in order of first positive) the positive items, and every rated item."""
    positives: dict[int, set[int]] = {}
    rated: dict[int, set[int]] = {}
    for index, (number, line) in enumerate(text_lines(path)):
        fields = line.strip().split(layout.separator)
        if layout.quoted:
            fields = [_unquote(f) for f in fields]
        if index == 0 and len(fields) == layout.n_fields and not _is_number(fields[2]):
            continue  # header line, e.g. "User-ID";"ISBN";"Book-Rating"
        user, rating = _parse_rating_fields(fields, layout, path, number, line)
        item = item_of_raw.get(fields[1])
        if item is None:
            continue
        if rating >= threshold:
            positives.setdefault(user, set()).add(item)
        rated.setdefault(user, set()).add(item)
    return positives, rated


def _parse_rating_fields(fields: list[str], layout: Layout, path: Path, number: int, line: str
                         ) -> tuple[int, float]:
    if len(fields) != layout.n_fields:
        raise DataError(f"expected {layout.n_fields} fields ({layout.line_format}), found {len(fields)}: "
                        f"{line.strip()[:80]!r}", path, number)
    try:
        return int(fields[0]), float(fields[2])
    except ValueError:
        raise DataError(f"expected an integer user id and a numeric rating ({layout.line_format}): "
                        f"{line.strip()[:80]!r}", path, number) from None


def _read_kg(paths: list[Path], entity_ids: dict[str, int]) -> np.ndarray:
    return index_triples((triple for path in paths for triple in _kg_lines(path)), entity_ids)


def _kg_lines(path: Path) -> Iterator[tuple[str, str, str]]:
    for number, line in text_lines(path):
        fields = line.strip().split("\t")
        if len(fields) != 3:
            raise DataError(f"expected 3 tab-separated fields (head, relation, tail), found {len(fields)}: "
                            f"{line.strip()[:80]!r}", path, number)
        yield fields[0], fields[1], fields[2]


def _unquote(field: str) -> str:
    field = field.strip()
    return field[1:-1] if len(field) >= 2 and field[0] == field[-1] == '"' else field


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
