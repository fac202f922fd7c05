"""Display helpers for the user's annotations (tags and notes: see :mod:`workbench.store`)."""

from __future__ import annotations

from typing import Any


def tags_text(run: Any) -> str:
    """The run's tags, then in parentheses its group's (``baseline (paper)``)."""
    group = " ".join(t for t in run.group_tags if t not in run.tags)
    return " ".join(run.tags) + (f" ({group})" if group else "")


def parse_tags(text: str) -> list[str]:
    """Tags typed in one line: separated by spaces or commas, each once, in order."""
    return list(dict.fromkeys(t for t in text.replace(",", " ").split() if t))
