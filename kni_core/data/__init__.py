"""Data: readers (``formats``), the dataset registry, preprocessing with a disk cache, synthetic data."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..config import RunConfig
from ..errors import DataError
from .formats import read_folder
from .prepare import PreparedData, prepare_cached, source_fingerprint
from .raw import RawDataset
from .registry import DATASETS, locate, spec
from .synthetic import generate, spec_from_params

__all__ = ["PreparedData", "RawDataset", "DATASETS", "load_raw", "prepare", "locate", "spec", "source_folder"]


def source_folder(cfg: RunConfig) -> Path | None:
    """Folder the dataset is read from (None for synthetic data)."""
    d = cfg.dataset
    if d.path:
        return Path(d.path).expanduser()
    if d.name == "synthetic":
        return None
    return locate(d.name)


def load_raw(cfg: RunConfig) -> RawDataset:
    if cfg.dataset.name == "synthetic" and not cfg.dataset.path:
        return generate(spec_from_params(cfg.dataset.synthetic))
    return read_folder(source_folder(cfg), cfg.dataset)


def prepare(cfg: RunConfig, use_cache: bool = True) -> PreparedData:
    """The preprocessed dataset for ``cfg``: from the cache when its settings were seen before."""
    folder = source_folder(cfg)
    if folder is None:
        dataset_id = "synthetic"
        fingerprint: object = asdict(spec_from_params(cfg.dataset.synthetic))
    else:
        if not folder.is_dir():
            raise DataError("no such folder (dataset.path)", folder)
        dataset_id = cfg.dataset.name if not cfg.dataset.path else folder.name
        fingerprint = {"folder": str(folder.resolve()), "format": cfg.dataset.format,
                       "files": source_fingerprint(folder)}
    return prepare_cached(lambda: load_raw(cfg), cfg, dataset_id, fingerprint, use_cache)
