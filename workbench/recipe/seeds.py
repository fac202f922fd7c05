"""Seed lists: ``1,2,3``, ``1..5`` (inclusive) or ``1..3, 7``."""

from __future__ import annotations

import re
from typing import Iterable

from kni_core.config import MAX_SEED
from kni_core.errors import ConfigError

#: Upper bound on the number of seeds of one recipe (guards against ``1..100000000``).
MAX_SEEDS = 10_000
SEEDS_EXPECTED = "expected a list of non-negative integers or a range such as '1..5'"
_SEED_INT = re.compile(r"^-?[0-9]+$")
_SEED_RANGE = re.compile(r"^(-?[0-9]+)\s*\.\.\s*(-?[0-9]+)$")


def parse_seeds(spec: str, repeated: list[int] | None = None) -> list[int]:
    """Read a seed list such as ``1,2,3``, ``1..5`` (inclusive) or ``1..3, 7``.

    Whitespace is ignored and duplicates are dropped, keeping the first occurrence (appended
    to ``repeated`` when given, so the caller can say so).
    """
    if not isinstance(spec, str):
        raise ConfigError(f"seeds: {SEEDS_EXPECTED}, got {type(spec).__name__} ({spec!r})")
    example = "e.g. '1,2,3', '1..5' or '1..3,7'"
    if not spec.strip():
        raise ConfigError(f"seeds: no seeds given; expected {example}")
    out: list[int] = []
    seen: set[int] = set()
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            raise ConfigError(f"seeds: empty item in {spec!r}; expected {example}")
        m = _SEED_RANGE.match(part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo < 0 or hi < 0:
                raise ConfigError(f"seeds: negative seed in {part!r}; seeds are non-negative integers")
            if hi < lo:
                raise ConfigError(f"seeds: reversed range {part!r}; write it as '{hi}..{lo}'")
            if hi > MAX_SEED:
                raise ConfigError(f"seeds: seed {hi} is above the largest seed {MAX_SEED}")
            if hi - lo + 1 > MAX_SEEDS:
                raise ConfigError(f"seeds: range {part!r} has {hi - lo + 1} seeds, more than {MAX_SEEDS}")
            values: Iterable[int] = range(lo, hi + 1)
        elif _SEED_INT.match(part):
            value = int(part)
            if value < 0:
                raise ConfigError(f"seeds: negative seed {value}; seeds are non-negative integers")
            if value > MAX_SEED:
                raise ConfigError(f"seeds: seed {value} is above the largest seed {MAX_SEED}")
            values = (value,)
        else:
            raise ConfigError(f"seeds: cannot read {part!r}; expected integers and inclusive ranges, "
                              f"{example}")
        for v in values:
            if v not in seen:
                seen.add(v)
                out.append(v)
            elif repeated is not None:
                repeated.append(v)
        if len(out) > MAX_SEEDS:
            raise ConfigError(f"seeds: more than {MAX_SEEDS} seeds")
    return out
