"""The error of an invalid recipe or override: it names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

from kni_core.errors import ConfigError


class RecipeError(ConfigError):
    """An invalid recipe or override.

    ``path`` is the recipe file (or ``None``), ``line`` the 1-based line (or ``None``), ``key`` the
    dotted key at fault (or ``None``), ``origin`` the command-line override that caused the error
    (or ``None``) and ``message`` the bare explanation. ``str(e)`` is ``PATH:LINE: KEY: message``,
    or ``ORIGIN: message`` for an override. A recipe with several mistakes raises one
    RecipeError whose ``errors`` holds one RecipeError per mistake (in file order) and whose
    other attributes are those of the first; ``str(e)`` then has one line per mistake.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 key: str | None = None, origin: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.key = key
        self.origin = origin
        parts: list[str] = []
        if origin is not None:
            parts.append(origin)
        else:
            if self.path is not None:
                parts.append(self.path + (f":{line}" if line is not None else ""))
            elif line is not None:
                parts.append(f"line {line}")
            if key:
                parts.append(key)
        parts.append(message)
        super().__init__(": ".join(parts))

    @classmethod
    def many(cls, errors: list["RecipeError"]) -> "RecipeError":  # type: ignore[override]
        """One error for several mistakes: the first's attributes, every mistake in ``errors``."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        combined = cls(first.message, path=first.path, line=first.line, key=first.key, origin=first.origin)
        combined.args = ("\n".join(str(e) for e in errors),)
        combined.errors = list(errors)
        return combined

