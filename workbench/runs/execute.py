"""Run one seed of a recipe and tell listeners what happens.

Listeners receive the same typed records the store, the console and ``--json`` consume:
``started`` once, ``epoch`` per :class:`~kni_core.train.EpochResult`, then ``finished``
with the :class:`~kni_core.train.FitSummary` or ``failed`` with the exception.

The best model is checkpointed here, *after* the listeners have stored the epoch, so a
checkpoint that cannot be written (a full disk) fails the run with every finished epoch kept;
:meth:`~kni_core.train.Trainer.save` replaces the file atomically, so the previous checkpoint
survives such a failure whole. The default checkpoint (``train.checkpoint``, not asked for with
``--checkpoint-dir``) is ``optional``: a failed write is logged and training goes on.

A run process cancels by raising from its signal handler; a raise inside ``torch.save`` leaves
the zip writer half-closed, whose own error then hides the cancellation (the run ended
``failed``, seen once in CI). So the file writes happen inside ``shield()`` (the run process's
:meth:`~workbench.runs.listener.SignalGuard.section`), where a signal waits for the write.
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch

from kni_core.config import RunConfig
from kni_core.data import PreparedData, prepare
from kni_core.errors import KniError
from kni_core.resume import selected
from kni_core.train import (
    EpochResult,
    FitSummary,
    ProgressHook,
    Trainer,
    out_of_memory,
    resolve_device,
)

from .last_state import LastStateWriter

log = logging.getLogger(__name__)


class CheckpointError(KniError):
    """The best model could not be saved (the epochs are stored nevertheless)."""


@dataclass(frozen=True)
class RunStart:
    config: RunConfig
    device: str
    data_stats: dict
    from_cache: bool
    data: PreparedData | None = None


def describe_device(device: torch.device) -> str:
    """The device text a run records: the device, the GPU's name, the CPU threads the run
    uses, and how many runs may share its GPU (``KNI_GPU_SHARED_BY``, set by the launcher),
    e.g. ``cpu, 1 thread`` or ``cuda:0 NVIDIA H100 80GB HBM3, 8 threads, GPU shared by up to 2 runs``."""
    threads = torch.get_num_threads()
    name = f"{device} {torch.cuda.get_device_name(device)}" if device.type == "cuda" else str(device)
    text = f"{name}, {threads} thread{'s' if threads != 1 else ''}"
    shared = int(os.environ.get("KNI_GPU_SHARED_BY") or 1)
    if device.type == "cuda" and shared > 1:
        text += f", GPU shared by up to {shared} runs"
    return text


class RunListener(Protocol):
    def started(self, start: RunStart) -> None: ...
    def epoch(self, result: EpochResult) -> None: ...
    def finished(self, summary: FitSummary) -> None: ...
    def failed(self, error: BaseException) -> None: ...


@dataclass(frozen=True)
class LastEpoch:
    """Where the run keeps its last-epoch state (:mod:`kni_core.resume`), whose run it is, and
    what to tell after each write (``on_saved(path, bytes, seconds)``)."""

    path: Path
    identity: dict
    on_saved: Callable[[Path, int, float], None] | None = None
    #: Raises when this process no longer owns the run (superseded while stopped): called before
    #: a file of the run is replaced, so that it never overwrites the new attempt's.
    still_ours: Callable[[], None] | None = None


def execute(config: RunConfig, listeners: list[RunListener], data: PreparedData | None = None,
            checkpoint: str | None = None, progress: ProgressHook | None = None,
            checkpoint_optional: bool = False, on_checkpoint: Callable[[Path], None] | None = None,
            last: LastEpoch | None = None, resume: dict | None = None,
            shield: Callable[[], AbstractContextManager] = nullcontext) -> FitSummary:
    """Prepare (or reuse) the data, train, and report every step to ``listeners``; save the
    best model (Trainer.fit's rule: strictly better AUC on ``select_on``) to ``checkpoint``
    (``progress`` is the Trainer's hook for positions inside an epoch). ``on_checkpoint(path)``
    is called after each successful save; with ``checkpoint_optional`` a save that fails is
    logged and the run goes on (the previous checkpoint, if any, stays whole).

    A CUDA out-of-memory error becomes :class:`kni_core.train.OutOfMemory`, whose message
    names the setting to lower for the phase that ran out (setup, training or evaluation);
    the epochs already reported stay recorded.

    With ``last``, the state to continue from is written after stored epochs, within 3% of the
    training time (:mod:`.last_state`; removed when the run completes, unless
    ``train.keep_last``); with ``resume`` (such a state, read back) training continues after its
    epoch. Both files are written inside ``shield()``."""
    trainer: Trainer | None = None
    device: torch.device | str = config.device
    writer = LastStateWriter(last, shield=shield) if last is not None else None
    try:
        data = data or prepare(config)
        device = resolve_device(config.device)
        trainer = Trainer(config, data, device=device, progress=progress, keep_best=False)  # the best model is on disk
        start = RunStart(config, describe_device(device), data.stats, data.from_cache, data)
        for listener in listeners:
            listener.started(start)
        select_on = config.train.select_on
        best: EpochResult | None = None if resume is None else selected(resume)
        for result in trainer.fit(resume=resume):
            for listener in listeners:
                listener.epoch(result)
            if checkpoint and (best is None or result.metric(select_on, "auc") > best.metric(select_on, "auc")):
                best = result
                try:
                    with shield():
                        _save(trainer, Path(checkpoint), result.epoch, last.still_ours if last else None)
                except CheckpointError as e:
                    if not checkpoint_optional:
                        raise
                    log.warning("%s", e)
                else:
                    if on_checkpoint is not None:
                        on_checkpoint(Path(checkpoint))
            if writer is not None:
                writer.after_epoch(trainer)
    except BaseException as error:        # KeyboardInterrupt too: listeners record the end
        if isinstance(error, torch.cuda.OutOfMemoryError):
            explained = out_of_memory(config, trainer.phase if trainer else "setup", str(device), error)
            explained.__cause__ = error
            error = explained
        for listener in listeners:
            try:
                listener.failed(error)
            except Exception as e2:       # noqa: BLE001 - the original error matters more
                log.error("could not record the failure: %s", e2)
        raise error
    assert trainer.summary is not None
    for listener in listeners:
        listener.finished(trainer.summary)
    if last is not None and not config.train.keep_last:
        last.path.unlink(missing_ok=True)          # completed: nothing left to continue
        try:
            last.path.parent.rmdir()               # only when empty (no saved model beside it)
        except OSError:
            pass
    return trainer.summary


def _save(trainer: Trainer, path: Path, epoch: int, still_ours: Callable[[], None] | None = None) -> None:
    try:
        trainer.save(path, still_ours)
    except OSError as e:
        raise CheckpointError(f"checkpoint {path}: cannot save the model of epoch {epoch} "
                              f"({e.strerror or e}); the stored epochs are kept and the previous "
                              f"checkpoint, if any, is unchanged") from e
