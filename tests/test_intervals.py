"""compute.intervals: the t-interval covers the true mean 95% of the time, and the verdict wording."""

import math

import numpy as np
import pytest

from compute.intervals import (
    NOT_DISTINGUISHABLE,
    Interval,
    describe,
    difference_interval,
    from_summary,
    mean_interval,
    paired_interval,
    t_quantile,
)

TRIALS = 4_000
# Binomial standard error of a 95% coverage over TRIALS draws: sqrt(0.95 * 0.05 / 4000) = 0.0034; 4 of them
# (0.014) leave a false failure at about 1 in 15,000 while a z-interval's 0.88 at n = 5 is 20 standard errors off.
TOLERANCE = 4 * math.sqrt(0.95 * 0.05 / TRIALS)


def _coverage(n: int, make, truth: float, interval) -> float:
    rng = np.random.default_rng(20000000 + n)
    hits = 0
    for _ in range(TRIALS):
        iv = interval(make(rng, n))
        hits += iv.lo <= truth <= iv.hi
    return hits / TRIALS


@pytest.mark.parametrize("n", [3, 5, 20])
def test_mean_interval_covers_the_mean_95_percent_of_the_time(n):
    coverage = _coverage(n, lambda rng, k: rng.normal(0.8, 0.03, k), 0.8, mean_interval)
    assert abs(coverage - 0.95) < TOLERANCE, coverage


def test_z_interval_would_undercover_at_five_seeds():
    """Why t and not a normal / bootstrap-like interval: with 1.96 instead of t(4) = 2.78 coverage drops to ~88%."""
    def z_interval(x):
        half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
        return Interval(x.mean(), x.mean() - half, x.mean() + half, len(x), x.std(ddof=1))
    coverage = _coverage(5, lambda rng, k: rng.normal(0.0, 1.0, k), 0.0, z_interval)
    assert coverage < 0.95 - TOLERANCE


def test_a_percentile_bootstrap_would_undercover_at_five_seeds():
    """The other candidate: 400 resamples per draw, 2.5% and 97.5% percentiles of the resampled means."""
    rng = np.random.default_rng(5)
    samples = rng.normal(0.0, 1.0, (TRIALS, 5))  # (trials, seeds)
    picks = rng.integers(0, 5, (TRIALS, 400, 5))  # (trials, resamples, seeds)
    means = samples[np.arange(TRIALS)[:, None, None], picks].mean(2)  # (trials, resamples)
    lo, hi = np.percentile(means, [2.5, 97.5], axis=1)
    assert ((lo <= 0) & (0 <= hi)).mean() < 0.95 - TOLERANCE


def test_difference_interval_covers_the_difference():
    """Welch's interval with unequal sizes and spreads (9 natural vs 27 robust pictures, as the featviz page)."""
    def make(rng, _):
        return rng.normal(0.21, 0.08, 27), rng.normal(0.33, 0.15, 9)
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(TRIALS):
        a, b = make(rng, 0)
        iv = difference_interval(a, b)
        hits += iv.lo <= 0.21 - 0.33 <= iv.hi
    assert abs(hits / TRIALS - 0.95) < TOLERANCE


def test_paired_interval_is_the_interval_of_differences():
    a, b = np.array([0.9, 0.8, 0.85, 0.95]), np.array([0.85, 0.8, 0.8, 0.9])
    assert paired_interval(a, b) == mean_interval(a - b)
    with pytest.raises(ValueError, match="differ in length"):
        paired_interval(a, b[:3])


def test_t_interval_by_hand():
    iv = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) from tables, sd^2 = 2.5
    assert iv.mean == 3.0 and iv.n == 5
    assert iv.lo == pytest.approx(3.0 - half, rel=1e-12) and iv.hi == pytest.approx(3.0 + half, rel=1e-12)
    assert t_quantile(4) == pytest.approx(2.7764451051977987, rel=1e-12)


def test_one_value_has_no_interval_and_decides_nothing():
    iv = mean_interval([0.05, float("nan")])
    assert iv.n == 1 and math.isnan(iv.lo) and iv.sign == 0
    assert describe(iv, "robust ahead", "natural ahead").startswith(NOT_DISTINGUISHABLE)
    assert describe(iv, "robust ahead", "natural ahead") == "not distinguishable here: +5.0 points (no interval: 1 seeds)"
    assert from_summary(0.1, 0.1, 0.1, 1).sign == 0


def test_describe_says_not_distinguishable_when_the_interval_covers_zero():
    covers = Interval(0.004, -0.012, 0.020, 5, 0.01)
    text = describe(covers, "robust ahead", "natural ahead")
    assert text == "not distinguishable here: +0.4 points [-1.2, +2.0] (95% interval over 5 seeds)"
    assert "robust ahead" not in text and "natural ahead" not in text


def test_describe_names_the_side_that_is_ahead():
    assert describe(Interval(0.03, 0.01, 0.05, 5, 0.01), "robust ahead", "natural ahead").startswith(
        "robust ahead: +3.0 points [+1.0, +5.0]")
    assert describe(Interval(-0.03, -0.05, -0.01, 5, 0.01), "robust ahead", "natural ahead").startswith(
        "natural ahead: -3.0 points [-5.0, -1.0]")
