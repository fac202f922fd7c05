"""One run's plots as files (the workbench's ``P`` on a run): the report's learning curves and,
where the run has them, its top-N curves, as PNG and SVG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import analysis as cmp


def save_run_plots(store: Any, run_id: int, out: Path) -> list[Path]:
    """Write run ``run_id``'s plots into folder ``out`` (made if missing); the files written.
    ReportError (nothing written) for a run without an epoch."""
    from .data import gather
    from .figures import learning_curves, pyplot, save, topk_curves
    report = gather(store, cmp.points(store, [store.get(run_id)], "best"), ["test_auc"], "best")
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, draw in (("curves", learning_curves), ("topk", topk_curves)):
        fig = draw(report, plt)
        if fig is None:
            continue
        written += [out / f for f in save(fig, out, f"run{run_id}-{name}", pdf=False)]
        plt.close(fig)
    return written
