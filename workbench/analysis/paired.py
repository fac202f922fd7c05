"""The paired test of two configuration groups over the seeds they share."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .export import json_value
from .groups import Group, differing
from .metrics import CompareError, lower_is_better
from .stats import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    bootstrap_ci,
    mean_std,
    min_pvalue,
    seeds_needed,
    sign_flip_pvalue,
)


@dataclass
class PairedResult:
    a: Group
    b: Group
    metric: str
    seeds: list[int]
    a_values: list[float]
    b_values: list[float]
    mean_a: float
    mean_b: float
    diff: float                 # mean(A) - mean(B) over the shared seeds
    diff_std: float             # sample std of the per-seed differences
    p_value: float
    exact: bool
    ci: tuple[float, float]
    noise: float                # max of the two groups' seed std over the shared seeds
    within_noise: bool
    better: str | None          # "A" or "B" when the difference is significant, else None
    verdict: str = ""           # "significant", "not significant", "inconclusive" or "too few seeds"
    min_p: float = 1.0          # the smallest p-value reachable with these many seeds
    alpha: float = ALPHA
    a_differs: str = ""         # the settings in which A and B differ (each side's values)
    b_differs: str = ""

    def verdict_text(self, b_minus_a: bool = False) -> str:
        """The verdict in words, with the numbers it rests on (shared by kni compare and the
        workbench); the interval is of A - B, or with ``b_minus_a`` of B - A (the report's
        direction: a cell minus its reference)."""
        n = len(self.seeds)
        low, high = (-self.ci[1], -self.ci[0]) if b_minus_a else self.ci
        ci = f"[{low:+.4f}, {high:+.4f}]"
        if self.verdict == "too few seeds":
            return (f"no verdict possible: with {n} shared seed{'s' if n != 1 else ''} the smallest reachable "
                    f"p is 2/2^{n} = {self.min_p:.4g} >= {self.alpha:g}; {seeds_needed(self.alpha)} or more "
                    f"shared seeds can show a difference")
        if self.verdict == "significant":
            return f"{self.better} better: p = {self.p_value:.4g} < {self.alpha:g} and the 95% CI {ci} excludes 0"
        if self.verdict == "inconclusive":
            return f"inconclusive: p = {self.p_value:.4g} < {self.alpha:g} but the 95% CI {ci} includes 0"
        return f"no significant difference at {self.alpha:g} (p = {self.p_value:.4g}, 95% CI {ci})"

    def noise_text(self) -> str:
        if not math.isfinite(self.noise):
            return "one shared seed: no estimate of the seed noise"
        if self.within_noise:
            return f"|difference| {abs(self.diff):.4f} < seed std {self.noise:.4f}: within the seed noise"
        return f"|difference| {abs(self.diff):.4f} >= seed std {self.noise:.4f}"

    def to_dict(self) -> dict:
        return {"a": self.a.key, "a_id": self.a.id, "a_label": self.a.label, "b": self.b.key, "b_id": self.b.id,
                "b_label": self.b.label, "a_differs": self.a_differs, "b_differs": self.b_differs,
                "metric": self.metric, "n": len(self.seeds), "seeds": self.seeds,
                "a_values": self.a_values, "b_values": self.b_values, "mean_a": json_value(self.mean_a),
                "mean_b": json_value(self.mean_b), "diff": json_value(self.diff), "diff_std": json_value(self.diff_std),
                "p_value": json_value(self.p_value), "p_exact": self.exact, "min_p": json_value(self.min_p),
                "alpha": self.alpha,
                "ci95": [json_value(self.ci[0]), json_value(self.ci[1])], "noise": json_value(self.noise),
                "within_noise": self.within_noise, "verdict": self.verdict, "verdict_text": self.verdict_text(),
                "better": self.better}


def _same_data(a: Group, b: Group, seeds: list[int]) -> None:
    """A pair is a seed of A and of B on the same rows: refused where a group pools several
    versions of the data, or where the two runs of a seed read different source files."""
    from .provenance import read, same_files
    for g in (a, b):
        if g.data_note():
            raise CompareError(f"--paired: {g.label or g.id}: {g.data_note()}")
    files = {side: {m.run.seed: (m.run.id, read(m.run)["data_files"]) for m in g.members}
             for side, g in (("a", a), ("b", b))}
    for s in seeds:
        (ra, fa), (rb, fb) = files["a"][s], files["b"][s]
        if not same_files(fa, fb):
            changed = sorted(k for k in fa.keys() & fb.keys() if fa[k] != fb[k])
            raise CompareError(f"--paired: seed {s}: run {ra} and run {rb} read different source files "
                               f"({', '.join(changed)}): not a pair on the same data")


def paired_test(a: Group, b: Group, metric: str, *, resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = BOOTSTRAP_SEED) -> PairedResult:
    """Compare two groups over the seeds both have (see the module docstring)."""
    if a is b or (a.by == b.by and a.key == b.key):
        raise CompareError(f"--paired: A and B are the same group ({a.id}); choose two different groups")
    va, vb = a.by_seed(metric), b.by_seed(metric)
    seeds = sorted(set(va) & set(vb))
    if not seeds:
        raise CompareError(f"--paired: {a.label} (seeds {a.seeds}) and {b.label} (seeds {b.seeds}) share no seed")
    _same_data(a, b, seeds)
    xa = [va[s] for s in seeds]
    xb = [vb[s] for s in seeds]
    d = np.array(xa) - np.array(xb)
    p, exact = sign_flip_pvalue(d, seed=seed)
    ci = bootstrap_ci(d, resamples=resamples, seed=seed)
    mean_a, std_a = mean_std(xa)
    mean_b, std_b = mean_std(xb)
    noise = max(std_a, std_b) if len(seeds) > 1 else math.nan
    diff = float(d.mean())
    within = not (abs(diff) >= noise)            # also True when the noise is unknown (n = 1)
    min_p = min_pvalue(len(seeds))
    better = None
    if min_p >= ALPHA:
        verdict = "too few seeds"
    elif p >= ALPHA:
        verdict = "not significant"
    elif ci[0] <= 0.0 <= ci[1]:
        verdict = "inconclusive"
    else:
        verdict = "significant"
        a_wins = diff < 0 if lower_is_better(metric) else diff > 0
        better = "A" if a_wins else "B"
    a_differs, b_differs = differing([a, b], limit=None)
    return PairedResult(a, b, metric, seeds, xa, xb, mean_a, mean_b, diff, mean_std(d)[1], p, exact, ci,
                        noise, within, better, verdict, min_p, a_differs=a_differs, b_differs=b_differs)
