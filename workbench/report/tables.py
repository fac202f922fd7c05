"""The report's table three ways: booktabs LaTeX (``table.tex``), Markdown (``table.md``) and
the numbers (``table.csv``). Each cell is ``mean ± std`` at four decimals, the best of its dataset
in bold, a dagger where the paired test against the reference column is significant."""

from __future__ import annotations

import math

from .data import Cell, ReportData, latex_escape

DIGITS = 4


def number(x: float) -> str:
    return f"{x:.{DIGITS}f}" if math.isfinite(x) else "-"


def _latex_cell(cell: Cell | None, metric: str) -> str:
    if cell is None:
        return "--"
    text = number(cell.mean[metric])
    if math.isfinite(cell.std[metric]):
        text += f" $\\pm$ {number(cell.std[metric])}"
    if cell.best.get(metric):
        text = f"\\textbf{{{text}}}"
    if cell.significant(metric):
        text += "$^\\dagger$"
    return text


def latex(report: ReportData) -> str:
    """A booktabs table (``\\usepackage{booktabs}``): a row per dataset and metric."""
    cols = report.cols
    lines = ["\\begin{table}[t]", "\\centering", "\\small",
             f"\\begin{{tabular}}{{ll{'c' * len(cols)}}}", "\\toprule",
             "Dataset & Metric & " + " & ".join(latex_escape(report.col_labels.get(c, c)) for c in cols) + " \\\\",
             "\\midrule"]
    for i, ds in enumerate(report.rows):
        for j, m in enumerate(report.metrics):
            first = latex_escape(ds) if j == 0 else ""
            cells = [_latex_cell(report.cells.get((ds, c)), m) for c in cols]
            lines.append(f"{first} & {latex_escape(m.replace('_', ' '))} & " + " & ".join(cells) + " \\\\")
        if i < len(report.rows) - 1:
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{report.caption(tex=True)}}}", "\\label{tab:kni-report}",
              "\\end{table}"]
    return "\n".join(lines) + "\n"


def _md_cell(cell: Cell | None, metric: str) -> str:
    if cell is None:
        return "-"
    text = number(cell.mean[metric]) + (f" ± {number(cell.std[metric])}" if math.isfinite(cell.std[metric]) else "")
    if cell.best.get(metric):
        text = f"**{text}**"
    return text + ("†" if cell.significant(metric) else "")


def markdown(report: ReportData) -> str:
    head = ["dataset", "metric"] + [report.col_labels.get(c, c).replace("|", "\\|") for c in report.cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for ds in report.rows:
        for m in report.metrics:
            lines.append("| " + " | ".join([ds, m] + [_md_cell(report.cells.get((ds, c)), m) for c in report.cols])
                         + " |")
    return "\n".join(lines) + "\n\n" + report.caption() + "\n"


CSV_COLUMNS = ("dataset", "column", "label", "metric", "n", "seeds", "mean", "std", "best", "vs_reference_diff",
               "vs_reference_ci_low", "vs_reference_ci_high", "vs_reference_p", "significant", "run_ids")


def rows(report: ReportData) -> list[dict]:
    """One row per cell and metric: the numbers the tables print, unrounded."""
    out = []
    for (ds, col), cell in report.cells.items():
        for m in report.metrics:
            t = cell.test.get(m)
            # the test's A is the reference: its diff and CI are reference - cell; the table's are cell - reference
            diff, ci = (_minus(t.diff), (_minus(t.ci[1]), _minus(t.ci[0]))) if t else (None, (None, None))
            out.append({"dataset": ds, "column": col, "label": report.col_labels.get(col, col), "metric": m,
                        "n": cell.n, "seeds": " ".join(map(str, cell.group.seeds)),
                        "mean": _finite(cell.mean[m]), "std": _finite(cell.std[m]), "best": bool(cell.best.get(m)),
                        "vs_reference_diff": _finite(diff), "vs_reference_ci_low": _finite(ci[0]),
                        "vs_reference_ci_high": _finite(ci[1]),
                        "vs_reference_p": _finite(t.p_value) if t else None, "significant": cell.significant(m),
                        "run_ids": " ".join(str(p.run.id) for p in cell.group.members)})
    return out


def _minus(x: float) -> float:
    return 0.0 - x                             # not -x: a zero difference reads 0.0, not -0.0


def _finite(x: float) -> float | None:
    return x if isinstance(x, float) and math.isfinite(x) else (None if isinstance(x, float) else x)


def csv_text(report: ReportData) -> str:
    from ..analysis import csv_text as write
    return write(rows(report), CSV_COLUMNS)

