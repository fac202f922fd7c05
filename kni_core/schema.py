"""The field schema of the config dataclasses, shared by :mod:`kni_core.config` and the
models' own settings (``kni_core.models``): a field's constraint lives in its ``metadata``
(help, bounds, choices) and :func:`check_value` enforces it. Torch-free and free of
``kni_core.config`` so that model files can declare their settings without import cycles."""

from __future__ import annotations

import dataclasses
import reprlib
from dataclasses import field
from typing import Any

from .errors import ConfigError

#: How long a value may be quoted in an error message: a message names the value, it does not
#: reprint a list of 100,000 items.
_QUOTED = reprlib.Repr()
_QUOTED.maxlevel, _QUOTED.maxlist, _QUOTED.maxdict, _QUOTED.maxstring, _QUOTED.maxother = 3, 8, 8, 60, 60


def short_repr(value: object) -> str:
    """``repr(value)``, cut to a few items and characters for an error message."""
    return _QUOTED.repr(value)

MAX_N_EVAL = 1_000
MAX_SEED = 2**63 - 1         # stored in a 64-bit column; torch and numpy take it
#: The bound of an integer setting that names none: what a database's INTEGER column holds
#: (PostgreSQL's is 32-bit), so that ``train.epochs=1e23`` is a clear error, not a traceback.
MAX_INT = 2**31 - 1


def setting(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
            choices: tuple | None = None, lo_open: bool = False) -> Any:
    """A dataclass field with its help text and constraint."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "lo_open": lo_open}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def field_named(klass: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(klass) if f.name == name)


def expected_type(f: dataclasses.Field) -> tuple[type, ...]:
    """Python types accepted for a field (ints are accepted where floats are)."""
    t = f.type if isinstance(f.type, str) else f.type.__name__
    if t.startswith("str"):
        return (str, type(None)) if "None" in t else (str,)
    if t == "bool":
        return (bool,)
    if t == "int":
        return (int,)
    if t == "float":
        return (int, float)
    if t == "list":
        return (list,)
    if t == "dict":
        return (dict,)
    raise TypeError(f"unsupported field type {t}")


def check_value(key: str, f: dataclasses.Field, value: Any) -> None:
    """Raise ConfigError if ``value`` does not fit field ``f`` (type, range or choices)."""
    types = expected_type(f)
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"{key}: expected {_type_name(types)}, got a boolean ({value})")
    if not isinstance(value, types):
        raise ConfigError(f"{key}: expected {_type_name(types)}, got {type(value).__name__} ({short_repr(value)})")
    m = f.metadata
    if m.get("choices") and value not in m["choices"]:
        raise ConfigError(f"{key}: expected one of {', '.join(map(str, m['choices']))}; got {short_repr(value)}")
    lo, hi = m.get("lo"), m.get("hi")
    if hi is None and int in types and float not in types:
        hi = MAX_INT
    if lo is not None and isinstance(value, (int, float)):
        if value < lo or (m.get("lo_open") and value == lo):
            raise ConfigError(f"{key}: expected a value {'>' if m.get('lo_open') else '>='} {lo}; got {value}")
    if hi is not None and isinstance(value, (int, float)) and value > hi:
        raise ConfigError(f"{key}: expected a value <= {hi}; got {short_repr(value)}")


def _type_name(types: tuple[type, ...]) -> str:
    names = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
             list: "a list", dict: "a mapping", type(None): "null"}
    if types == (int, float):
        return "a number"
    return " or ".join(names[t] for t in types)
