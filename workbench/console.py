"""Terminal output of ``kni run``: JSON lines and the closing per-seed table."""

from __future__ import annotations

import json
import math
import sys
from typing import IO, TYPE_CHECKING

from rich.table import Table

from kni_core.results import EpochResult, FitSummary

from .compare import mean_std as _mean_std

if TYPE_CHECKING:
    from .execute import RunStart


def _json_number(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


class JsonLines:
    """``{"event": "epoch", "run_id", ...}`` per epoch and ``{"event": "end", "run_id", ...}`` per
    seed on stdout (``run_id`` is the stored run's id: ``kni show RUN_ID``)."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout

    def _emit(self, obj: dict) -> None:
        self.stream.write(json.dumps({k: _json_number(v) for k, v in obj.items()}) + "\n")
        self.stream.flush()

    def started(self, start: RunStart) -> None:
        pass

    def epoch(self, result: EpochResult, run_id: int | None = None) -> None:
        self._emit({"event": "epoch", "run_id": run_id, **result.to_dict()})

    def finished(self, summary: FitSummary, run_id: int | None = None) -> None:
        b = summary.best
        self._emit({"event": "end", "run_id": run_id, "seed": summary.seed, "best_epoch": summary.best_epoch,
                    "test_auc": b.test_auc, "test_logloss": b.test_logloss, "test_acc": b.test_acc})

    def failed(self, error: BaseException) -> None:
        pass


def mean_std(values: list[float]) -> str:
    """``mean ± sample std`` as text (the statistics are compare.mean_std's)."""
    if not values:
        return "-"
    mean, std = _mean_std(values)
    return f"{mean:.4f}" if len(values) == 1 else f"{mean:.4f} ± {std:.4f}"


def summary_table(title: str, summaries: list[FitSummary], select_on: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("seed", "best epoch", "epochs", f"{select_on} auc", "test auc", "test logloss", "test acc",
                "s/epoch"):
        table.add_column(col, justify="right")
    for s in summaries:
        b = s.best
        table.add_row(str(s.seed), str(s.best_epoch), str(s.epochs_run), f"{b.metric(select_on, 'auc'):.4f}",
                      f"{b.test_auc:.4f}", f"{b.test_logloss:.4f}", f"{b.test_acc:.4f}",
                      f"{b.train_seconds + b.eval_seconds:.1f}")
    if len(summaries) > 1:
        col = lambda f: [f(s.best) for s in summaries]  # noqa: E731
        table.add_section()
        table.add_row("mean ± std", "", "", mean_std(col(lambda b: b.metric(select_on, "auc"))),
                      mean_std(col(lambda b: b.test_auc)), mean_std(col(lambda b: b.test_logloss)),
                      mean_std(col(lambda b: b.test_acc)), "", style="bold")
    return table
