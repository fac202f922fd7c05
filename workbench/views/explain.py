"""The Rich views of a stored run's answers: the neighbour-pair heatmap, the top pairs, their
stability over samples, a user's top-k (``kni explain`` / ``kni recommend`` and the workbench's
Explain screen draw the same renderables)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich import box
from rich.color import Color
from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from kni_core.explain import Explanation, PairMatrix
    from kni_core.recommend import Recommendation

    from ..services.explain import OpenRun


def _heat(value: float, lo: float, hi: float) -> Style:
    """White (the matrix's smallest weight) to deep red (its largest): nearly uniform attention
    still shows which cells lead."""
    x = 0.0 if hi <= lo or not math.isfinite(value) else max(0.0, min(1.0, (value - lo) / (hi - lo)))
    r, g, b = 255, int(255 - 200 * x), int(255 - 215 * x)
    return Style(bgcolor=Color.from_rgb(r, g, b), color="white" if x > 0.6 else "black")


def _side_label(n: Any) -> Text:
    text = Text(n.name, style="bold" if n.relation == "itself" else "")
    text.append(f"\n{n.relation}", style="dim")
    return text


def heatmap(m: PairMatrix, compact: bool = False) -> Table | Group:
    """Rows: the user side (the user first), columns: the item side (the item first); each cell
    the attention weight on a background from the smallest to the largest weight, and the pair
    score below it. ``compact`` (a narrow terminal): the weight only, rows and columns keyed
    ``user u1 u2 ...`` / ``item i1 i2 ...`` with their names in a legend below, so that every
    weight stays readable at 80 columns (long names squeezed the cells to ``0.…``)."""
    table = Table(box=box.SIMPLE_HEAD if not compact else box.MINIMAL, padding=(0, 1), show_edge=False,
                  title_justify="left")
    keys = {"user": _keys("user", "u", len(m.users)), "item": _keys("item", "i", len(m.items))}
    table.add_column(Text("" if compact else "user side \\ item side", style="dim"), no_wrap=True)
    for j, n in enumerate(m.items):
        table.add_column(keys["item"][j] if compact else _side_label(n), justify="center", no_wrap=True)
    lo, hi = float(m.attention.min()), float(m.attention.max())
    for i, nu in enumerate(m.users):
        cells = []
        for j in range(len(m.items)):
            a, s = float(m.attention[i, j]), float(m.score[i, j])
            shown = f"{a:.3f}".removeprefix("0") if compact else f"{a:.4f}\n{s:+.4f}"     # compact: .123
            text = Text(shown, style=_heat(a, lo, hi), justify="center")
            cells.append(text)
        table.add_row(keys["user"][i] if compact else _side_label(nu), *cells)
    if not compact:
        return table
    legend = Text(style="dim")
    for what, side, ns in (("rows", "user", m.users), ("columns", "item", m.items)):
        named = [f"{k} = {n.name}" + (f" ({n.relation})" if n.relation != "itself" else "")
                 for k, n in zip(keys[side], ns)]
        legend.append(f"{what}: " + " · ".join(named) + "\n")
    return Group(table, legend)


def _keys(first: str, prefix: str, n: int) -> list[str]:
    return [first] + [f"{prefix}{k}" for k in range(1, n)]


def top_pairs_table(m: PairMatrix, k: int = 5) -> Table:
    t = Table(title="top pairs by attention", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    for col in ("#", "user side", "item side", "cells", "attention", "score", "attention x score"):
        t.add_column(col, justify="right" if col not in ("user side", "item side") else "left")
    for rank, p in enumerate(m.top_pairs(k), start=1):      # cells: a pair drawn twice fills two, summed
        t.add_row(str(rank), p["user_side"], p["item_side"], str(p["cells"]), f"{p['attention']:.4f}",
                  f"{p['score']:+.4f}", f"{p['contribution']:+.5f}")
    return t


def stability_table(e: Explanation) -> Group:
    n = len(e.samples)
    masses = [m.centre_mass for m in e.samples]
    mean = sum(masses) / n
    head = Text(f"stability over {n} neighbourhood samples (seeds {e.seed}..{e.seed + n - 1}); centre cell "
                f"{mean:.4f} on average", style="italic")
    t = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for col in ("user side", "item side", "mean attention", "drawn", "top-1"):
        t.add_column(col, justify="left" if "side" in col else "right")
    for r in e.stability:
        t.add_row(r["user_side"], r["item_side"], f"{r['mean_attention']:.4f}", f"{r['drawn']:.0%}",
                  f"{r['top1']:.0%}")
    return Group(head, t)


def headline(opened: OpenRun, e: Explanation) -> Text:
    n = e.samples[0].attention.shape[0]
    text = Text()
    text.append(f"{opened.label}\n", style="dim")
    text.append(f"{e.user.name} x {e.item.name}", style="bold")
    text.append(f"  ({e.label or 'not in any split'})\n")
    text.append("predicted probability ")
    text.append(f"{e.probability:.4f}", style="bold")
    text.append(f" (mean of {e.n_eval} sampled passes of the pair scored alone, seed {e.seed}; not the run's "
                "stored evaluation score, whose draws came from the run's seed after the evaluation steps "
                "before the pair's: kni explain --run-score gives it)\n")
    m = e.samples[0]
    text.append(f"one sampled neighbourhood (seed {m.seed}): probability {m.probability:.4f}, logit "
                f"{m.logit:+.4f} = sum(attention x score) over {n}x{n} pairs; centre cell "
                f"{m.centre_mass:.4f} (uniform {1 / n ** 2:.4f})", style="dim")
    return text


def explanation_view(opened: OpenRun, e: Explanation, compact: bool = False, k: int = 5) -> Group:
    parts: list[Any] = [headline(opened, e), heatmap(e.samples[0], compact), top_pairs_table(e.samples[0], k)]
    if len(e.samples) > 1:
        parts.append(stability_table(e))
    return Group(*parts)


def recommendation_table(opened: OpenRun, r: Recommendation) -> Group:
    user = opened.namer.entity(r.user).name
    head = Text(f"top {len(r.items)} of {r.candidates} candidates for {user}", style="bold")
    head.append(f"\nitems not seen in training; scores: mean of {r.n_eval} pass{'es' if r.n_eval != 1 else ''}, "
                f"seed {r.seed}", style="dim")
    t = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for col in ("#", "item", "score", "in the splits"):
        t.add_column(col, justify="right" if col in ("#", "score") else "left")
    for rank, (item, score, mark) in enumerate(zip(r.items.tolist(), r.scores.tolist(), r.marks), start=1):
        style = "bold green" if mark.endswith("positive") else "yellow" if mark else ""
        t.add_row(str(rank), opened.namer.entity(int(item)).name, f"{score:.4f}", Text(mark, style=style))
    return Group(head, t)


def recommendation_dict(opened: OpenRun, r: Recommendation) -> dict:
    return {"run": opened.run.id, "user": opened.namer.entity(r.user).to_dict(), "candidates": r.candidates,
            "n_eval": r.n_eval, "seed": r.seed,
            "items": [{"rank": k, **opened.namer.entity(int(i)).to_dict(), "score": float(s), "split": m or None}
                      for k, (i, s, m) in enumerate(zip(r.items.tolist(), r.scores.tolist(), r.marks), start=1)]}
