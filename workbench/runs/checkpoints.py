"""Where a run's saved model lives, and what is left of it.

By default a run writes its selected epoch's model beside its SQLite database, in a folder
named after the file: ``runs.db`` -> ``runs.db.checkpoints/run-<id>.pt``. The row stores that
path relative to the database's folder, so a database moved (or renamed) together with its
checkpoints folder still finds them, and one moved without it opens and reports them missing.

A database that is not a local file (PostgreSQL, in-memory SQLite) has no folder to sit
beside: its runs write to ``$KNI_CHECKPOINT_DIR`` (default ``kni-checkpoints`` in the run
process's working directory), in a folder named after the database, and the row holds the
absolute path. ``kni run --checkpoint-dir DIR`` still picks another folder for one launch.

A database copied without its folder (``cp runs.db trial.db``) has rows naming the original's
folder: the copy reads those models, but never deletes or overwrites them (``kni rm`` on the copy
keeps them; a resumed run of the copy saves into the copy's own folder). A copy made with its
folder (``trial.db.checkpoints``) uses its own files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from kni_core.errors import KniError

from ..store.engine import sqlite_path

CHECKPOINT_DIR_ENV = "KNI_CHECKPOINT_DIR"
DEFAULT_DIR_NAME = "kni-checkpoints"


def default_dir(url: str) -> Path:
    """The folder the runs of database ``url`` save their models in by default (absolute)."""
    db_file = sqlite_path(url)
    if db_file is not None:
        return db_file.absolute().with_name(db_file.name + ".checkpoints")
    root = Path(os.environ.get(CHECKPOINT_DIR_ENV) or DEFAULT_DIR_NAME).expanduser().absolute()
    u = make_url(url)
    label = "-".join(str(p) for p in (u.get_backend_name(), u.host, u.port, u.database) if p) or "db"
    return root / re.sub(r"[^A-Za-z0-9._-]+", "_", label)


def default_path(url: str, run_id: int) -> Path:
    return default_dir(url) / f"run-{run_id}.pt"


def last_state_path(url: str, run_id: int) -> Path:
    """Where run ``run_id`` keeps its last-epoch state (what ``kni resume`` continues from):
    beside its default saved model, whatever ``--checkpoint-dir`` it was given."""
    return default_dir(url) / f"run-{run_id}.last.pt"


def run_identity(run) -> dict:
    """What ties a last-epoch state to its run: the id alone would match run 5 of another
    database, the creation time too does not."""
    created = run.created_at.isoformat(timespec="microseconds") if run.created_at is not None else None
    return {"run": run.id, "created_at": created}


def stored_form(url: str, path: str | os.PathLike) -> str:
    """What the row keeps: relative to a SQLite file's folder when inside it, else absolute."""
    path = Path(path).absolute()
    db_file = sqlite_path(url)
    if db_file is not None:
        try:
            return path.relative_to(db_file.absolute().parent).as_posix()
        except ValueError:
            pass
    return str(path)


def resolve(url: str, stored: str) -> Path:
    """The file a row's ``checkpoint`` names, on this machine: relative to the database's folder;
    but first the same file name in the folder named after the database now, when it is there (a
    database renamed or copied together with its folder: ``new.db``, ``new.db.checkpoints``)."""
    path = Path(stored)
    if path.is_absolute():
        return path
    db_file = sqlite_path(url)
    if db_file is not None:
        own = default_dir(url) / path.name
        if own.exists():
            return own
    return (db_file.absolute().parent if db_file is not None else Path.cwd()) / path


def other_owner(url: str, path: Path) -> Path | None:
    """The other SQLite database whose checkpoint folder holds ``path`` (the rows of a database
    copied without its folder name the original's files), else None."""
    folder = path.absolute().parent
    suffix = ".checkpoints"
    if not folder.name.endswith(suffix) or folder == default_dir(url):
        return None
    owner = folder.with_name(folder.name[:-len(suffix)])
    return owner if owner.is_file() else None


@dataclass(frozen=True)
class CheckpointState:
    """A run's checkpoint as found: ``path`` None when the run has none recorded."""

    path: Path | None
    size: int | None            # bytes; None when missing

    @property
    def missing(self) -> bool:
        return self.path is not None and self.size is None

    def text(self) -> str:
        if self.path is None:
            return "none saved"
        if self.size is None:
            return f"{self.path} (missing)"
        return f"{self.path} ({human_size(self.size)})"

    def to_dict(self) -> dict:
        return {"path": str(self.path) if self.path else None, "bytes": self.size,
                "missing": self.missing}


def state(url: str, stored: str | None) -> CheckpointState:
    if not stored:
        return CheckpointState(None, None)
    path = resolve(url, stored)
    try:
        return CheckpointState(path, path.stat().st_size if path.is_file() else None)
    except OSError:
        return CheckpointState(path, None)


class OtherDatabasesCheckpoint(KniError):
    """A saved model that lies in another database's checkpoint folder: not this one's to delete."""


def remove_saved(url: str, run) -> bool:
    """Delete what run ``run`` saved: its last-epoch state and its model (``kni rm``, the
    workbench's delete); False when no model was there. OtherDatabasesCheckpoint, the model
    kept, when it is another database's (the state is always this database's own)."""
    last_state_path(url, run.id).unlink(missing_ok=True)
    return remove(url, run.checkpoint)


def remove(url: str, stored: str | None) -> bool:
    """Delete a run's checkpoint file (and its folder once empty); False when there was none."""
    if not stored:
        return False
    path = resolve(url, stored)
    owner = other_owner(url, path)
    if owner is not None and path.exists():
        raise OtherDatabasesCheckpoint(f"{path} kept: it is in the checkpoint folder of {owner} (this database's "
                                       "rows were copied from it without their folder)")
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    try:
        path.parent.rmdir()                 # only when empty
    except OSError:
        pass
    return True


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class CheckpointFolderError(KniError):
    """A folder given for saved models that cannot hold them."""


def checkpoint_folder(path: str | os.PathLike, option: str = "--checkpoint-dir") -> Path:
    """``path`` as a folder for saved models, created if absent; CheckpointFolderError (one
    line naming ``option``) when it is a file or cannot be created."""
    folder = Path(path).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise CheckpointFolderError(f"{option} {path}: is a file, expected a folder for the saved models")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointFolderError(f"{option} {path}: cannot create the folder ({e.strerror or e})") from None
    return folder


def slug(text: str, limit: int = 80) -> str:
    """A file-name part from user text (a recipe name): letters, digits, ``. _ -`` only, no
    leading dot, never empty, so ``../../x/evil`` becomes ``x-evil`` and cannot leave a folder."""
    part = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip(".-")[:limit]
    return part or "run"


def named_file(folder: Path, run) -> Path:
    """The file in a folder given for saved models (``--checkpoint-dir``) that run ``run`` saves
    into: its recipe, seed and id, and a digest of its identity (:func:`run_identity`), since
    run 1 of another database given the same folder must not overwrite it (nor ``kni rm`` there
    delete it)."""
    from kni_core.config import stable_hash
    token = stable_hash(run_identity(run))[:8]
    return file_in(folder, f"{slug(run.recipe)}-seed{run.seed}-run{run.id}-{token}.pt")


def file_in(folder: Path, name: str) -> Path:
    """``folder / name``, checked to lie inside ``folder`` (ValueError otherwise)."""
    path = (folder / name).absolute()
    if path.parent != folder.absolute():
        raise ValueError(f"{name!r} would leave {folder}")
    return path
