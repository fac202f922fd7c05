"""Dataset readers: each turns a folder into a :class:`RawDataset`.

A reader is registered under the name used by ``dataset.format`` in a recipe, knows which
files it expects (for the error that lists them) and can tell whether a folder looks like
its format (for ``format: auto``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from .raw import RawDataset, read_int_table, read_npy_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reader:
    name: str
    expects: str                      # human description of the files, for errors
    detect: Callable[[Path], bool]
    read: Callable[[Path, DatasetConfig], RawDataset]


def _pick(folder: Path, stem: str) -> list[Path]:
    """The files of ``stem`` in ``folder``: ``stem.txt`` first, then ``stem.npy``."""
    return [folder / (stem + ext) for ext in (".txt", ".npy") if (folder / (stem + ext)).is_file()]


def _read_table(path: Path) -> np.ndarray:
    return read_npy_table(path, 3) if path.suffix == ".npy" else read_int_table(path, 3)


def _read_final(paths: list[Path], warnings: list[str]) -> tuple[np.ndarray, list[Path]]:
    """The rows of ``paths`` (one table as ``.txt`` and/or ``.npy``) and the files they come from.

    With both, both are read: the ``.npy`` is taken for a copy of the text, so when their rows
    differ the text wins (it is the file a researcher edits; the ``.npy`` is then stale) and a
    warning names both files."""
    tables = [_read_table(p) for p in paths]
    if len(tables) == 1 or np.array_equal(*tables):
        return tables[0], paths
    text, npy = tables
    if len(text) != len(npy):
        how = f"{len(text):,} rows in the .txt, {len(npy):,} in the .npy"
    else:
        row = int(np.flatnonzero((text != npy).any(axis=1))[0])
        how = f"row {row + 1} is {text[row].tolist()} in the .txt, {npy[row].tolist()} in the .npy"
    warnings.append(f"{paths[0]} and {paths[1]} hold different rows ({how}); {paths[0].name} is read and "
                    f"{paths[1].name} ignored: delete it or write it again from the text")
    log.warning("%s", warnings[-1])
    return text, paths[:1]


def read_ripplenet(folder: Path, cfg: DatasetConfig) -> RawDataset:
    """RippleNet / KGCN output: ``ratings_final`` and ``kg_final`` as ``.npy`` or ``.txt``.

    When both exist the ``.txt`` is the one that counts (see :func:`_read_final`).
    """
    ratings_paths, kg_paths = _pick(folder, "ratings_final"), _pick(folder, "kg_final")
    missing = [n for n, p in (("ratings_final.{txt,npy}", ratings_paths), ("kg_final.{txt,npy}", kg_paths)) if not p]
    if missing:
        raise DataError(f"missing {', '.join(missing)} (RippleNet format expects ratings_final and kg_final)", folder)
    warnings: list[str] = []
    ratings, ratings_paths = _read_final(ratings_paths, warnings)
    kg, kg_paths = _read_final(kg_paths, warnings)
    try:
        raw = RawDataset.from_arrays(ratings, kg, source=str(ratings_paths[0]), kg_source=str(kg_paths[0]))
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(str(exc), folder) from None
    raw.files = tuple(str(p) for p in ratings_paths + kg_paths)
    raw.warnings[:0] = warnings
    return raw


def _is_ripplenet(folder: Path) -> bool:
    return bool(_pick(folder, "ratings_final"))


def _lazy(module: str, func: str) -> Callable[[Path, DatasetConfig], RawDataset]:
    def call(folder: Path, cfg: DatasetConfig) -> RawDataset:
        from importlib import import_module
        return getattr(import_module(f"{__package__}.{module}"), func)(folder, cfg)
    return call


def _detect(module: str) -> Callable[[Path], bool]:
    def call(folder: Path) -> bool:
        from importlib import import_module
        return import_module(f"{__package__}.{module}").detect(folder)
    return call


READERS: dict[str, Reader] = {
    "ripplenet": Reader("ripplenet", "ratings_final.{txt,npy} and kg_final.{txt,npy}", _is_ripplenet, read_ripplenet),
    "kni-pkl": Reader("kni-pkl", "one of bc.pkl, ab.pkl, ml-1m.pkl, ml-20m.pkl (KNI's released pickles)",
                      _detect("kni_pkl"), _lazy("kni_pkl", "read")),
    "recbole": Reader("recbole", "RecBole atomic files NAME.inter, NAME.kg and NAME.link",
                      _detect("recbole"), _lazy("recbole", "read")),
    "ripplenet-raw": Reader("ripplenet-raw", "RippleNet raw inputs: ml-1m ratings.dat or Book-Crossing "
                            "BX-Book-Ratings.csv, with item_index2entity_id_rehashed.txt and kg files",
                            _detect("ripplenet_raw"), _lazy("ripplenet_raw", "read")),
}


def recognised(folder: Path) -> bool:
    """Whether ``folder`` holds the files of a format (a README or a SOURCE.md alone is no dataset)."""
    return folder.is_dir() and any(reader.detect(folder) for reader in READERS.values())


def read_folder(folder: str | Path, cfg: DatasetConfig) -> RawDataset:
    """Read ``folder`` in ``cfg.format`` (or the first format whose files are there)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("no such folder", folder)
    if cfg.format != "auto":
        return READERS[cfg.format].read(folder, cfg)
    for reader in READERS.values():
        if reader.detect(folder):
            return reader.read(folder, cfg)
    listing = "\n".join(f"  - {r.name}: {r.expects}" for r in READERS.values())
    held = sorted(p.name for p in folder.iterdir())
    holds = ", ".join(held[:12]) + (f" and {len(held) - 12} more" if len(held) > 12 else "") if held else "nothing"
    raise DataError(f"no supported dataset files found (the folder holds {holds}); expected one of:\n{listing}",
                    folder)
