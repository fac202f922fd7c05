"""Honest statistics over seeds: mean ± sample std, the exact sign-flip test of paired
differences and a seeded bootstrap confidence interval (docs/export.md says how they are used)."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from .metrics import CompareError

#: Up to this many shared seeds the permutation test enumerates every sign pattern.
EXACT_MAX_SEEDS = 20
MC_PATTERNS = 200_000
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
#: Significance level of the paired verdict.
ALPHA = 0.05


def _finite(values: Iterable[float | None]) -> np.ndarray:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1) of the finite values; NaN where undefined."""
    arr = _finite(values)
    if arr.size == 0:
        return math.nan, math.nan
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return mean, std


def sign_flip_pvalue(diffs: Sequence[float], *, exact_max: int = EXACT_MAX_SEEDS, n_random: int = MC_PATTERNS,
                     seed: int = 0) -> tuple[float, bool]:
    """Two-sided paired sign-flip permutation p-value of mean(diffs) = 0.

    Returns ``(p, exact)``. With ``n <= exact_max`` every one of the ``2^n`` sign patterns is
    evaluated (the identity included, so p >= 2^-n); otherwise ``n_random`` seeded random
    patterns plus the observed one (p = (hits + 1) / (n_random + 1))."""
    d = np.asarray(diffs, dtype=float)
    n = d.size
    if n == 0:
        raise CompareError("no paired differences")
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)
    if n <= exact_max:
        hits = 0
        total = 1 << n
        bits = np.arange(n)
        chunk = 1 << 16
        for start in range(0, total, chunk):
            codes = np.arange(start, min(total, start + chunk))
            signs = 1.0 - 2.0 * ((codes[:, None] >> bits) & 1)
            means = np.abs(signs @ d) / n
            hits += int(np.count_nonzero(means >= observed - tol))
        return hits / total, True
    rng = np.random.default_rng(seed)
    hits = 0
    remaining = n_random
    while remaining:
        k = min(remaining, 1 << 14)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(k, n))
        hits += int(np.count_nonzero(np.abs(signs @ d) / n >= observed - tol))
        remaining -= k
    return (hits + 1) / (n_random + 1), False


def min_pvalue(n: int, *, exact_max: int = EXACT_MAX_SEEDS, n_random: int = MC_PATTERNS) -> float:
    """The smallest p-value :func:`sign_flip_pvalue` can return for ``n`` paired differences.

    Exact test: 2 / 2^n (only the observed pattern and its mirror are as extreme, when every
    difference has the same sign). Monte Carlo: 1 / (n_random + 1)."""
    if n < 1:
        return 1.0
    return 2.0 / (1 << n) if n <= exact_max else 1.0 / (n_random + 1)


def seeds_needed(alpha: float = ALPHA) -> int:
    """The fewest paired seeds whose exact test can reach p < ``alpha``."""
    n = 1
    while min_pvalue(n) >= alpha:
        n += 1
    return n


def bootstrap_ci(diffs: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (resampling the seeds)."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        raise CompareError("no paired differences")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
