"""How runs and numbers look, one definition for the CLI and the workbench alike: numbers,
``mean ± std``, durations, seed lists, tags, the metrics' names and the status colours.

Plain strings and Rich style names only: no Rich objects, no database, so every view can
import it without cost.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Mapping

from .store.statuses import (
    CANCELLED,
    COMPLETED,
    CRASHED,
    FAILED,
    PRUNED,
    QUEUED,
    RUNNING,
)

#: The metrics of an epoch as views name them (every view that lists metrics takes them from here).
METRIC_LABELS = {"test_auc": "test AUC", "test_logloss": "test logloss", "test_acc": "test acc",
                 "valid_auc": "valid AUC", "valid_logloss": "valid logloss", "valid_acc": "valid acc",
                 "train_loss": "train loss"}

#: Each status as (theme colour role, emphasis): the CLI and the workbench draw the same look.
STATUS_LOOK = {QUEUED: ("", "dim"), RUNNING: ("primary", "bold"), COMPLETED: ("success", ""),
               FAILED: ("error", "bold"), CANCELLED: ("warning", ""), CRASHED: ("error", "bold reverse"),
               PRUNED: ("accent", "italic")}
#: The colour of each role on a terminal without a theme (the CLI's).
TERMINAL_COLOURS = {"primary": "blue", "success": "green", "error": "red", "warning": "yellow", "accent": "cyan"}


#: Characters a terminal would act on instead of showing: C0 controls (but tab and newline), DEL,
#: C1 controls (CSI, OSC... in 8-bit form) and the bidirectional overrides that reorder a line.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text: object, one_line: bool = False) -> str:
    """``text`` as a terminal may show it: every control character written as its escape
    (``\\x1b``), so stored text (a note, a name, an error) can neither clear the screen,
    retitle the terminal nor forge a row; with ``one_line`` newlines and tabs too."""
    s = str(text)
    if one_line:
        s = s.replace("\n", "\\n").replace("\t", "\\t")
    return _CONTROLS.sub(_escape, s)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"


def status_style(status: str, colours: Mapping[str, str] = TERMINAL_COLOURS) -> str:
    """The Rich style of a status; ``colours`` maps the roles (a Textual theme's, in the workbench)."""
    role, emphasis = STATUS_LOOK.get(status, ("", ""))
    return " ".join(part for part in (emphasis, colours.get(role, "")) if part)


def fmt(x: float | None, digits: int = 4) -> str:
    """A number with ``digits`` decimals; ``-`` for a missing or non-finite one."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}"


def pm(mean: float | None, std: float | None, digits: int = 4, sep: str = " ± ") -> str:
    """``mean ± std`` (just the mean when the std is undefined, ``-`` without a mean)."""
    if mean is None or not math.isfinite(mean):
        return "-"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f}{sep}{std:.{digits}f}"


def duration(seconds: float | None) -> str:
    """``45s``, ``12.5m`` or ``3.2h``."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def ago(dt: datetime | None, now: datetime | None = None) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, or the date once older than two days."""
    if dt is None:
        return "-"
    s = ((now or datetime.now(timezone.utc)) - dt).total_seconds()
    if s < 90:
        return f"{s:.0f}s ago"
    if s < 5400:
        return f"{s / 60:.0f}m ago"
    if s < 86400 * 2:
        return f"{s / 3600:.0f}h ago"
    return dt.strftime("%Y-%m-%d")


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= width else text[:width - 1] + "…"


def seeds_text(seeds: list[int], sep: str = ",") -> str:
    """``1..5`` for a contiguous run of seeds, else the seeds joined by ``sep``."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]}"
    return sep.join(map(str, seeds))


def tags_text(run: Any) -> str:
    """The run's tags, then in parentheses its group's (``baseline (paper)``)."""
    group = " ".join(t for t in run.group_tags if t not in run.tags)
    return " ".join(run.tags) + (f" ({group})" if group else "")


def parse_tags(text: str) -> list[str]:
    """Tags typed in one line: separated by spaces or commas, each once, in order."""
    return list(dict.fromkeys(t for t in text.replace(",", " ").split() if t))
