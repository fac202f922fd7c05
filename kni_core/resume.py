"""A run's last-epoch state: what continuing it needs to produce the numbers it would have had.

The best-model checkpoint (:mod:`.checkpoint`) holds the weights of one epoch; continuing a run
needs more. After each finished epoch the state below is written (atomically, as the best
model): the model's weights, the optimizer's moments *and* its host-side step counts (TF's
Adam correction reads them), every random generator training draws from (the trainer's torch CPU and CUDA
generators - dropout and KNI's neighbour sampling -, numpy's shuffle, a device shuffle
generator), the epochs so far (early stopping and the selection read them), the selected
epoch, its weights when the trainer keeps them (:class:`~kni_core.train.Trainer`'s
``keep_best``; top-N scores them at the end), and the epoch number. Evaluation draws from
generators seeded per epoch, and the baselines' sampled structures come from
``dataset.split_seed``, so neither needs saving.

Restored into a freshly built :class:`~kni_core.train.Trainer` of the same configuration, the
next epoch starts from the same bits as the uninterrupted run's did: on CPU the continued run is
bitwise identical (tested); on CUDA, as identical as its kernels are deterministic.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, Callable

from .checkpoint import CheckpointMissing, CheckpointUnreadable, load_file, state_digest, write_atomically
from .results import EpochResult, TopKResult

if TYPE_CHECKING:
    from .train import Trainer

#: The layout of the state; a file of another layout is refused rather than half-restored.
FORMAT = 1


def epoch_to_state(result: EpochResult) -> dict:
    return {**{f: getattr(result, f) for f in EpochResult.__dataclass_fields__ if f not in ("topk", "strata")},
            "topk": [t.to_dict() for t in result.topk], "strata": result.strata}


def epoch_from_state(d: dict) -> EpochResult:
    return EpochResult(**{**d, "topk": tuple(TopKResult(**t) for t in d["topk"])})


def selected(state: dict) -> EpochResult | None:
    """The epoch the state's run had selected (its best model is that epoch's)."""
    return next((epoch_from_state(d) for d in state["history"] if d["epoch"] == state["best"]), None)


def capture(trainer: Trainer, identity: dict | None = None) -> dict:
    """The state after the trainer's latest finished epoch (its tensors are the trainer's own:
    save it before the next step). ``identity`` (the caller's run identity, e.g. its database
    id) is kept and checked again on :func:`read`."""
    model = trainer.model.state_dict()
    state = {
        "format": FORMAT, "identity": identity or {}, "config": trainer.cfg.to_dict(),
        "epoch": trainer.history[-1].epoch if trainer.history else 0,
        "model": model, "digest": state_digest(model),
        "optimizer": trainer.optimizer.state_dict(),
        "rng": {"torch": trainer.rng_states["torch"], "cuda": trainer.rng_states["cuda"],
                "numpy": trainer.rng.bit_generator.state,
                "shuffle": trainer.shuffle_generator.get_state() if trainer.shuffle_generator is not None else None},
        "history": [epoch_to_state(r) for r in trainer.history],
        "best": trainer.best.epoch if trainer.best is not None else None,
        "topk_best": trainer.best_state,          # the selected weights, when the trainer keeps them
        "data_files": dict(trainer.data.sources),
    }
    state["digest_rest"] = rest_digest(state)
    return state


def rest_digest(state: dict) -> str:
    """The sha256 of everything a state holds besides its weights and their digest: optimizer
    moments, generator states, history, selection. A changed byte there would not stop a resumed
    run; it would only make it differ from the run it continues, silently."""
    import torch

    digest = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            digest.update(f"T{t.dtype}{tuple(t.shape)};".encode())
            if t.numel():
                digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            digest.update(b"{")
            for k in sorted(x, key=repr):
                digest.update(repr(k).encode() + b":")
                feed(x[k])
            digest.update(b"}")
        elif isinstance(x, (list, tuple)):
            digest.update(b"[")
            for v in x:
                feed(v)
            digest.update(b"]")
        else:
            digest.update(repr(x).encode() + b";")

    feed({k: v for k, v in state.items() if k not in ("model", "digest", "digest_rest")})
    return digest.hexdigest()


def restore(trainer: Trainer, state: dict) -> int:
    """Put ``state`` into a freshly built trainer of the same configuration; returns the epoch
    it ends with (training continues after it)."""
    from .checkpoint import check_same_data
    check_same_data("last-epoch state", state.get("data_files"), trainer.data)   # resumed on the data it began on
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    rng = state["rng"]
    trainer.rng_states["torch"] = rng["torch"]
    if rng["cuda"] is not None and trainer.device.type == "cuda":
        trainer.rng_states["cuda"] = rng["cuda"]
    trainer.rng.bit_generator.state = rng["numpy"]
    if rng["shuffle"] is not None and trainer.shuffle_generator is not None:
        trainer.shuffle_generator.set_state(rng["shuffle"])
    trainer.history = [epoch_from_state(d) for d in state["history"]]
    trainer.best = next((r for r in trainer.history if r.epoch == state["best"]), None)
    trainer.best_state = state["topk_best"]
    return int(state["epoch"])


def save(path: str | os.PathLike, state: dict, before_replace: Callable[[], None] | None = None) -> None:
    write_atomically(path, state, before_replace)


def read(path: str | os.PathLike, config: dict | None = None, identity: dict | None = None) -> dict:
    """The state at ``path``, checked: its layout, its weights' digest, and (when given) that it
    belongs to the run with ``config`` and ``identity``. :class:`CheckpointMissing` or
    :class:`CheckpointUnreadable`, naming the file and what is wrong, otherwise."""
    from pathlib import Path


    path = Path(path)
    if not path.is_file():
        raise CheckpointMissing(f"last-epoch state {path}: missing (the run saved none, it was removed, or it "
                                "was not copied with the run database)")
    state = load_file(path, "last-epoch state")
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("model"), dict):
        raise CheckpointUnreadable(f"last-epoch state {path}: not a kni-workbench last-epoch state of format "
                                   f"{FORMAT}")
    if state.get("digest") != state_digest(state["model"]):
        raise CheckpointUnreadable(f"last-epoch state {path}: damaged (its weights are not those written with "
                                   "it: the digest differs)")
    if "digest_rest" in state and state["digest_rest"] != rest_digest(state):     # states before it: none
        raise CheckpointUnreadable(f"last-epoch state {path}: damaged (its optimizer state, generators or history "
                                   "are not those written with it: the digest differs)")
    if identity is not None and state.get("identity") != identity:
        raise CheckpointUnreadable(f"last-epoch state {path}: belongs to another run ({_who(state.get('identity'))}, "
                                   f"not {_who(identity)}); is it another database's checkpoint folder?")
    if config is not None and not continuable(state.get("config"), config):
        raise CheckpointUnreadable(f"last-epoch state {path}: saved for another configuration than the run's")
    return state


def continuable(saved: Any, config: dict) -> bool:
    """Whether a state saved under ``saved`` continues under ``config``: the same configuration
    but for ``train.epochs`` (a run extended to more epochs goes on from its state; nothing
    before the last epoch depends on how many there will be) and ``device`` (a run continued
    on another device: the weights and moments move there; the generators of the device it
    left are not restored, so from there on its numbers are the new device's)."""
    def comparable(c: Any) -> Any:
        if not isinstance(c, dict) or not isinstance(c.get("train"), dict):
            return c
        return {**{k: v for k, v in c.items() if k != "device"},
                "train": {k: v for k, v in c["train"].items() if k != "epochs"}}
    return comparable(saved) == comparable(config)


def _who(identity: Any) -> str:
    if not isinstance(identity, dict) or not identity:
        return "no identity"
    return ", ".join(f"{k} {v}" for k, v in identity.items())
