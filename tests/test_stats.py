"""Paired tests, family-wise corrections and sample sizes against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragkit.stats import (
    adjust_pvalues,
    detectable_paired_difference,
    mcnemar_exact,
    paired_test,
    permutation_pvalue,
    required_paired_sample_size,
)


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(4, 0) == pytest.approx(0.125)  # 2 * (1/2)^4
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)  # 2 P(X <= 2), X ~ B(12, 1/2)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(np.array([4, 0]), np.array([0, 4])).tolist() == [0.125, 0.125]


def test_adjusted_pvalues_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust_pvalues(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    # BH: p_(i) m / i = 0.02, 0.02, 0.04, 0.04, then the running minimum from the largest
    assert adjust_pvalues(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_pvalues(p, "none") == pytest.approx(p)
    assert adjust_pvalues([0.3, 0.6], "holm") == pytest.approx([0.6, 0.6])  # capped, monotone
    with pytest.raises(ValueError, match="expected one of"):
        adjust_pvalues(p, "sidak")


def test_paired_test_picks_mcnemar_for_binary_and_permutation_for_graded():
    x, y = np.array([1, 1, 1, 1, 0, 1.0]), np.array([0, 0, 0, 0, 0, 1.0])
    binary = paired_test(x, y)
    assert binary["test"] == "McNemar exact" and binary["discordant"] == (4, 0) and binary["p"] == 0.125
    graded = paired_test(np.array([0.5, 1.0, 0.25, 1.0]), np.array([0.0, 0.5, 0.25, 0.0]))
    # three non-zero differences, all positive: 2 of the 2^3 sign patterns are as extreme -> 0.25
    assert graded["test"] == "sign-flip permutation" and graded["p"] == pytest.approx(0.25)
    assert permutation_pvalue(np.zeros(5)) == 1.0


def test_paired_sample_size_by_hand():
    # Connor (1987): (1.95996 sqrt(0.3) + 0.84162 sqrt(0.29))^2 / 0.01 = 233.09 -> 234
    assert required_paired_sample_size(0.1, 0.3) == 234
    # fewer than the unpaired design needs for 0.5 vs 0.6 (388) when configurations mostly agree
    assert required_paired_sample_size(0.1, 0.2) < 388
    assert detectable_paired_difference(234, 0.3) == pytest.approx(0.1, abs=5e-4)
    assert math.isnan(detectable_paired_difference(3, 0.3))
    with pytest.raises(ValueError):
        required_paired_sample_size(0.4, 0.3)  # a difference larger than the discordance


def _null_sweeps(rng, sweeps: int, configurations: int, n: int) -> np.ndarray:
    """0/1 scores (sweeps, configurations, questions) where every configuration is truly equal: each
    question has its own difficulty, shared by all configurations, and answers are independent."""
    difficulty = rng.uniform(0.1, 0.9, size=(sweeps, 1, n))
    return (rng.random((sweeps, configurations, n)) < difficulty).astype(float)


@pytest.mark.parametrize(("configurations", "n"), [(6, 50), (12, 50), (6, 200)])
def test_holm_keeps_the_family_wise_false_differs_rate_at_5_percent(configurations, n):
    rng = np.random.default_rng(configurations * 1000 + n)
    scores = _null_sweeps(rng, 2000, configurations, n)
    base, others = scores[:, :1, :], scores[:, 1:, :]
    better = ((others == 1) & (base == 0)).sum(axis=2)
    worse = ((others == 0) & (base == 1)).sum(axis=2)
    raw = mcnemar_exact(better, worse)  # (sweeps, comparisons)
    uncorrected = (raw < 0.05).any(axis=1).mean()
    holm = (adjust_pvalues(raw, "holm") < 0.05).any(axis=1).mean()
    assert uncorrected > 0.05  # the problem: some false "differs" in many sweeps
    assert holm <= 0.05


def test_uncorrected_bootstrap_intervals_give_false_differs():
    """The issue's simulation: 6 equal configurations, 50 questions, a 95% paired bootstrap interval
    per comparison; at least one excludes 0 in far more than 5% of sweeps."""
    rng = np.random.default_rng(6)
    scores = _null_sweeps(rng, 400, 6, 50)
    diffs = scores[:, 1:, :] - scores[:, :1, :]  # (400, 5, 50)
    weights = rng.multinomial(50, np.full(50, 1 / 50), size=1000)  # 1000 resamples as counts
    means = diffs @ weights.T / 50  # (400 sweeps, 5 comparisons, 1000 resample means)
    low, high = np.quantile(means, 0.025, axis=2), np.quantile(means, 0.975, axis=2)
    assert ((low > 0) | (high < 0)).any(axis=1).mean() > 0.1
