"""Plotext drawings for the run detail (one run per epoch) and the comparison (mean curves
with a ±std band per group). They draw on a ``textual_plotext`` plot object; the widget
renders it at its own size and in the app's theme."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..store.records import Epoch

#: Readable on light and dark backgrounds (the widget supplies the background).
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (23, 190, 207), (188, 189, 34), (127, 127, 127)]

#: The per-epoch charts of the run detail: (title, [(label, epoch field)]).
RUN_CHARTS = {
    "loss": ("training loss", [("train", "train_loss")]),
    "auc": ("AUC", [("valid", "valid_auc"), ("test", "test_auc")]),
    "logloss": ("logloss", [("valid", "valid_logloss"), ("test", "test_logloss")]),
    "acc": ("accuracy", [("valid", "valid_acc"), ("test", "test_acc")]),
}


def _finite(v: float | None) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _ticks(n_max: int) -> list[int]:
    step = max(1, math.ceil(n_max / 8))
    return list(range(1, n_max + 1, step))


def draw_run_chart(plt, epochs: Sequence[Epoch], chart: str, best_epoch: int | None = None) -> None:
    """One chart of a run's epochs (``loss``, ``auc``, ``logloss`` or ``acc``)."""
    title, series = RUN_CHARTS[chart]
    plt.clear_figure()
    plt.title(title)
    if not epochs:
        plt.xlim(1, 2)
        plt.ylim(0, 1)
        plt.text("no epoch yet", 1.5, 0.5, alignment="center")
        return
    for k, (label, attr) in enumerate(series):
        pts = [(e.epoch, getattr(e, attr)) for e in epochs if _finite(getattr(e, attr))]
        if pts:
            plt.plot([p[0] for p in pts], [p[1] for p in pts], label=label, marker="braille",
                     color=PALETTE[k])
        # the best epoch as a point on each curve (a vertical line drew box characters that
        # merged with the frame: a stray ┬─┐ column when the best epoch was the last)
        best = [p for p in pts if p[0] == best_epoch] if chart != "loss" else []
        if best:
            plt.scatter([best[0][0]], [best[0][1]], marker="◆", color=PALETTE[k], label="best" if k == 0 else None)
    last = epochs[-1].epoch
    plt.xlim(0.8, max(2, last) + 0.2)
    plt.xticks(_ticks(max(2, last)))
    plt.xlabel("epoch")


@dataclass
class Curve:
    """The mean ± std of a metric per epoch over a group's runs."""

    label: str
    epochs: list[int]
    mean: list[float]
    std: list[float]
    n: list[int]


def mean_curve(label: str, runs_epochs: Sequence[Sequence[Epoch]], metric: str) -> Curve:
    """Mean and sample std per epoch over the runs that reached it (a run still training
    adds its epochs as they arrive)."""
    by_epoch: dict[int, list[float]] = {}
    for epochs in runs_epochs:
        for e in epochs:
            v = getattr(e, metric)
            if _finite(v):
                by_epoch.setdefault(e.epoch, []).append(float(v))
    xs = sorted(by_epoch)
    mean, std, n = [], [], []
    for x in xs:
        vals = by_epoch[x]
        m = sum(vals) / len(vals)
        s = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        mean.append(m)
        std.append(s)
        n.append(len(vals))
    return Curve(label, xs, mean, std, n)


def draw_curves(plt, curves: Sequence[Curve], metric: str, width: int, height: int) -> None:
    """Overlaid mean curves, each with its ±std band shaded by dots, in the group's colour."""
    plt.clear_figure()
    plt.title(f"{metric}: mean (line) ± std (dots) over seeds")
    curves = [c for c in curves if c.epochs]
    if not curves:
        plt.xlim(1, 2)
        plt.ylim(0, 1)
        plt.text("no epochs among the picked runs", 1.5, 0.5, alignment="center")
        return
    lo = min(m - s for c in curves for m, s in zip(c.mean, c.std))
    hi = max(m + s for c in curves for m, s in zip(c.mean, c.std))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.01, hi + 0.01
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    last = max(c.epochs[-1] for c in curves)
    x0, x1 = 0.8, max(2, last) + 0.2
    cols = max(10, width - 12)               # plotting area, roughly, in characters
    rows = max(4, height - 5)
    dy = (hi - lo) / rows
    for k, c in enumerate(curves):
        color = PALETTE[k % len(PALETTE)]
        if any(s > 0 for s in c.std):
            bx, by = [], []
            for j in range(cols + 1):
                x = x0 + (x1 - x0) * j / cols
                if x < c.epochs[0] or x > c.epochs[-1]:
                    continue
                m, s = _interp(c.epochs, c.mean, x), _interp(c.epochs, c.std, x)
                y = m - s
                while y <= m + s:
                    bx.append(x)
                    by.append(y)
                    y += dy
            if bx:
                plt.scatter(bx, by, marker="·", color=color)
        label = f"{c.label} (n={max(c.n)})"
        if len(c.epochs) == 1:
            plt.scatter(c.epochs, c.mean, marker="●", color=color, label=label)
        else:
            plt.plot(c.epochs, c.mean, marker="hd", color=color, label=label)
    plt.xlim(x0, x1)
    plt.ylim(lo, hi)
    plt.xticks(_ticks(max(2, last)))
    plt.xlabel("epoch")


def _interp(xs: Sequence[int], ys: Sequence[float], x: float) -> float:
    if x <= xs[0]:
        return ys[0]
    for i in range(1, len(xs)):
        if x <= xs[i]:
            t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
            return ys[i - 1] + t * (ys[i] - ys[i - 1])
    return ys[-1]
