"""Data: readers (``formats``), the dataset registry, preprocessing with a disk cache, synthetic data."""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from pathlib import Path

from ..config import RunConfig
from ..errors import DataError
from .formats import read_folder
from .prepare import PreparedData, prepare_cached, source_digests, source_fingerprint
from .raw import RawDataset
from .registry import DATASETS, locate, spec
from .synthetic import generate, spec_from_params

__all__ = ["PreparedData", "RawDataset", "DATASETS", "load_raw", "prepare", "locate", "spec", "source_folder",
           "check_available"]


def source_folder(cfg: RunConfig) -> Path | None:
    """Folder the dataset is read from (None for synthetic data)."""
    d = cfg.dataset
    if d.path:
        return Path(d.path).expanduser()
    if d.name == "synthetic":
        return None
    return locate(d.name)


def check_available(cfg: RunConfig) -> str:
    """Where the data of ``cfg`` will come from, checked without reading it (cheap enough for a UI).

    Returns ``"generated"`` for synthetic data or the folder; raises a DataError that says what is
    missing and how to obtain it (the registry's message) otherwise.
    """
    d = cfg.dataset
    if d.name == "synthetic" and not d.path:
        return "generated"
    folder = source_folder(cfg)                 # a registry dataset that is not found raises here
    assert folder is not None
    if not folder.is_dir():
        raise DataError("no such folder (dataset.path)", folder)
    if d.path:
        from .formats import READERS
        readers = [READERS[d.format]] if d.format != "auto" else list(READERS.values())
        if not any(r.detect(folder) for r in readers):
            expected = "; ".join(f"{r.name}: {r.expects}" for r in readers)
            raise DataError(f"no dataset files found (expected {expected})", folder)
    return str(folder)


def load_raw(cfg: RunConfig) -> RawDataset:
    if cfg.dataset.name == "synthetic" and not cfg.dataset.path:
        return generate(spec_from_params(cfg.dataset.synthetic))
    return read_folder(source_folder(cfg), cfg.dataset)


def folder_fingerprint(folder: Path, cfg: RunConfig, files: list | None = None) -> dict:
    """What identifies a source folder in the cache key: its path, format and files (default:
    the files there now)."""
    return {"folder": str(folder.resolve()), "format": cfg.dataset.format,
            "files": source_fingerprint(folder) if files is None else files}


def prepare(cfg: RunConfig, use_cache: bool = True, mmap: bool = False) -> PreparedData:
    """The preprocessed dataset for ``cfg``: from the cache when its settings were seen before
    (``mmap``: its adjacency table memory-mapped, read-only, for readers of a few rows)."""
    folder = source_folder(cfg)
    digests = None
    if folder is None:
        dataset_id = "synthetic"
        fingerprint: object = asdict(spec_from_params(cfg.dataset.synthetic))
    else:
        if not folder.is_dir():
            raise DataError("no such folder (dataset.path)", folder)
        dataset_id = cfg.dataset.name if not cfg.dataset.path else folder.name
        fingerprint = folder_fingerprint(folder, cfg)
        digests = partial(source_digests, folder)
    return prepare_cached(lambda: load_raw(cfg), cfg, dataset_id, fingerprint, use_cache, mmap=mmap,
                          digests=digests)
