"""Errors a user can act on. Each names the file, line or key at fault and what was expected."""

from __future__ import annotations

from pathlib import Path


class KniError(Exception):
    """Base class: the message is complete and meant for the user, no traceback needed."""


class DataError(KniError):
    """Malformed or missing input data."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        super().__init__(where + message)


class ConfigError(KniError):
    """An invalid configuration value (a recipe or an override)."""
