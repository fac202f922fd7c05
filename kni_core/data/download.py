"""Fetch a registry dataset's files into the user data folder, verifying their checksums.

URLs are pinned to commits, so a checksum mismatch means a corrupted transfer, never a new
release: the partial file is discarded and the error says which file failed.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from ..errors import DataError
from .registry import spec, user_data_root

log = logging.getLogger(__name__)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(folder: Path, checksums: dict[str, str]) -> dict[str, str]:
    """``{file: "ok" | "mismatch" | "absent"}`` for every file with a known checksum."""
    return {name: ("absent" if not (folder / name).is_file()
                   else "ok" if sha256(folder / name) == expected else "mismatch")
            for name, expected in checksums.items()}


def download(name: str, dest: Path | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Download dataset ``name`` into ``dest`` (default: the user data folder); returns it."""
    s = spec(name)
    if not s.urls:
        raise DataError(f"dataset {name!r} has no public download; {s.obtain}")
    dest = Path(dest) if dest else user_data_root() / name
    dest.mkdir(parents=True, exist_ok=True)
    for filename, url in s.urls.items():
        target = dest / filename
        expected = s.checksums.get(filename)
        if target.is_file() and expected and sha256(target) == expected:
            log.info("%s already present and verified", target)
            continue
        with tempfile.NamedTemporaryFile(dir=dest, prefix=f".{filename}.", delete=False) as tmp:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    total = int(response.headers.get("Content-Length") or 0)
                    done = 0
                    while block := response.read(1 << 16):
                        tmp.write(block)
                        done += len(block)
                        if progress:
                            progress(filename, done, total)
            except (urllib.error.URLError, OSError) as error:
                Path(tmp.name).unlink(missing_ok=True)
                raise DataError(f"download of {filename} from {url} failed: {error}") from None
        if expected and sha256(Path(tmp.name)) != expected:
            Path(tmp.name).unlink(missing_ok=True)
            raise DataError(f"{filename} from {url} does not match its sha256 {expected}; nothing was kept")
        shutil.move(tmp.name, target)
        log.info("downloaded %s", target)
    return dest
