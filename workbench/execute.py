"""Run one seed of a recipe and tell listeners what happens.

Listeners receive the same typed records the store, the console and ``--json`` consume:
``started`` once, ``epoch`` per :class:`~kni_core.train.EpochResult`, then ``finished``
with the :class:`~kni_core.train.FitSummary` or ``failed`` with the exception.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from kni_core.config import RunConfig
from kni_core.data import PreparedData, prepare
from kni_core.train import EpochResult, FitSummary, ProgressHook, Trainer, resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStart:
    config: RunConfig
    device: str
    data_stats: dict
    from_cache: bool


class RunListener(Protocol):
    def started(self, start: RunStart) -> None: ...
    def epoch(self, result: EpochResult) -> None: ...
    def finished(self, summary: FitSummary) -> None: ...
    def failed(self, error: BaseException) -> None: ...


def execute(config: RunConfig, listeners: list[RunListener], data: PreparedData | None = None,
            checkpoint: str | None = None, progress: ProgressHook | None = None) -> FitSummary:
    """Prepare (or reuse) the data, train, and report every step to ``listeners``
    (``progress`` is the Trainer's hook for positions inside an epoch)."""
    try:
        data = data or prepare(config)
        device = resolve_device(config.device)
        trainer = Trainer(config, data, device=device, checkpoint=checkpoint, progress=progress)
        start = RunStart(config, str(device), data.stats, data.from_cache)
        for listener in listeners:
            listener.started(start)
        for result in trainer.fit():
            for listener in listeners:
                listener.epoch(result)
    except BaseException as error:        # KeyboardInterrupt too: listeners record the end
        for listener in listeners:
            listener.failed(error)
        raise
    assert trainer.summary is not None
    for listener in listeners:
        listener.finished(trainer.summary)
    return trainer.summary
