"""``kni report --explain RUN``: the neighbour-pair matrix of a run's saved model for one
(user, item) pair, as the paper's case study shows it (the same pair, seed and passes as
``kni explain RUN`` gives by default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import ReportError, plot_text as text


@dataclass(frozen=True)
class Explained:
    run_id: int
    label: str                      # the run as the figure names it
    explanation: Any                # kni_core.explain.Explanation

    def to_dict(self) -> dict:
        return {"run": self.run_id, "label": self.label, **self.explanation.to_dict()}


def explain_runs(store: Any, run_ids: list[int]) -> list[Explained]:
    """Each run's explanation on CPU, seeded (the report stays byte for byte the same);
    ReportError for a run that has no saved model or is not a KNI / NI run."""
    from kni_core.errors import KniError
    from kni_core.explain import explain

    from ..services.explain import open_run
    out = []
    for run_id in dict.fromkeys(run_ids):
        try:
            opened = open_run(store, run_id, "cpu")
            if not opened.explainable:
                raise ReportError(f"--explain {run_id}: a {opened.cfg.model.name} run; the neighbour-pair attention "
                                  "is KNI's (KNI and NI runs only)")
            user, item = opened.default_pair()
            e = explain(opened.model, opened.data, user, item, n_eval=opened.cfg.eval.n_eval, seed=0,
                        namer=opened.namer)
        except ReportError:
            raise
        except KniError as err:
            raise ReportError(f"--explain {run_id}: {err}") from None
        run = opened.run
        out.append(Explained(run_id, f"run {run_id} ({run.recipe}, {run.model}, seed {run.seed})", e))
    return out


def heatmap(item: Explained, plt: Any) -> Any:
    """Two panels over one sampled neighbourhood: the attention on each neighbour pair, and
    each pair's share of the logit (attention x pair score); rows the user side, columns the
    item side, each centre first."""
    e = item.explanation
    m = e.samples[0]
    rows = [text(f"{n.name} ({n.relation})" if i else n.name) for i, n in enumerate(m.users)]
    cols = [text(n.name) for n in m.items]
    size = max(4.0, 0.32 * len(cols) + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.5, max(3.0, 0.3 * len(rows) + 1.8)), squeeze=False)
    contribution = m.attention * m.score
    limit = float(np.abs(contribution).max()) or 1.0
    # attention spans its own range (an untrained or uniform one would be one flat colour from 0)
    uniform = 1.0 / m.attention.size
    panels = ((m.attention, f"attention (uniform: {uniform:.4f})", "viridis", float(m.attention.min()),
               float(m.attention.max())),
              (contribution, "attention x pair score", "RdBu_r", -limit, limit))
    for ax, (values, title, cmap, lo, hi) in zip(axes[0], panels):
        shown = ax.imshow(values, cmap=cmap, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=6)
        ax.set_yticks(range(len(rows)), rows if ax is axes[0][0] else [""] * len(rows), fontsize=6)
        ax.set_title(title)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(text(f"{item.label}: {e.user.name} x {e.item.name}, p = {e.probability:.3f}"
                      + (f" ({e.label})" if e.label else "") + f"; sampled neighbourhood seed {m.seed}"), fontsize=9)
    fig.tight_layout()
    return fig
