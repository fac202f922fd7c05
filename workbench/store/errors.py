"""The errors of the run database, and the retrying of writes that may succeed later."""

from __future__ import annotations

import logging
import math
import os
import time
from functools import lru_cache
from typing import Callable, TypeVar

from kni_core.errors import KniError

T = TypeVar("T")
log = logging.getLogger(__name__)

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


class Superseded(RunGone):
    """The run's row belongs to another attempt now (``kni resume`` while this process was
    stopped, or its id reused after ``kni rm``): this process must stop writing."""


def env_seconds(name: str, default: float) -> float:
    """A duration from environment variable ``name`` (seconds); ``default`` when it is unset. A
    value that is not a non-negative number is not used: a warning names the variable, its
    value and the default taken instead (once per process and value)."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    return _parse_seconds(name, text, default)


@lru_cache(maxsize=None)
def _parse_seconds(name: str, text: str, default: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        log.warning("%s=%r is not a number of seconds >= 0; %g s is used instead", name, text, default)
        return default
    return value


def write_patience() -> float:
    """Seconds a run process keeps retrying a transient write failure before giving up."""
    return env_seconds("KNI_DB_PATIENCE", WRITE_PATIENCE)


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
