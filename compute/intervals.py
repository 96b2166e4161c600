"""Mean and 95% interval over seeds, and the sentence a page says about a difference: one helper for every page.

Which interval: Student t, mean +- t(0.975, n - 1) * sd / sqrt(n). The paper reports "mean and 95% confidence
interval over seeds" (paper_facts.md, A.4), and the cache's SQL summaries (`compute.cache`, `delta_summary`)
use the same t quantiles (`t_quantile`), so a page's sentence and its chart's error bars agree. Not a bootstrap:
with the 5 to 20 seeds a cell has, a percentile bootstrap's interval is narrower than even the normal one (z = 1.96
instead of t = 2.78 at n = 5) and covers well under 95% (`tests/test_intervals.py` measures both), and it is
random. The t interval assumes roughly normal per-seed values; a seed's accuracy is an average over hundreds
of test images, which makes that reasonable.

A difference is *distinguishable here* only when its interval excludes zero; with fewer than two values there is
no interval (lo = hi = NaN) and nothing is distinguishable. `describe` writes the one sentence every computed
verdict uses, so "not distinguishable here" reads the same on every page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95  # two-sided, as the paper's intervals over seeds
NOT_DISTINGUISHABLE = "not distinguishable here"


class Interval(NamedTuple):
    """A mean with its two-sided 95% t-interval over `n` values (lo = hi = NaN when n < 2)."""

    mean: float
    lo: float
    hi: float
    n: int
    sd: float

    @property
    def half(self) -> float:
        """Half the interval's width (NaN without an interval)."""
        return (self.hi - self.lo) / 2

    @property
    def sign(self) -> int:
        """+1 when the whole interval is above zero, -1 when below, 0 when it covers zero or there is none."""
        if math.isnan(self.lo) or math.isnan(self.hi):
            return 0
        return 1 if self.lo > 0 else -1 if self.hi < 0 else 0

    def text(self, scale: float = 100.0, unit: str = " points", digits: int = 1) -> str:
        """'+2.3 points [+0.4, +4.2] (5 seeds)' with `scale` (100: fractions as points)."""
        mean = f"{self.mean * scale:+.{digits}f}{unit}"
        if self.n < 2 or math.isnan(self.lo):
            return mean
        return f"{mean} [{self.lo * scale:+.{digits}f}, {self.hi * scale:+.{digits}f}]"


def t_quantile(df: int | np.ndarray, level: float = LEVEL) -> float | np.ndarray:
    """The two-sided Student-t quantile of `level` with `df` degrees of freedom (2.776 at df = 4)."""
    return stats.t.ppf(0.5 + level / 2, df)


def mean_interval(values: Iterable[float], level: float = LEVEL) -> Interval:
    """Mean and t-interval of `values` (NaNs dropped)."""
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1, math.nan)
    sd = float(x.std(ddof=1))
    half = float(t_quantile(n - 1, level)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd)


def paired_interval(a: Iterable[float], b: Iterable[float], level: float = LEVEL) -> Interval:
    """Interval of a - b paired element by element (same seed = same subset)."""
    a, b = np.asarray(list(a), dtype=np.float64), np.asarray(list(b), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.shape} vs {b.shape}")
    return mean_interval(a - b, level)


def difference_interval(a: Iterable[float], b: Iterable[float], level: float = LEVEL) -> Interval:
    """Interval of mean(a) - mean(b) for two independent samples: Welch's t (unequal variances). `n` is the
    smaller sample's size and `sd` the difference's standard error."""
    a, b = np.asarray(list(a), dtype=np.float64), np.asarray(list(b), dtype=np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size < 2 or b.size < 2:
        mean = float(a.mean() - b.mean()) if a.size and b.size else math.nan
        return Interval(mean, math.nan, math.nan, int(min(a.size, b.size)), math.nan)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    mean = float(a.mean() - b.mean())
    if se == 0:
        return Interval(mean, mean, mean, int(min(a.size, b.size)), 0.0)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))  # Welch-Satterthwaite
    half = float(t_quantile(df, level)) * se
    return Interval(mean, mean - half, mean + half, int(min(a.size, b.size)), se)


def from_summary(mean: float, lo: float, hi: float, n: int) -> Interval:
    """An `Interval` from a cache summary row (mean, lo, hi, n_seeds); one seed has no interval."""
    if n < 2 or lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return Interval(float(mean), math.nan, math.nan, int(n), math.nan)
    return Interval(float(mean), float(lo), float(hi), int(n), math.nan)


def tied(versus: pd.DataFrame, candidates: Iterable[str], name: str = "source") -> tuple[str, ...]:
    """The `candidates` not distinguishable from a reference: those whose row in `versus` (candidate minus the
    reference, paired by seed: columns `name`, mean, lo, hi, n_seeds) has an interval reaching zero, or no row
    (no common seeds: nothing decides). Sorted."""
    candidates = set(candidates)
    rows = versus[versus[name].isin(candidates)] if not versus.empty else versus
    decided = {str(r[name]) for _, r in rows.iterrows()
               if from_summary(r["mean"], r["lo"], r["hi"], int(r["n_seeds"])).sign < 0}
    return tuple(sorted(candidates - decided))


def describe(interval: Interval, ahead: str, behind: str, scale: float = 100.0, unit: str = " points",
             digits: int = 1, what: str = "seeds") -> str:
    """The sentence of a computed verdict about a difference (a minus b): '{ahead}: +2.3 points [+0.4, +4.2] (95%
    interval over 5 seeds)', '{behind}: -1.1 points [...]', or 'not distinguishable here: +0.4 points [-1.2, +2.0]
    (...)' when the interval covers zero (or there is none)."""
    over = (f"95% interval over {interval.n} {what}" if interval.n >= 2 and not math.isnan(interval.lo)
            else f"no interval: {interval.n} {what}")
    body = f"{interval.text(scale, unit, digits)} ({over})"
    if interval.sign > 0:
        return f"{ahead}: {body}"
    if interval.sign < 0:
        return f"{behind}: {body}"
    return f"{NOT_DISTINGUISHABLE}: {body}"


__all__ = ["LEVEL", "NOT_DISTINGUISHABLE", "Interval", "describe", "difference_interval", "from_summary",
           "mean_interval", "paired_interval", "t_quantile", "tied"]
