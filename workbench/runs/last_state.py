"""Writes a run's last-epoch state (:mod:`kni_core.resume`) without slowing the run by more than
a few percent.

A bc state is 126 MB (the weights and Adam's two moments): saving and syncing it took 0.22-0.25
s on this machine one day and 0.9-1.1 s another (the disk's sync), against a 2.6-2.9 s epoch.
Written after every epoch it costs 8-60%; written by a background thread it costs as much, the
thread competing with training for the cores and the memory bus (measured; docs/results.md).
So the state is written after an epoch only once the training since the previous write has
taken at least 1/BUDGET times that write: after every epoch when epochs are long (a GPU run on
a large dataset), every 3rd to 12th one on bc here. A resumed run trains again the epochs after
its state, to the same numbers, so the policy costs some recomputation after a crash, never a
difference in the results.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable

from kni_core import resume

log = logging.getLogger(__name__)

#: The share of the training time the writes may take (the first write, whose cost is not
#: known yet, comes on top: 3% leaves a 30-epoch bc run under the issue's 5%).
BUDGET = 0.03


class LastStateWriter:
    def __init__(self, last: Any, budget: float = BUDGET,       # last: workbench.runs.execute.LastEpoch
                 shield: Callable[[], AbstractContextManager] = nullcontext):
        self.last, self.budget, self.shield = last, budget, shield
        self.cost = 0.0                          # seconds the latest write took
        self.since = time.perf_counter()         # the end of the latest write

    def after_epoch(self, trainer: Any) -> bool:
        """Write the state if the training since the last write pays for it; whether it wrote."""
        if self.cost and (time.perf_counter() - self.since) * self.budget < self.cost:
            return False
        t0 = time.perf_counter()
        try:
            state = resume.capture(trainer, self.last.identity)
            with self.shield():                  # a signal waits for the file to be whole
                resume.save(self.last.path, state, getattr(self.last, "still_ours", None))
        except OSError as e:
            log.warning("last-epoch state %s: cannot be written (%s); an interruption would resume from the "
                        "previous one", self.last.path, e.strerror or e)
            return False
        self.since = time.perf_counter()
        self.cost = self.since - t0
        if self.last.on_saved is not None:
            self.last.on_saved(self.last.path, self.last.path.stat().st_size, self.cost)
        return True
