"""RecBole atomic files ``NAME.inter``, ``NAME.kg`` and ``NAME.link``, labelled the RippleNet way.

Atomic files are tab-separated with a header of ``name:type`` fields; columns are looked up by
name (``user_id``, ``item_id``, optional ``rating`` in ``.inter``; ``head_id``, ``relation_id``,
``tail_id`` in ``.kg``; ``item_id``, ``entity_id`` in ``.link``) and values are kept as strings.

RecBole data are interactions, KNI needs labelled pairs, so they go through RippleNet's
labelling (:func:`ripplenet_raw.labelled_pairs`): only items with a ``.link`` entry are kept
(the others have no place in the knowledge graph); an interaction is positive when
``rating >= dataset.rating_threshold`` (always, without a ``rating`` column); each user with
positives gets one never-rated linked item per positive as a negative, drawn with
``numpy.random.default_rng(dataset.split_seed)``. Numbering, all by first appearance: users in
the kept interactions, items in ``.link`` (their entities take the same ids), then the other KG
entities and the relations in ``.kg``. When ``.link`` links an item or an entity twice, the first
link wins, so items and their entities stay one-to-one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from .raw import RawDataset
from .ripplenet_raw import index_triples, labelled_pairs, text_lines

SUFFIXES = (".inter", ".kg", ".link")


def detect(folder: Path) -> bool:
    return any(Path(folder).glob("*.inter"))


def read(folder: Path, cfg: DatasetConfig) -> RawDataset:
    folder = Path(folder)
    stem = _choose_stem(folder, cfg)
    inter, kg_path, link = (folder / (stem + suffix) for suffix in SUFFIXES)
    item_ids, entity_ids = _read_link(link)
    positives, rated = _read_inter(inter, item_ids, cfg.rating_threshold)
    if not any(positives.values()):
        raise DataError(f"no positive interaction (rating >= {cfg.rating_threshold:g}) on an item "
                        f"listed in {link.name}", inter)
    ratings = labelled_pairs(positives, rated, len(item_ids), np.random.default_rng(cfg.split_seed))
    kg = _read_kg(kg_path, entity_ids)
    raw = RawDataset.from_arrays(ratings, kg, source=str(inter), n_items=len(item_ids))
    raw.files = (str(inter), str(kg_path), str(link))        # the provenance: these, not the folder
    return raw


def _choose_stem(folder: Path, cfg: DatasetConfig) -> str:
    """The dataset name: ``dataset.name`` if its files are here, else the only one present."""
    stems = sorted({p.stem for suffix in SUFFIXES for p in folder.glob("*" + suffix) if p.is_file()})
    if cfg.name in stems:
        stem = cfg.name
    elif len(stems) == 1:
        stem = stems[0]
    elif stems:
        raise DataError(f"several RecBole datasets here ({', '.join(stems)}): set dataset.name to one of "
                        "them", folder)
    else:
        stem = "NAME"
    missing = [stem + s for s in SUFFIXES if not (folder / (stem + s)).is_file()]
    if missing:
        raise DataError(f"missing {', '.join(missing)}; RecBole format expects the three atomic files "
                        f"{', '.join(stem + s for s in SUFFIXES)}", folder)
    return stem


def atomic_rows(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()
                ) -> Iterator[tuple[int, list[str | None]]]:
    """Yield ``(line number, values)`` of the named columns; a missing optional column is ``None``."""
    lines = text_lines(path)
    header_line = next(lines, None)
    if header_line is None:
        raise DataError(f"the file is empty (expected a header with {_fields(required)})", path)
    header_number, header = header_line
    tokens = header.split("\t")
    names = [token.split(":", 1)[0].strip() for token in tokens]
    absent = [name for name in required if name not in names]
    if absent:
        raise DataError(f"missing column {', '.join(absent)} in the header (expected {_fields(required)}; "
                        f"found {', '.join(tokens)})", path, header_number)
    columns = [names.index(name) if name in names else None for name in required + optional]
    for number, line in lines:
        values = line.split("\t")
        if len(values) != len(names):
            raise DataError(f"expected {len(names)} tab-separated fields as in the header, found "
                            f"{len(values)}: {line.strip()[:80]!r}", path, number)
        yield number, [values[c].strip() if c is not None else None for c in columns]


def _fields(names: tuple[str, ...]) -> str:
    return ", ".join(f"{name}:token" for name in names)


def _read_link(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Item token -> item index and its entity token -> the same index, first link wins."""
    item_ids: dict[str, int] = {}
    entity_ids: dict[str, int] = {}
    for _, (item, entity) in atomic_rows(path, ("item_id", "entity_id")):
        if item not in item_ids and entity not in entity_ids:
            item_ids[item] = entity_ids[entity] = len(item_ids)
    if not item_ids:
        raise DataError("no item-entity links (expected rows of item_id, entity_id)", path)
    return item_ids, entity_ids


def _read_inter(path: Path, item_ids: dict[str, int], threshold: float
                ) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """Per user (in order of first kept interaction) the positive items, and every rated item."""
    positives: dict[str, set[int]] = {}
    rated: dict[str, set[int]] = {}
    for number, (user, item_token, rating) in atomic_rows(path, ("user_id", "item_id"), ("rating",)):
        item = item_ids.get(item_token)
        if item is None:
            continue
        positives.setdefault(user, set())
        rated.setdefault(user, set()).add(item)
        if rating is None or _rating(rating, path, number) >= threshold:
            positives[user].add(item)
    return positives, rated


def _rating(text: str, path: Path, number: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"rating {text!r} is not a number", path, number) from None


def _read_kg(path: Path, entity_ids: dict[str, int]) -> np.ndarray:
    rows = atomic_rows(path, ("head_id", "relation_id", "tail_id"))
    return index_triples((tuple(values) for _, values in rows), entity_ids)
