"""What a run records so that a reader can check which code, environment and data gave its
numbers: the package version and git commit with the working tree's state (queue time, where
the code was chosen), then the Python / torch / CUDA versions and the data files' digests (the
run process's start, where they are used). :mod:`workbench.analysis.provenance` reads it back."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Code:
    """The code a run is queued with."""

    version: str | None = None
    commit: str | None = None           # the full commit of HEAD
    dirty: bool | None = None           # tracked files differ from HEAD (None: not a git checkout)
    diff_sha256: str | None = None      # the digest of ``git diff HEAD`` when dirty

    def as_json(self) -> str:
        return json.dumps({"code": {"dirty": self.dirty, "diff_sha256": self.diff_sha256}}, sort_keys=True)


def code(where: Path | None = None) -> Code:
    """The package's version and, when ``where`` (default: this package's folder) is in a git
    checkout, its commit and whether (and how) the tracked files differ from it. Untracked
    files are not part of the digest."""
    version = None
    try:
        from importlib.metadata import version as _version
        version = _version("kni-workbench")
    except Exception:                       # noqa: BLE001 - not installed as a package
        pass
    here = where or Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            out = subprocess.run(["git", *args], cwd=here, capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out if out.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if head is None or not head.stdout.strip():
        return Code(version)
    diff = git("diff", "HEAD", "--binary")
    if diff is None:
        return Code(version, head.stdout.decode().strip())
    dirty = bool(diff.stdout)
    return Code(version, head.stdout.decode().strip(), dirty,
                hashlib.sha256(diff.stdout).hexdigest() if dirty else None)


def environment(data: Any | None) -> dict:
    """The run process's versions and, for ``data`` (a PreparedData), its cache key and the
    sha256 of each source file (none for generated data)."""
    import numpy
    import torch
    facts: dict = {"environment": {
        "python": platform.python_version(), "implementation": sys.implementation.name,
        "torch": torch.__version__, "numpy": numpy.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
        else None, "platform": platform.platform(terse=True)}}
    if data is not None:
        facts["data"] = {"key": data.key, "files": dict(sorted(data.sources.items()))}
    return facts
