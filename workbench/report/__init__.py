"""``kni report``: the paper's table and figures, regenerated from the run database.

:func:`write_report` writes into a folder: ``table.tex`` (booktabs), ``table.md``, ``table.csv``,
the figures as PNG and SVG (PDF on request), ``index.html`` and ``report.json`` (every number the
page shows). It is written into a temporary folder beside the target and renamed into place, so a
failure leaves nothing half-written; the same database gives the same files, byte for byte, but
for the one line of ``index.html`` and the field of ``report.json`` that say when.
"""

from __future__ import annotations

from .build import write_report
from .data import ReportError

__all__ = ["write_report", "ReportError"]
