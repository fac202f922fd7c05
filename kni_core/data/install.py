"""``kni data prepare NAME --source DIR``: take a folder of data into the user's data folder.

The new files are checked *completely* first (read, every id and label checked, preprocessed
with the recipe's settings) while the user's current copy stays untouched; only then are they
copied beside it and swapped in with two renames, so the copy under the data folder is always
either the old one or the new one, never a mix (a crash between the two renames leaves the
old copy complete in ``.NAME-old-*`` beside it). The check never trusts the preprocessing cache
(it reads the new files themselves); its result is then cached for the new copy, under the key
of the copied files (their inodes and ctimes), so the next run starts from the cache.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from ..config import RunConfig, stable_hash
from ..errors import DataError
from . import folder_fingerprint
from .formats import read_folder
from .prepare import PreparedData, build, prepared_dir, preprocessing_settings, save, source_digests, source_fingerprint

log = logging.getLogger(__name__)


#: How far (relative) a count may be from a registry dataset's published one before ``install``
#: calls the files another dataset's: a variant of its preprocessing stays well within it.
UNLIKE = 0.1


def install(source: Path, cfg: RunConfig, force: bool = False) -> PreparedData:
    """Check ``source`` fully, then make it the folder ``cfg.dataset.path`` (replacing what is
    there atomically) and return its preprocessed data. Raises DataError, the target unchanged;
    also for files whose counts are far from the published ones of ``cfg.dataset.name`` (Last.FM
    installed as bc), unless ``force``."""
    source = Path(source).expanduser()
    target = Path(cfg.dataset.path or "").expanduser()
    if not cfg.dataset.path:
        raise DataError("no target folder (dataset.path) to install the data into")
    if source.is_file():
        raise DataError("is a file; --source takes the folder that holds the dataset's files", source)
    if not source.is_dir():
        raise DataError("no such folder (--source)", source)
    files = [f for f in source.iterdir() if f.is_file()]
    if not files:
        raise DataError("no files in the folder (--source)", source)
    if target.exists() and source.resolve() == target.resolve():
        raise DataError("--source is the installed copy itself; give the folder the data comes from", source)
    # 1. validate: read and preprocess the source as the installed copy will be (errors name its files)
    checked = source_fingerprint(source)
    raw = read_folder(source, cfg.dataset)
    if not force:
        _check_like_published(raw.summary(), cfg.dataset.name, source)
    prepared = build(raw, cfg)
    # 2. copy beside the target, 3. swap it in
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}-new-{secrets.token_hex(8)}"
    staging.mkdir()                 # not mkdtemp: its mode 0700 would hide a shared data folder from others
    try:
        for f in files:
            shutil.copy2(f, staging / f.name)
        copied = source_fingerprint(staging)       # a rename of the folder keeps each file's inode and ctime
        if source_fingerprint(source) != checked or [c[:2] for c in copied] != [c[:2] for c in checked]:
            raise DataError(f"the copy in {staging} differs from {source} (were the files changing?); "
                            "nothing was replaced")
        _swap(staging, target)
    except OSError as e:
        raise DataError(f"cannot copy {source} into {target.parent} ({e.strerror or e}); "
                        f"{target} is unchanged") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("installed %s as %s", source, target)
    # 4. cache the checked result under the key prepare() computes for the installed copy
    fingerprint = folder_fingerprint(target, cfg, files=copied)
    prepared.key = stable_hash({"settings": preprocessing_settings(cfg), "source": fingerprint})
    prepared.sources = source_digests(target, raw.files) if raw.files else source_digests(target)
    try:
        save(prepared, prepared_dir(target.name, prepared.key))
    except OSError as e:
        log.warning("the data is installed but its preprocessed cache could not be written (%s); the first run "
                    "will preprocess it", e.strerror or e)
    return prepared


def _check_like_published(measured: dict, name: str, source: Path) -> None:
    from .registry import DATASETS
    s = DATASETS.get(name)
    if s is None or not s.published:
        return
    far = [f"{k} {measured[k]:,} (published {p:,})" for k, p in s.published.items()
           if k in ("users", "items", "interactions", "triples") and k in measured and p
           and abs(measured[k] - p) > UNLIKE * p]
    if far:
        raise DataError(f"these files do not look like {s.title}: {', '.join(far)}; nothing was installed "
                        f"(--force installs them as {name} anyway)", source)


def _swap(staging: Path, target: Path) -> None:
    """Put ``staging`` in place of ``target`` by renames (same file system), the old copy last."""
    if not target.exists():
        os.rename(staging, target)
        return
    backup = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-old-"))
    backup.rmdir()
    os.rename(target, backup)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)
