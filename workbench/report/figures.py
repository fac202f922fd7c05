"""The report's figures, drawn with matplotlib (imported here only: ``kni report`` is the one
command that needs it). Each figure is written as PNG and SVG (and PDF on request), with the
metadata that would change between two identical reports (dates, random ids) left out, so the
same database gives the same files byte for byte.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import analysis as cmp
from .data import ReportData, plot_text as text

#: Tableau's ten colours, in order: one per group, the same in every figure.
COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
CURVES = (("valid_auc", "valid AUC"), ("test_auc", "test AUC"), ("valid_logloss", "valid logloss"),
          ("train_loss", "training loss"))


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, set up for reproducible files; ReportError naming
    the extra when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        from .data import ReportError
        raise ReportError('kni report draws its figures with matplotlib: pip install "kni-workbench[report]"') \
            from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.hashsalt": "kni-report", "figure.dpi": 100, "savefig.dpi": 120,
                         "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def save(fig: Any, out: Path, name: str, pdf: bool) -> list[str]:
    """``name``.png / .svg (/ .pdf) in ``out``; the file names written."""
    files = []
    for ext, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None}),
                          ("pdf", {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None})):
        if ext == "pdf" and not pdf:
            continue
        fig.savefig(out / f"{name}.{ext}", metadata=metadata, bbox_inches="tight")
        files.append(f"{name}.{ext}")
    return files


def _label(g: cmp.Group, groups: list[cmp.Group] | None = None) -> str:
    """The group's label; with the settings that differ only when another group shares it."""
    shared = groups is not None and sum(x.label == g.label for x in groups) > 1
    return g.label + (f" [{g.differs}]" if shared and g.differs else "")


def _names(report: ReportData) -> dict[str, str]:
    """Each configuration group's name in the figures: the table's column label of its cell (the
    names the paper's table uses), where no other group of its dataset has the same; else its
    group label with what differs."""
    column = {}
    for (ds, col), cell in report.cells.items():
        for key in {m.run.config_hash for m in cell.group.members}:
            column[key] = (ds, report.col_labels.get(col, col))
    taken = Counter(column.values())
    return {g.key: column[g.key][1] if g.key in column and taken[column[g.key]] == 1 else _label(g, report.groups)
            for g in report.groups}


def _datasets(report: ReportData) -> list[tuple[str, list[tuple[str, cmp.Group]]]]:
    """The groups by dataset, in order, each with its colour: a model's colour is the same on
    every dataset when each dataset has one group per model, else each group has its own."""
    per_model = len({(g.distinct("dataset"), g.distinct("model")) for g in report.groups}) == len(report.groups)
    keys = list(dict.fromkeys(g.distinct("model") if per_model else g.key for g in report.groups))
    rows: dict[str, list[tuple[str, cmp.Group]]] = {}
    for g in report.groups:
        key = g.distinct("model") if per_model else g.key
        rows.setdefault(g.distinct("dataset"), []).append((COLOURS[keys.index(key) % len(COLOURS)], g))
    return list(rows.items())


def _legend(fig: Any, axes: Any, bottom: float) -> None:
    """One legend under the figure for every line of every panel (each label once)."""
    seen: dict[str, Any] = {}
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    rows = (len(seen) - 1) // 3 + 1
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=min(3, max(1, len(seen))), fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, (bottom + 0.05 * (rows - 1)) / max(1, len(axes)), 1, 1))


def ragged(report: ReportData) -> bool:
    """Whether some group's seeds stopped at different epochs (early stopping)."""
    return any(len({len(p.epochs) for p in g.members}) > 1 for g in report.groups)


def learning_curves(report: ReportData, plt: Any) -> Any:
    """Per group, each metric's mean over its seeds per epoch, with a band of ± one std; a row
    per dataset. Past the epoch its first seed stopped at, a group's line is dotted, the mean of
    the seeds still training (no band: the legend's n no longer holds). A group of one epoch (the
    floors: popularity, ItemKNN) is a dashed level."""
    datasets = _datasets(report)
    names = _names(report)
    fig, axes = plt.subplots(len(datasets), len(CURVES), figsize=(3.2 * len(CURVES), 2.5 * len(datasets) + 0.6),
                             squeeze=False)
    for row, (dataset, groups) in zip(axes, datasets):
        for ax, (metric, title) in zip(row, CURVES):
            for colour, g in groups:
                by_epoch: dict[int, list[float]] = {}
                for p in g.members:
                    for e in p.epochs:
                        v = getattr(e, metric)
                        if v is not None and math.isfinite(v):
                            by_epoch.setdefault(e.epoch, []).append(v)
                if not by_epoch:
                    continue
                xs = sorted(by_epoch)
                mean = np.array([np.mean(by_epoch[x]) for x in xs])
                label = text(f"{names[g.key]} (n={g.n})")
                if len(xs) == 1:
                    if metric != "train_loss":      # a floor's fit is no training curve
                        ax.axhline(mean[0], color=colour, lw=1.1, ls="--", label=label)
                    continue
                most = max(len(v) for v in by_epoch.values())
                end = max(0, next((i - 1 for i, x in enumerate(xs) if len(by_epoch[x]) < most), len(xs) - 1))
                ax.plot(xs[:end + 1], mean[:end + 1], color=colour, lw=1.4, label=label)
                if end < len(xs) - 1:           # from the last epoch every seed reached, joined to it
                    ax.plot(xs[end:], mean[end:], color=colour, lw=1.1, ls=":")
                if most > 1:
                    std = np.array([np.std(by_epoch[x], ddof=1) for x in xs[:end + 1]])
                    ax.fill_between(xs[:end + 1], mean[:end + 1] - std, mean[:end + 1] + std, color=colour,
                                    alpha=0.2, lw=0)
            ax.set_title(text(f"{dataset}: {title}" if len(datasets) > 1 else title))
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    _legend(fig, axes, 0.12)
    return fig


def seeds_strip(report: ReportData, plt: Any, metric: str) -> Any:
    """Each group's seeds at the chosen epoch: a box and every seed as a point; a panel per dataset."""
    datasets = _datasets(report)
    names = _names(report)
    widths = [max(2.5, 1.1 * len(groups) + 1.0) for _, groups in datasets]
    fig, axes = plt.subplots(1, len(datasets), figsize=(sum(widths), 3.0), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, (dataset, groups) in zip(axes[0], datasets):
        for x, (colour, g) in enumerate(groups):
            values = [v for p in g.members if (v := p.value(metric)) is not None and math.isfinite(v)]
            if not values:
                continue
            ax.boxplot([values], positions=[x], widths=0.5, showfliers=False,
                       medianprops={"color": colour}, boxprops={"color": colour}, whiskerprops={"color": colour},
                       capprops={"color": colour})
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(np.full(len(values), x) + jitter, values, s=14, color=colour, zorder=3)
        ax.set_xticks(range(len(groups)), [text(names[g.key]) for _, g in groups], rotation=20,
                      ha="right", fontsize=7)
        ax.set_ylabel(text(metric.replace("_", " ")))
        ax.set_title(text(f"{dataset}: {metric.replace('_', ' ')} of each seed" if len(datasets) > 1
                          else f"{metric.replace('_', ' ')} of each seed"))
    fig.tight_layout()
    return fig


def topk_curves(report: ReportData, plt: Any) -> Any | None:
    """Recall@K and NDCG@K over K, each group's mean over seeds (groups with top-N results); a
    row per dataset."""
    families = (("recall", "Recall@K (sampled users)"), ("full_ndcg", "NDCG@K (full ranking)"))
    found = [f for f, _ in families if any(k.startswith(f + "@") for p in report.pts for k in p.topk)]
    datasets = [(d, groups) for d, groups in _datasets(report) if any(p.topk for _, g in groups for p in g.members)]
    if not found or not datasets:
        return None
    names = _names(report)
    fig, axes = plt.subplots(len(datasets), len(found), figsize=(3.6 * len(found), 2.5 * len(datasets) + 0.6),
                             squeeze=False)
    for row, (dataset, groups) in zip(axes, datasets):
        for ax, family in zip(row, found):
            for colour, g in groups:
                ks = sorted({int(k.split("@")[1]) for p in g.members for k in p.topk if k.split("@")[0] == family})
                if not ks:
                    continue
                means = [g.stat(f"{family}@{k}")[0] for k in ks]
                ax.plot(ks, means, marker="o", ms=3, color=colour, label=text(names[g.key]))
                ax.set_xscale("log")
                ax.set_xticks(ks, [str(k) for k in ks])
                ax.minorticks_off()
            ax.set_xlabel("K")
            title = dict(families)[family]
            ax.set_title(text(f"{dataset}: {title}" if len(datasets) > 1 else title))
    _legend(fig, axes, 0.16)
    return fig


def sweep_effects(ranking: Any, plt: Any) -> Any | None:
    """A sweep's points: validation AUC against each swept key."""
    keys = ranking.keys
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.0 * len(keys), 2.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        xs, ys = [], []
        for p in ranking.points:
            mean = p.stat(ranking.metric)[0]
            if math.isfinite(mean) and key in p.params:
                xs.append(p.params[key])
                ys.append(mean)
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        if numeric:
            ax.scatter(xs, ys, s=16, color=COLOURS[0])
            if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
                # a log axis spanning a decade or two labels its minor ticks too: they overlap
                ax.xaxis.set_minor_formatter(plt.NullFormatter())
                levels = sorted(set(xs))
                if len(levels) <= 6:            # a grid's few values: label those, not powers of ten
                    ax.set_xticks(levels, [f"{v:g}" for v in levels], fontsize=7)
        else:
            labels = sorted({str(x) for x in xs})
            ax.scatter([labels.index(str(x)) for x in xs], ys, s=16, color=COLOURS[0])
            ax.set_xticks(range(len(labels)), [text(b) for b in labels], fontsize=7)
        ax.set_xlabel(text(key))
        ax.set_ylabel(text(ranking.metric.replace("_", " ")))
    fig.suptitle(text(f"sweep {ranking.sweep.id} ({ranking.sweep.name}): each point's mean over its seeds"))
    fig.tight_layout()
    return fig


def parallel_coordinates(ranking: Any, plt: Any) -> Any | None:
    """A sweep's points across its keys (each axis scaled to its range), coloured by the metric."""
    keys = ranking.keys
    points = [p for p in ranking.points if math.isfinite(p.stat(ranking.metric)[0])]
    if len(keys) < 2 or not points:
        return None
    axes_values, ends = [], []
    for key in keys:
        values = [p.params.get(key) for p in points]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            logs = min(values) > 0 and max(values) / min(values) > 20
            xs = np.log10(values) if logs else np.array(values, dtype=float)
            ends.append((f"{min(values):g}", f"{max(values):g}"))
        else:
            labels = sorted({str(v) for v in values})
            xs = np.array([labels.index(str(v)) for v in values], dtype=float)
            ends.append((labels[0], labels[-1]))
        span = xs.max() - xs.min()
        axes_values.append((xs - xs.min()) / span if span else np.full(len(xs), 0.5))
    metric = np.array([p.stat(ranking.metric)[0] for p in points])
    fig, ax = plt.subplots(figsize=(1.6 * len(keys) + 2, 3.2))
    cmap = plt.get_cmap("viridis")
    lo, hi = metric.min(), metric.max()
    for j in np.argsort(metric):
        shade = (metric[j] - lo) / (hi - lo) if hi > lo else 1.0
        ax.plot(range(len(keys)), [a[j] for a in axes_values], color=cmap(shade), lw=1.2, alpha=0.8)
    for i, ((low, high), a) in enumerate(zip(ends, axes_values)):     # each axis's range at its ends
        ax.axvline(i, color="#bbb", lw=0.8, zorder=0)
        if a.min() == a.max():               # one value: drawn mid-axis
            ax.text(i, 0.5, text(f" {low}"), fontsize=7, va="center", ha="left")
            continue
        ax.text(i, -0.04, text(low), fontsize=7, va="top", ha="center")
        ax.text(i, 1.04, text(high), fontsize=7, va="bottom", ha="center")
    ax.set_ylim(-0.15, 1.15)
    ax.set_xticks(range(len(keys)), [text(k) for k in keys], fontsize=7)
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(text(f"sweep {ranking.sweep.id}: points by {ranking.metric.replace('_', ' ')} (yellow best)"))
    fig.tight_layout()
    return fig


def draw_all(report: ReportData, out: Path, pdf: bool, sweeps: list[Any], explained: list[Any] = ()) -> list[dict]:
    """Every figure the report has data for; ``[{"name", "title", "files"}]``."""
    plt = pyplot()
    made: list[dict] = []

    def add(name: str, title: str, draw: Callable[[], Any]) -> None:
        fig = draw()
        if fig is None:
            return
        made.append({"name": name, "title": title, "files": save(fig, out, name, pdf)})
        plt.close(fig)

    add("curves", "Learning curves: mean over seeds, band ± one std"
        + ("; dotted past the epoch a group's first seed stopped at: the mean of its seeds still training"
           if ragged(report) else ""), lambda: learning_curves(report, plt))
    add("seeds", f"{report.metrics[0].replace('_', ' ')} of every seed", lambda: seeds_strip(report, plt,
                                                                                               report.metrics[0]))
    add("topk", "Top-N: recall and NDCG over K", lambda: topk_curves(report, plt))
    for ranking in sweeps:
        add(f"sweep{ranking.sweep.id}-keys", f"sweep {ranking.sweep.id}: validation AUC by key",
            lambda r=ranking: sweep_effects(r, plt))
        add(f"sweep{ranking.sweep.id}-parallel", f"sweep {ranking.sweep.id}: parallel coordinates",
            lambda r=ranking: parallel_coordinates(r, plt))
    if explained:
        from .explained import heatmap
        for x in explained:
            add(f"explain-run{x.run_id}", f"{x.label}: the neighbour-pair matrix of kni explain {x.run_id}",
                lambda x=x: heatmap(x, plt))
    return made
