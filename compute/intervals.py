"""Mean and 95% interval over seeds, and the sentence a page says about a difference: one helper for every page.

Which interval: Student t, mean +- t(0.975, n - 1) * sd / sqrt(n). The paper reports "mean and 95% confidence
interval over seeds" (paper_facts.md, A.4), and the cache's SQL summaries (`compute.cache`, `delta_summary`)
use the same t quantiles (`t_quantile`), so a page's sentence and its chart's error bars agree. Not a bootstrap:
with the 5 to 20 seeds a cell has, a percentile bootstrap's interval is narrower than even the normal one (z = 1.96
instead of t = 2.78 at n = 5) and covers well under 95% (`tests/test_intervals.py` measures both), and it is
random. The t interval assumes roughly normal per-seed values; a seed's accuracy is an average over hundreds
of test images, which makes that reasonable.

Which runs the interval covers: fine-tuning seeds, and, where the cache has source replicas (compute.replicas),
retraining the source too. A source trained once is one draw of its training; its runs' spread over seeds says
nothing about that draw. `source_spread` measures it from the replicated sources (one-way random-effects ANOVA of
accuracy on replica, pooled over sources and subset sizes of a target), and `summarise` adds it to each mean's
variance with the weight each side's replicas carry (1 for a source trained once, about 1/3 for three replicas),
with Welch-Satterthwaite degrees of freedom. Assumption, stated where pages show it: retraining moves every source's
accuracy about as much as it moves the replicated ones'.

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


SPREAD_POOL_DROP = "n_train"  # source_spread pools the subset sizes of a cell (too few seeds per size to stand alone)


def source_spread(per: pd.DataFrame, cell: list[str]) -> pd.DataFrame:
    """How much accuracy moves between replicas of a source: per `cell` (minus `n_train`, pooled over), the variance
    component `source_var` and its degrees of freedom `source_df`.

    `per` has one row per run: `source` (the family), `model` (the replica it started from), `seed`, the `cell`
    columns and `acc`. Every source on a seed shares its training subset, and the subset moves accuracy more than
    the source draw does (the demo: per-seed sd 3-5 points at n=20), so a replicated source's accuracy is first
    taken relative to the mean of the other sources on the same seed (which removes the subset), then a one-way
    random-effects ANOVA over its replicas gives (MSB - MSW) / n0 (n0 = (N - sum n_r^2 / N) / (R - 1)). Other
    replicated sources in that mean start from the same replica index on a seed (compute.replicas), so their draw
    leaks in: the estimate is divided by 1 + m / k^2 (m replicated among the k others: 2 when natural and the
    analogue are a cell's only sources, 1.008 on the demo's 12-source ladder), assuming equal spread. Pooled over
    sources and sizes weighted by R - 1, floored at 0 after pooling (flooring each first biases it up).
    `source_df` = sum of R - 1 over the sources, once: every size reuses the same source models, so pooling sizes
    averages out fine-tuning noise but adds no new draw. No replicated source: empty frame."""
    pool = [c for c in cell if c != SPREAD_POOL_DROP]
    columns = [*pool, "source_var", "source_df"]
    fam = [*cell, "source"]
    if per.empty:
        return pd.DataFrame(columns=columns)
    on_seed = per.groupby([*cell, "seed"], dropna=False)["acc"]
    per = per.assign(models=per.groupby(fam, dropna=False)["model"].transform("nunique"),
                     seed_sum=on_seed.transform("sum"), others=on_seed.transform("count") - 1)
    own = per[per["models"] > 1]
    replicated = own.groupby(cell, dropna=False)["source"].nunique().rename("replicated").reset_index()
    # A source with a seed no other source ran on is left out: nothing removes that subset.
    own = own[own.groupby(fam, dropna=False)["others"].transform("min") >= 1]
    own = own.assign(relative=own["acc"] - (own["seed_sum"] - own["acc"]) / own["others"])
    by_model = (own.groupby([*fam, "model"], dropna=False)["relative"].agg(["count", "mean", "var"]).reset_index()
                .merge(own.groupby(fam, dropna=False)["relative"].mean().rename("grand").reset_index(), on=fam))
    by_model = by_model.assign(between=by_model["count"] * (by_model["mean"] - by_model["grand"]) ** 2,
                               within=by_model["var"].fillna(0) * (by_model["count"] - 1),
                               squares=by_model["count"] ** 2)
    anova = by_model.groupby(fam, dropna=False).agg(r=("model", "size"), n=("count", "sum"), between=("between", "sum"),
                                                   within=("within", "sum"), squares=("squares", "sum")).reset_index()
    anova = anova[(anova["r"] >= 2) & (anova["n"] > anova["r"])]
    if anova.empty:
        return pd.DataFrame(columns=columns)
    k = own.groupby(fam, dropna=False)["others"].mean().rename("k").reset_index()
    anova = anova.merge(k, on=fam).merge(replicated, on=cell)
    n0 = (anova["n"] - anova["squares"] / anova["n"]) / (anova["r"] - 1)
    component = (anova["between"] / (anova["r"] - 1) - anova["within"] / (anova["n"] - anova["r"])) / n0
    leak = (anova["replicated"] - 1) / anova["k"] ** 2
    frame = anova.assign(estimate=component / (1 + leak), df=anova["r"] - 1)
    frame["weighted"] = frame["estimate"] * frame["df"]
    pooled = frame.groupby(pool, dropna=False)[["weighted", "df"]].sum().reset_index()
    pooled["source_var"] = (pooled["weighted"] / pooled["df"]).clip(lower=0.0)
    draws = (frame.groupby([*pool, "source"], dropna=False)["df"].max().groupby(pool, dropna=False).sum()
             .rename("source_df").reset_index())
    return pooled.merge(draws, on=pool)[columns]


def replica_weights(per: pd.DataFrame, group: list[str], side: str) -> pd.DataFrame:
    """Per `group`: sum over the replicas in column `side` of (runs from it / runs)^2, the share of one replica
    draw's variance a mean over these runs keeps (1 for one source model, 1/R for R replicas used equally)."""
    counts = per.groupby([*group, side], dropna=False).size().rename("runs").reset_index()
    counts["share"] = counts["runs"] / counts.groupby(group, dropna=False)["runs"].transform("sum")
    return (counts["share"] ** 2).groupby([counts[c] for c in group], dropna=False).sum().rename(
        f"weight_{side}").reset_index()


def summarise(per: pd.DataFrame, group: list[str], sides: tuple[str, ...] = ("model",),
              spread: pd.DataFrame | None = None, level: float = LEVEL) -> pd.DataFrame:
    """Per `group` of `per` (one row per seed: `acc`, and per side the column naming the source model it came
    from): n_seeds, mean, sd, then the 95% interval lo, hi over seeds, and over source retraining where `spread`
    (from `source_spread`) covers the cell: variance sd^2 / n + source_var * (sum of the sides' replica weights),
    Welch-Satterthwaite df. Adds `source_sd` (sqrt(source_var), NaN where not covered) and `df`."""
    out_cols = [*group, "n_seeds", "mean", "sd", "lo", "hi", "source_sd", "df"]
    if per.empty:
        return pd.DataFrame(columns=out_cols)
    grouped = per.groupby(group, dropna=False)
    frame = grouped["acc"].agg(n_seeds="count", mean="mean", sd="std").reset_index()
    for side in sides:
        frame = frame.merge(replica_weights(per, group, side), on=group, how="left")
    frame["weight"] = frame[[f"weight_{side}" for side in sides]].sum(axis=1)
    if spread is not None and not spread.empty:
        pool = [c for c in spread.columns if c in group]
        frame = frame.merge(spread, on=pool, how="left")
        # A cell whose replicas have too few runs to measure (e.g. 3 seeds, one per replica) borrows the spread
        # measured elsewhere in the cache: the same source models, so the same draws (df: the largest, not a sum).
        borrowed = float((spread["source_var"] * spread["source_df"]).sum() / spread["source_df"].sum())
        frame["source_df"] = frame["source_df"].fillna(float(spread["source_df"].max()))
        frame["source_var"] = frame["source_var"].fillna(borrowed)
    else:
        frame["source_var"], frame["source_df"] = np.nan, np.nan
    n = frame["n_seeds"].to_numpy(dtype=np.float64)
    v_seeds = frame["sd"].to_numpy(dtype=np.float64) ** 2 / n
    v_source = np.nan_to_num(frame["source_var"].to_numpy(dtype=np.float64)) * frame["weight"].to_numpy()
    source_df = frame["source_df"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        parts = v_seeds ** 2 / (n - 1) + np.where(v_source > 0, v_source ** 2 / source_df, 0.0)
        df = np.where(parts > 0, (v_seeds + v_source) ** 2 / parts, n - 1)
    half = np.asarray(t_quantile(np.maximum(df, 1.0), level)) * np.sqrt(v_seeds + v_source)
    half = np.where(n >= 2, half, 0.0)  # one seed: lo = hi = mean (no interval; from_summary says so)
    frame["lo"], frame["hi"] = frame["mean"] - half, frame["mean"] + half
    frame["source_sd"] = np.sqrt(frame["source_var"].astype(np.float64))
    frame["df"] = np.where(n >= 2, df, np.nan)
    return frame[out_cols].sort_values(group, kind="stable").reset_index(drop=True)


RETRAINING = "seeds and retraining the source"


def basis(rows: pd.DataFrame | pd.Series) -> str:
    """What a summary's intervals are over: 'seeds', or RETRAINING when `summarise` added the source spread."""
    spread = rows.get("source_sd") if isinstance(rows, pd.Series) else (
        rows["source_sd"] if "source_sd" in rows else None)
    covered = spread is not None and bool(pd.notna(spread).any() if isinstance(spread, pd.Series)
                                          else pd.notna(spread))
    return RETRAINING if covered else "seeds"


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


__all__ = ["LEVEL", "NOT_DISTINGUISHABLE", "RETRAINING", "Interval", "basis", "describe", "difference_interval",
           "from_summary", "mean_interval", "paired_interval", "replica_weights", "source_spread", "summarise",
           "t_quantile", "tied"]
