"""Dataset readers: each turns a folder into a :class:`RawDataset`.

A reader is registered under the name used by ``dataset.format`` in a recipe, knows which
files it expects (for the error that lists them) and can tell whether a folder looks like
its format (for ``format: auto``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import DatasetConfig
from ..errors import DataError
from .raw import RawDataset, read_int_table, read_npy_table


@dataclass(frozen=True)
class Reader:
    name: str
    expects: str                      # human description of the files, for errors
    detect: Callable[[Path], bool]
    read: Callable[[Path, DatasetConfig], RawDataset]


def _pick(folder: Path, stem: str) -> Path | None:
    for ext in (".npy", ".txt"):
        if (folder / (stem + ext)).is_file():
            return folder / (stem + ext)
    return None


def _read_table(path: Path) -> "np.ndarray":  # noqa: F821
    return read_npy_table(path, 3) if path.suffix == ".npy" else read_int_table(path, 3)


def read_ripplenet(folder: Path, cfg: DatasetConfig) -> RawDataset:
    """RippleNet / KGCN output: ``ratings_final`` and ``kg_final`` as ``.npy`` or ``.txt``.

    ``.npy`` is preferred when both exist (same rows, faster to load).
    """
    ratings_path, kg_path = _pick(folder, "ratings_final"), _pick(folder, "kg_final")
    missing = [n for n, p in (("ratings_final.{txt,npy}", ratings_path), ("kg_final.{txt,npy}", kg_path)) if p is None]
    if missing:
        raise DataError(f"missing {', '.join(missing)} (RippleNet format expects ratings_final and kg_final)", folder)
    ratings = _read_table(ratings_path)
    kg = _read_table(kg_path)
    try:
        return RawDataset.from_arrays(ratings, kg, source=str(ratings_path), kg_source=str(kg_path))
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(str(exc), folder) from None


def _is_ripplenet(folder: Path) -> bool:
    return _pick(folder, "ratings_final") is not None


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
    raise DataError(f"no supported dataset files found; expected one of:\n{listing}", folder)
