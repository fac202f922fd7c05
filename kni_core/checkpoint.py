"""A run's saved model: written atomically, read back into a model ready to predict.

A checkpoint holds the run's resolved config, the model's ``state_dict``, the sha256 of
its tensors (``digest``) and of the data's source files: a file whose weights were overwritten
in place (same size, a disk or copy fault) is refused when read, as are weights that are not
finite and weights trained on files that have changed since. What the state does
not hold is rebuilt from the config: the prepared data (cached on disk, seeded by
``dataset.split_seed``) gives KNI its adjacency table and the baselines their sampled
structures, exactly as the run had them.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .config import DEFAULT_MODEL, RunConfig
from .errors import KniError

if TYPE_CHECKING:
    from .data.prepare import PreparedData


class CheckpointMissing(KniError):
    """The checkpoint file is not there (never written, removed, or not moved with the database)."""


class CheckpointUnreadable(KniError):
    """The file is there but is not a checkpoint of this project (or not of this run)."""


def state_digest(state: dict) -> str:
    """The sha256 of a ``state_dict``'s names, dtypes, shapes and values, in name order."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_checkpoint(config: dict, state: dict, data_files: dict[str, str] | None = None) -> dict:
    """What a run's checkpoint file holds: the config, the weights and their digest, and the
    sha256 of the source files its data was prepared from (``PreparedData.sources``)."""
    return {"config": config, "model": state, "digest": state_digest(state), "data_files": dict(data_files or {})}


def same_sources(a: Any, b: Any) -> bool:
    """Whether two records of source files (name -> sha256) can be the same data: they agree on
    every file both name. Not equality: a record lists the files read, and an older one every
    file of the folder (``ratings_final.txt`` beside the ``.npy`` read); a missing record tells
    nothing."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return True
    return all(a[name] == b[name] for name in a.keys() & b.keys())


def sources_now(cfg: RunConfig, saved: Any) -> dict[str, str]:
    """The sha256 of the files ``saved`` names (a record of source files), as the dataset's
    folder holds them now (those still there): what :func:`check_same_data` compares, without
    preparing the data, so that a run can be refused before anything of it changes."""
    from .data import source_folder
    from .data.prepare import source_digests
    if not isinstance(saved, dict) or not saved:
        return {}
    folder = source_folder(cfg)
    return source_digests(folder, list(saved)) if folder is not None else {}


def check_same_data(what: str, saved: Any, data: PreparedData | dict[str, str]) -> None:
    """Refuse weights trained on other data than ``data`` (its files edited since, or another
    copy of the dataset read): with the same entity count they would load and predict silently."""
    now = data if isinstance(data, dict) else data.sources
    if not same_sources(saved, now):
        changed = sorted(n for n in saved.keys() & now.keys() if saved[n] != now[n])
        raise CheckpointUnreadable(f"{what}: trained on other data than the dataset's files now hold "
                                   f"({', '.join(changed)} changed since: sha256 {saved[changed[0]][:12]} then, "
                                   f"{now[changed[0]][:12]} now); restore the files the run read "
                                   "(kni show RUN lists them) or train again")


def write_atomically(path: str | os.PathLike, obj: Any, before_replace: Callable[[], None] | None = None) -> None:
    """``torch.save(obj)`` into a new file beside ``path``, synced, then renamed over it. A failed
    write (a full disk) leaves the previous file whole and no partial file behind; so does an
    exception of ``before_replace``, called once the new file is whole (the caller's last word:
    a process that is no longer the file's writer must not replace it)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask applies, as for torch.save
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_file(path: Path, what: str) -> Any:
    """``torch.load`` of a file of ours, tensors and plain values only; CheckpointUnreadable, naming
    the file, whatever a damaged or foreign file makes the unpickler raise."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise CheckpointUnreadable(f"{what} {path}: cannot be read ({e.strerror or e})") from None
    except pickle.UnpicklingError as e:     # torch's advice to load it unsafely is not passed on
        if "unsupported global" in str(e).lower():
            raise CheckpointUnreadable(f"{what} {path}: not a kni-workbench file (it holds objects other than "
                                       "tensors and plain values; they are not loaded, as loading them could run "
                                       "code)") from None
        detail = str(e).split("WeightsUnpickler error:")[-1].strip().splitlines()
        raise CheckpointUnreadable(f"{what} {path}: cannot be read: damaged or not a file torch.save wrote "
                                   f"({detail[0] if detail else 'unpickling failed'})") from None
    except Exception as e:                  # noqa: BLE001 - junk bytes make the unpickler raise anything
        raise CheckpointUnreadable(f"{what} {path}: cannot be read: damaged or not a file torch.save wrote "
                                   f"({_first_line(e)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def read(path: str | os.PathLike) -> dict:
    """The checkpoint's ``{"config", "model"}``; :class:`CheckpointMissing` or
    :class:`CheckpointUnreadable` with the path when it cannot be used."""

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointMissing(f"checkpoint {path}: missing (not written, removed, or not copied with the "
                                f"run database)")
    state = load_file(path, "checkpoint")
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or \
            not isinstance(state.get("config"), dict):
        raise CheckpointUnreadable(f"checkpoint {path}: not a kni-workbench checkpoint (no config and model state)")
    weights = state["model"]
    if "digest" in state and state["digest"] != state_digest(weights):   # checkpoints before digests: none
        raise CheckpointUnreadable(f"checkpoint {path}: damaged (its weights are not those written with it: the "
                                   f"digest differs); train the run again or restore the file")
    bad = [name for name, t in weights.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointUnreadable(f"checkpoint {path}: holds weights that are not finite (NaN or infinite) in "
                                   f"{', '.join(bad[:3])}; the run diverged or the file is damaged")
    return state


def load_model(cfg: RunConfig, path: str | os.PathLike, data: PreparedData | None = None,
               device: str = "cpu") -> tuple[Any, PreparedData]:
    """``(model, data)``: the model ``cfg`` builds (any ``model.name``), holding the weights saved
    at ``path``, in evaluation mode, with the prepared data it was trained on. ``data``: the
    prepared data, when the caller has it (else read from the cache, the adjacency table
    memory-mapped: a look at one prediction touches a few of its rows)."""
    import torch

    from . import models
    from .data import prepare

    state = read(path)
    saved = state["config"]
    if saved.get("dataset") != cfg.to_dict()["dataset"] or _model(saved) != _model(cfg.to_dict()):
        raise CheckpointUnreadable(f"checkpoint {path}: saved for another configuration "
                                   f"(dataset or model settings differ from the run's)")
    data = data if data is not None else prepare(cfg, mmap=True)
    check_same_data(f"checkpoint {path}", state.get("data_files"), data)
    torch.manual_seed(cfg.seed)                  # the initial values are overwritten; keep them seeded anyway
    model = models.build_model(cfg, data)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointUnreadable(f"checkpoint {path}: does not fit the model the run's config builds "
                                   f"({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), data


def _model(d: dict) -> dict:
    model = dict(d.get("model") or {})
    model.setdefault("name", DEFAULT_MODEL)
    return model
