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
    """An invalid configuration value (a recipe or an override).

    ``errors`` lists every problem found, each a ConfigError of its own (``[self]`` for a
    single one); a ConfigError made by :meth:`many` prints them one per line.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.errors: list[ConfigError] = [self]

    @classmethod
    def many(cls, errors: "list[ConfigError]") -> "ConfigError":
        """One error for several problems (the problem itself when there is only one)."""
        if len(errors) == 1:
            return errors[0]
        combined = cls("\n".join(str(e) for e in errors))
        combined.errors = list(errors)
        return combined
