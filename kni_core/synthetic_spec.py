"""The synthetic generator's parameters: presets, ranges, and their validation.

Apart from :mod:`kni_core.data.synthetic` (which generates the data with NumPy) so that
validating a config, which checks ``dataset.synthetic``, imports neither NumPy nor the data
package.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class SyntheticSpec:
    users: int = 600
    items: int = 800
    topics: int = 12
    attributes_per_topic: int = 6
    links_per_item: int = 3          # attribute links of the item's own topic
    noise_links_per_item: int = 1    # links to random attributes, on a separate relation
    signal_relations: int = 3
    positives_per_user: int = 20
    favourite_topics: int = 2
    on_topic: float = 0.85           # share of a user's positives inside favourite topics
    popularity_skew: float = 3.0     # > 1: long tail within a topic
    seed: int = 0


PRESETS: dict[str, dict] = {
    "tiny": dict(users=60, items=80, topics=4, attributes_per_topic=3, positives_per_user=8),
    "small": {},
    # Movie-20M's shape (docs/design.md): 59,296 users, 11,895 items, ~9.1M interactions,
    # ~64k entities, ~1.2M triples.
    "ml-20m": dict(users=59296, items=11895, topics=64, attributes_per_topic=815, links_per_item=80,
                   noise_links_per_item=21, signal_relations=12, positives_per_user=95, favourite_topics=3),
}


def spec_from_params(params: dict) -> SyntheticSpec:
    """``{"preset": name, **overrides}`` -> SyntheticSpec.

    Every key and value is checked (type and range) before anything is generated; the
    ConfigError lists each problem as ``dataset.synthetic.KEY: message``.
    """
    params = dict(params or {})
    preset = params.pop("preset", "small")
    problems: list[ConfigError] = []
    if not isinstance(preset, str) or preset not in PRESETS:
        problems.append(ConfigError(f"dataset.synthetic.preset: expected one of {', '.join(PRESETS)}; "
                                    f"got {preset!r}"))
        preset = "small"
    fields = SyntheticSpec.__dataclass_fields__
    for key in params:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: preset, {', '.join(fields)}"
            problems.append(ConfigError(f"dataset.synthetic.{key}: unknown key; {hint}"))
    values = {**PRESETS[preset], **{k: v for k, v in params.items() if k in fields}}
    for key, value in values.items():
        problem = _check_param(key, value, fields[key].default)
        if problem:
            problems.append(ConfigError(f"dataset.synthetic.{key}: {problem}"))
    if not problems:
        spec = SyntheticSpec(**values)
        n_attr = spec.topics * spec.attributes_per_topic
        if spec.favourite_topics > spec.topics:
            problems.append(ConfigError(f"dataset.synthetic.favourite_topics: expected at most topics "
                                        f"({spec.topics}); got {spec.favourite_topics}"))
        for what, size in (("users x positives_per_user", spec.users * spec.positives_per_user),
                           ("items x (links_per_item + noise_links_per_item)",
                            spec.items * (spec.links_per_item + spec.noise_links_per_item)),
                           ("topics x attributes_per_topic", n_attr)):
            if size > _MAX_ROWS:
                problems.append(ConfigError(f"dataset.synthetic: {what} = {size:,} is more than {_MAX_ROWS:,}"))
    if problems:
        raise ConfigError.many(problems)
    return spec


#: Ranges of the generator's parameters: (lowest, highest); counts are integers.
_RANGES: dict[str, tuple[float, float]] = {
    "users": (1, 10_000_000), "items": (1, 10_000_000), "topics": (1, 1_000_000),
    "attributes_per_topic": (1, 1_000_000), "links_per_item": (0, 10_000), "noise_links_per_item": (0, 10_000),
    "signal_relations": (1, 10_000), "positives_per_user": (1, 100_000), "favourite_topics": (1, 1_000_000),
    "on_topic": (0.0, 1.0), "popularity_skew": (0.01, 100.0), "seed": (0, 2**63 - 1),
}
#: Largest number of generated rows (interactions, triples, attributes): a 100-million-row
#: synthetic dataset already needs several GB.
_MAX_ROWS = 100_000_000


def _check_param(key: str, value: object, default: object) -> str | None:
    """What is wrong with one generator parameter (None when nothing is)."""
    lo, hi = _RANGES[key]
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {type(value).__name__} ({value!r})"
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return f"expected a number, got {type(value).__name__} ({value!r})"
    if not lo <= value <= hi:
        return f"expected a value from {_num(lo)} to {_num(hi)}; got {value!r}"
    return None


def _num(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"
