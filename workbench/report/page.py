"""``index.html``: one page with the table, the figures (the PNG files beside it), each group's
runs and provenance, and the command that made it. No script, no network: it opens from disk."""

from __future__ import annotations

import html
import math

from ..analysis import floor_value
from ..present import visible
from .data import ReportData
from .tables import number

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
thead th { border-bottom: 2px solid #444; }
.best { font-weight: bold; } .note { color: #666; font-size: 0.9em; } .flag { color: #b00; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; } figcaption { color: #555; }
code { background: #f4f4f4; padding: 0 0.25em; }
"""


def _e(text: object) -> str:
    return html.escape(visible(str(text)))


def _cell(report: ReportData, ds: str, col: str, metric: str) -> str:
    cell = report.cells.get((ds, col))
    if cell is None:
        return "<td>-</td>"
    text = number(cell.mean[metric]) + (f" ± {number(cell.std[metric])}" if math.isfinite(cell.std[metric]) else "")
    mark = "†" if cell.significant(metric) else ""
    title = ""
    t = cell.test.get(metric)
    if t is not None:                          # the test's A is the reference, B this cell
        ref = report.col_labels.get(report.reference, report.reference)
        title = (f' title="A: {_e(ref)} (the reference), B: this cell; B - A = {-t.diff:+.4f}. '
                 f'{_e(t.verdict_text(b_minus_a=True))}"')
    return f'<td class="{"best" if cell.best.get(metric) else ""}"{title}>{_e(text)}{mark} <span ' \
           f'class="note">({cell.n})</span></td>'


def table_html(report: ReportData) -> str:
    head = "".join(f"<th>{_e(report.col_labels.get(c, c))}</th>" for c in report.cols)
    floor_head = "<th>pop (floor)</th>" if any(report.floors.values()) else ""
    rows = []
    for ds in report.rows:
        # one floor per row: none where the row's cells are on different splits (split_seed...)
        keys = {_floor_key(c) for (d, _), c in report.cells.items() if d == ds}
        floor = report.floors.get(keys.pop()) if len(keys) == 1 else None
        for m in report.metrics:
            pop = ""
            if floor_head:
                value = floor_value(floor, m)         # a stratum's AUC is under the floor's strata
                pop = f"<td>{'-' if value is None else number(float(value))}</td>"
            rows.append(f"<tr><td>{_e(ds)}</td><td>{_e(m)}</td>{pop}"
                        + "".join(_cell(report, ds, c, m) for c in report.cols) + "</tr>")
    caption = report.caption()
    return (f"<table><thead><tr><th>dataset</th><th>metric</th>{floor_head}{head}</tr></thead><tbody>"
            + "".join(rows) + f"</tbody></table><p class=note>{_e(caption)} (n): seeds.</p>")


def _floor_key(cell) -> str | None:
    from ..analysis import run_floor_key
    runs = [m.run for m in cell.group.members]
    return run_floor_key(runs[0]) if runs else None


def groups_html(report: ReportData) -> str:
    out = ["<table><thead><tr><th>group</th><th>label</th><th>runs</th><th>seeds</th><th>code</th>"
           "<th>environment</th><th>data</th><th>notes</th></tr></thead><tbody>"]
    for g in report.groups:
        prov = report.provenance[g.key]

        def lines(key: str) -> str:
            return "<br>".join(_e(t) for t in prov[key])
        flags = "; ".join(prov["flags"])
        out.append(f"<tr><td><code>{_e(prov['config_hash'] or g.key)}</code></td><td>{_e(g.label)}</td>"
                   f"<td>{_e(' '.join(map(str, prov['runs'])))}</td><td>{_e(' '.join(map(str, prov['seeds'])))}</td>"
                   f"<td>{lines('code')}</td><td>{lines('environment')}</td><td>{lines('data')}</td>"
                   f"<td class=flag>{_e(flags)}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def page(report: ReportData, figures: list[dict], command: str, generated: str, where: str) -> str:
    figs = "".join(f'<figure><img src="{_e(f["name"])}.png" alt="{_e(f["title"])}"><figcaption>{_e(f["title"])} '
                   f'(<a href="{_e(f["name"])}.svg">SVG</a>)</figcaption></figure>' for f in figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>kni report</title><style>{STYLE}</style></head>
<body>
<h1>kni report</h1>
<p class=note>{report.counted} runs in {len(report.groups)} groups from <code>{_e(where)}</code>.
Made by <code>{_e(command)}</code>.</p>
<p class=note>{_e(generated)}</p>
<h2>Table</h2>
{table_html(report)}
<p class=note>Also as <a href="table.tex">LaTeX</a> (booktabs), <a href="table.md">Markdown</a> and
<a href="table.csv">CSV</a>; every number is in <a href="report.json">report.json</a>.</p>
<h2>Figures</h2>
{figs or "<p class=note>no figure</p>"}
<h2>Groups and provenance</h2>
{groups_html(report)}
</body></html>
"""
