"""The errors of the run database, and the retrying of writes that may succeed later."""

from __future__ import annotations

import os
import time
from typing import Callable, TypeVar

from kni_core.errors import KniError

T = TypeVar("T")

#: Default seconds a writer keeps retrying a locked or full database (env ``KNI_DB_PATIENCE``).
WRITE_PATIENCE = 60.0


class StoreError(KniError):
    """The run database cannot be used (missing, not SQLite, newer schema, locked...).

    ``transient``: the same operation may succeed later (locked, disk full)."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class RunGone(StoreError):
    """The run's row is no longer in the database (removed while its process ran)."""


def write_patience() -> float:
    """Seconds a run process keeps retrying a transient write failure before giving up."""
    try:
        return max(0.0, float(os.environ.get("KNI_DB_PATIENCE", WRITE_PATIENCE)))
    except ValueError:
        return WRITE_PATIENCE


def retry_write(write: Callable[[], T], *, patience: float | None = None, stop: Callable[[], bool] | None = None,
                on_wait: Callable[[StoreError], None] | None = None) -> T:
    """``write()``, retried with backoff (0.25 s doubling to 8 s) while it fails with a
    transient :class:`StoreError`, for up to ``patience`` seconds (default
    :func:`write_patience`). ``stop()`` returning true ends the waiting at once (the last
    error is raised); ``on_wait(error)`` hears of every failure that will be retried."""
    patience = write_patience() if patience is None else patience
    start = time.monotonic()
    delay = 0.25
    retried = False
    while True:
        try:
            return write()
        except StoreError as e:
            waited = time.monotonic() - start
            if not e.transient or (stop is not None and stop()):
                raise
            if waited + delay > patience:
                if not retried:                   # no patience at all: the error as it is
                    raise
                raise StoreError(f"{e} (still failing after {waited:.0f} s of retries; "
                                 f"KNI_DB_PATIENCE sets how long)", transient=True) from None
            if on_wait is not None:
                on_wait(e)
            retried = True
            until = time.monotonic() + delay
            while (left := until - time.monotonic()) > 0:
                if stop is not None and stop():
                    raise
                time.sleep(min(0.1, left))
            delay = min(2 * delay, 8.0)
