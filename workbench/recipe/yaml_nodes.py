"""What the recipe readers need of PyYAML's nodes: lines, kinds, suggestions, error texts.

Recipes are read with the node API (``yaml.compose``) rather than ``yaml.safe_load`` so that
every value keeps its line for the error messages.
"""

from __future__ import annotations

import difflib
from typing import Iterable

import yaml

NULL_TAG = "tag:yaml.org,2002:null"
#: The most values a recipe (or one --set value) may hold once its aliases are expanded. A real
#: recipe holds a few hundred; anchors nested in each other ("billion laughs") reach billions
#: from a few lines, and building, hashing or printing them would take minutes and gigabytes.
MAX_VALUES = 100_000


def line_of(node: yaml.Node | None) -> int | None:
    """The 1-based line a node starts on (None without one)."""
    return node.start_mark.line + 1 if node is not None and getattr(node, "start_mark", None) is not None else None


def node_kind(node: yaml.Node, empty: bool = False) -> str:
    """``a mapping``, ``a list`` or ``a single value (x)``; with ``empty``, empty ones and nothing
    are told apart (``an empty list``, ``nothing``)."""
    if isinstance(node, yaml.MappingNode):
        return "an empty mapping" if empty and not node.value else "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "an empty list" if empty and not node.value else "a list"
    if empty and node.value in ("", "~", "null"):
        return "nothing"
    return f"a single value ({cut(node.value)})"


def cut(text: str, limit: int = 80) -> str:
    """``text`` as an error quotes it: at most ``limit`` characters, the rest counted (a 900 KB
    scalar, or /etc/passwd listed in a suite, was printed whole)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text):,} characters)"


def expanded_size(node: yaml.Node, limit: int = MAX_VALUES) -> int:
    """How many values ``node`` holds with every alias expanded, counted up to just past
    ``limit``. Each distinct node is sized once (aliases share their node), so a bomb is
    measured in the time of its text, never expanded."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node, depth: int) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        if depth > 100:                          # deeper than any recipe: as good as too big
            return limit + 1
        total = 1
        children = (n.value if isinstance(n, yaml.SequenceNode) else
                    [part for pair in n.value for part in pair] if isinstance(n, yaml.MappingNode) else [])
        for child in children:
            total += size(child, depth + 1)
            if total > limit:
                break
        sizes[id(n)] = total
        return total

    return size(node, 0)


def too_big(node: yaml.Node) -> str | None:
    """Why ``node`` is refused (it expands past :data:`MAX_VALUES` values), or None."""
    if expanded_size(node) > MAX_VALUES:
        return (f"holds more than {MAX_VALUES:,} values once its YAML aliases are expanded (anchors repeated "
                "inside each other); refused without reading it further")
    return None


def strip_key(message: str, key: str) -> str:
    """``message`` without a leading ``KEY: `` (the error will name the key itself)."""
    prefix = key + ": "
    return message[len(prefix):] if message.startswith(prefix) else message


def suggest(key: str, allowed: Iterable[str]) -> str:
    """``did you mean 'x'?`` for a near miss, else the allowed names."""
    allowed = list(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return "expected one of: " + ", ".join(allowed)


def covers(outer: str, inner: str | None) -> bool:
    """Whether dotted key ``inner`` is ``outer`` or lies inside it (``model`` covers ``model.kg``)."""
    return inner is not None and (inner == outer or inner.startswith(outer + "."))


def yaml_error_text(e: yaml.YAMLError) -> tuple[int | None, str]:
    """(1-based line, explanation) of a PyYAML exception."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        if e.context and e.problem:
            if e.context.startswith("while"):
                problem = f"{problem} ({e.context}"
                if e.context_mark is not None and e.context_mark is not e.problem_mark:
                    problem += f" on line {e.context_mark.line + 1}"
                problem += ")"
            else:
                problem = f"{e.context}, {problem}"
        return (mark.line + 1 if mark is not None else None), problem
    if isinstance(e, yaml.reader.ReaderError):
        return None, f"{e.reason} (character {e.character!r} at position {e.position})"
    return None, str(e)
