"""The exceptions that end a run process other than by failing."""

from __future__ import annotations

from kni_core.errors import KniError


class Cancelled(BaseException):
    """Raised in a run process by SIGTERM / SIGINT (a BaseException, like KeyboardInterrupt)."""


class Pruned(KniError):
    """Raised in a run process when the sweep's pruner stops the run after an epoch."""
