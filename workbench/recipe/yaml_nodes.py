"""What the recipe readers need of PyYAML's nodes: lines, kinds, suggestions, error texts.

Recipes are read with the node API (``yaml.compose``) rather than ``yaml.safe_load`` so that
every value keeps its line for the error messages.
"""

from __future__ import annotations

import difflib
from typing import Iterable

import yaml

NULL_TAG = "tag:yaml.org,2002:null"


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
    return f"a single value ({node.value})"


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
