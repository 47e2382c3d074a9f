"""Statistics for conclusions: intervals, paired tests, family-wise corrections, sample sizes.

- Intervals are 95%: Wilson score intervals for 0/1 metrics, a seeded percentile bootstrap for
  graded ones. Written here (a few lines each) because scipy's bootstrap is neither paired on an
  id column nor cheap for thousands of small calls.
- Paired tests on the same questions: the exact McNemar test for 0/1 metrics (a two-sided binomial
  test of the discordant pairs against 1/2, via scipy), a paired sign-flip permutation test for
  graded ones (scipy's ``permutation_test``, exact when there are few non-zero differences).
- Family-wise corrections over a report's comparisons: Holm (default; step-down, controls the
  family-wise error rate under any dependence), Bonferroni, Benjamini-Hochberg (false discovery
  rate, via scipy). statsmodels' ``multipletests`` does the same; it is not a dependency, and
  Holm and Bonferroni are five lines.
- Sample sizes: Fleiss' formula for two independent proportions, and Connor's (1987) formula for
  the paired (McNemar) design from an expected discordance rate: comparing on the same questions
  needs far fewer of them when the configurations mostly agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

Z95 = NormalDist().inv_cdf(0.975)
CORRECTIONS = ("holm", "bonferroni", "bh", "none")


# -- intervals -------------------------------------------------------------------------------
def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (better than the normal one near 0, 1 or small n)."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes <= 0 else max(0.0, center - half)  # exact ends: no rounding residue
    high = 1.0 if successes >= n else min(1.0, center + half)
    return low, high


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded: the same data give the same interval)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


# -- paired comparisons ------------------------------------------------------------------------
def paired_values(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``metric`` of ``a`` and ``b`` on the questions both answered (joined on example_id)."""
    for name, frame in (("a", a), ("b", b)):
        if metric not in frame or "example_id" not in frame:
            raise ValueError(f"{name} needs the columns 'example_id' and {metric!r}")
    joined = a[["example_id", metric]].merge(
        b[["example_id", metric]], on="example_id", suffixes=("_a", "_b")
    )
    joined = joined.dropna()
    if joined.empty:
        raise ValueError("a and b share no example_id: compare configurations on the same questions")
    return joined[f"{metric}_a"].to_numpy(float), joined[f"{metric}_b"].to_numpy(float)


def paired_difference(
    a: pd.DataFrame, b: pd.DataFrame, metric: str = "contains_answer", n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a[metric] - b[metric]`` over the questions both answered (joined on example_id),
    with a 95% paired bootstrap interval. An interval excluding 0 supports "A differs from B"
    for this one comparison (see :func:`adjust_pvalues` for several)."""
    x, y = paired_values(a, b, metric)
    diffs = x - y
    low, high = bootstrap_interval(diffs, n_boot=n_boot, seed=seed)
    return float(diffs.mean()), low, high


def mcnemar_exact(better: Any, worse: Any) -> Any:
    """Two-sided exact McNemar p-value from the discordant counts (questions only A got right,
    questions only B got right): the binomial test of ``better`` out of ``better + worse`` against
    1/2, i.e. ``min(1, 2 * P(X <= min(b, c)))``. 4-0 gives 2 / 2**4 = 0.125. Vectorised over
    arrays of counts; 1.0 when there is no discordant pair."""
    from scipy.stats import binom

    b = np.asarray(better, dtype=float)
    c = np.asarray(worse, dtype=float)
    n = b + c
    p = np.minimum(1.0, 2.0 * binom.cdf(np.minimum(b, c), np.maximum(n, 1), 0.5))
    p = np.where(n == 0, 1.0, p)
    return float(p) if p.ndim == 0 else p


def is_binary(values: np.ndarray) -> bool:
    finite = values[~np.isnan(values)]
    return bool(finite.size) and bool(np.isin(finite, (0.0, 1.0)).all())


def permutation_pvalue(diffs: np.ndarray, seed: int = 0, n_resamples: int = 10_000) -> float:
    """Two-sided paired sign-flip permutation test of mean(diffs) = 0 (scipy; exact enumeration when
    2**(non-zero differences) <= n_resamples)."""
    from scipy.stats import permutation_test

    nonzero = diffs[diffs != 0]
    if nonzero.size == 0:
        return 1.0
    result = permutation_test(
        (nonzero,),
        np.mean,
        permutation_type="samples",
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, result.pvalue))


def paired_test(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """The test that decides a paired comparison: exact McNemar for 0/1 scores (with the
    discordant counts), else the sign-flip permutation test."""
    if is_binary(x) and is_binary(y):
        better, worse = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
        return {"test": "McNemar exact", "p": mcnemar_exact(better, worse), "discordant": (better, worse)}
    return {"test": "sign-flip permutation", "p": permutation_pvalue(x - y, seed), "discordant": None}


# -- multiple comparisons ----------------------------------------------------------------------
def adjust_pvalues(pvalues: Any, method: str = "holm") -> np.ndarray:
    """Adjusted p-values along the last axis (one family per row): ``holm`` (step-down), ``bonferroni``,
    ``bh`` (Benjamini-Hochberg) or ``none``. NaN p-values are left out of the family."""
    if method not in CORRECTIONS:
        raise ValueError(f"correction {method!r}: expected one of {', '.join(CORRECTIONS)}")
    p = np.asarray(pvalues, dtype=float)
    if method == "none" or p.size == 0:
        return p.copy()
    flat = p.reshape(-1, p.shape[-1]) if p.ndim else p.reshape(1, 1)
    out = np.full_like(flat, np.nan)
    for row, values in enumerate(flat):
        ok = ~np.isnan(values)
        m = int(ok.sum())
        if m == 0:
            continue
        v = values[ok]
        if method == "bonferroni":
            adjusted = np.minimum(1.0, v * m)
        elif method == "bh":
            from scipy.stats import false_discovery_control

            adjusted = false_discovery_control(v, method="bh")
        else:  # Holm: sorted p_(i) * (m - i + 1), made monotone, capped at 1
            order = np.argsort(v, kind="stable")
            stepped = np.maximum.accumulate(v[order] * (m - np.arange(m)))
            adjusted = np.empty(m)
            adjusted[order] = np.minimum(1.0, stepped)
        out[row, ok] = adjusted
    return out.reshape(p.shape)


# -- sample sizes ------------------------------------------------------------------------------
def _z(alpha: float, power: float) -> tuple[float, float]:
    return NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)


def required_sample_size(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Questions per configuration to tell accuracies ``p1`` and ``p2`` apart (two-sided test of
    two independent proportions, Fleiss' formula without continuity correction). Comparing on
    the same questions (paired) usually needs fewer: :func:`required_paired_sample_size`."""
    if p1 == p2:
        raise ValueError("p1 and p2 must differ")
    z_alpha, z_power = _z(alpha, power)
    mean = (p1 + p2) / 2
    numerator = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2)
    )
    return math.ceil(numerator**2 / (p1 - p2) ** 2)


def required_paired_sample_size(
    difference: float, discordance: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Questions to detect an accuracy ``difference`` between two configurations scored on the
    same questions, when a share ``discordance`` of questions is right in one and wrong in the other
    (Connor 1987, the McNemar design): n = (z_a sqrt(psi) + z_b sqrt(psi - delta^2))^2 / delta^2."""
    delta, psi = abs(difference), discordance
    if delta == 0:
        raise ValueError("the difference must not be 0")
    if not 0 < psi <= 1 or delta > psi:
        raise ValueError(f"need 0 < |difference| <= discordance <= 1, got {difference} and {discordance}")
    z_alpha, z_power = _z(alpha, power)
    return math.ceil((z_alpha * math.sqrt(psi) + z_power * math.sqrt(psi - delta**2)) ** 2 / delta**2)


def detectable_paired_difference(
    n: int, discordance: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest accuracy difference ``n`` paired questions detect (inverse of
    :func:`required_paired_sample_size`); NaN when even ``difference = discordance`` is too small."""
    from scipy.optimize import brentq

    if n <= 0 or not 0 < discordance <= 1:
        return math.nan
    z_alpha, z_power = _z(alpha, power)
    psi = discordance

    def gap(delta: float) -> float:  # n - required(delta): increasing in delta
        return n - (z_alpha * math.sqrt(psi) + z_power * math.sqrt(max(psi - delta**2, 0.0))) ** 2 / delta**2

    if gap(psi) < 0:
        return math.nan
    return float(brentq(gap, 1e-9, psi))
