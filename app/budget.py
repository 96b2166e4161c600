"""The budget page's data: robust-minus-natural accuracy against each source's budget, and the sources' own
clean and attacked accuracy, as pure DataFrame functions (tested without Streamlit).

Why a page of its own: Salman et al. (2020) found the transfer benefit largest at small budgets and gone at
large ones, so one robust source is one point on a curve. Each source's budget comes from the cache's
`source_models` columns `kind` ('natural' | 'pgd' | 'gaussian'), `norm` ('l2' | 'linf' | NULL), `eps` (NULL for
natural; sigma for gaussian) and `steps` (schema migration 2), never from parsing its name. A *family* is
one line of the chart: sources that differ only in eps (L2 PGD(3), L∞ PGD(3), L2 PGD(1), Gaussian).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from compute.intervals import Interval, basis, describe, from_summary, tied

__all__ = ["BUDGET_COLUMNS", "attack_label", "budget_accuracy", "budget_deltas", "budget_summary", "family",
           "has_budgets"]

BUDGET_COLUMNS = ("kind", "norm", "eps", "steps")
NORM_TEXT = {"l2": "L2", "linf": "L∞"}


def has_budgets(sources: pd.DataFrame) -> bool:
    """True when the source table carries the budget columns (a cache written before schema v2 does not)."""
    return not sources.empty and all(c in sources.columns for c in BUDGET_COLUMNS)


def family(kind: str, norm: str | None, steps: int | None) -> str:
    """The chart line a source belongs to: 'L2, PGD(3)', 'L∞, PGD(3)', 'Gaussian (ε = σ)' or 'natural'."""
    if kind == "pgd":
        return f"{NORM_TEXT.get(str(norm), str(norm))}, PGD({int(steps or 0)})"
    if kind == "gaussian":
        return "Gaussian (ε = σ)"
    return str(kind)


def _budgets(sources: pd.DataFrame) -> pd.DataFrame:
    """name -> kind, norm, eps, steps, family for every source with a budget (natural sources dropped)."""
    frame = sources[sources["kind"].isin(["pgd", "gaussian"]) & sources["eps"].notna() & (sources["eps"] > 0)]
    fam = [family(k, n, s) for k, n, s in zip(frame["kind"], frame["norm"], frame["steps"], strict=True)]
    return frame.assign(family=fam)[["name", "kind", "norm", "eps", "steps", "family"]]


def budget_deltas(delta: pd.DataFrame, sources: pd.DataFrame) -> pd.DataFrame:
    """`delta_summary` rows (source minus natural, paired by seed) with each source's budget and family.

    One row per (source, target, n_train, blocks); sources without a budget (another natural model) are left out.
    """
    if delta.empty or not has_budgets(sources):
        return pd.DataFrame(columns=[*delta.columns, "kind", "norm", "eps", "steps", "family"])
    budgets = _budgets(sources).rename(columns={"name": "source"})
    return delta.merge(budgets, on="source", how="inner").sort_values(["family", "eps"], kind="stable")


def attack_label(norm: str, eps: float, steps: int) -> str:
    """'clean' for the robustness table's norm 'none', else e.g. 'L2 ε=0.22, PGD(3)'."""
    if norm == "none":
        return "clean"
    return f"{NORM_TEXT.get(norm, norm)} ε={eps:.3g}, PGD({int(steps)})"


def budget_accuracy(sources: pd.DataFrame, robustness: pd.DataFrame, attack: str,
                    natural: str | None = None) -> pd.DataFrame:
    """Each source's clean accuracy and its accuracy under `attack` (an `attack_label`), on its own test set.

    Rows: source, family, eps, measure ('clean' | attack), accuracy, n_images. The natural source gets family
    'natural' and eps NaN (it has no budget; the chart draws it as a reference line).
    """
    columns = ["source", "family", "eps", "measure", "accuracy", "n_images"]
    if robustness.empty or not has_budgets(sources):
        return pd.DataFrame(columns=columns)
    labels = [attack_label(n, e, s) for n, e, s in zip(robustness["norm"], robustness["eps"], robustness["steps"],
                                                        strict=True)]
    rows = robustness.assign(measure=labels).drop(columns=["norm", "eps", "steps"])  # the attack's, not the source's
    rows = rows[rows["measure"].isin(["clean", attack])]
    budgets = _budgets(sources)
    if natural is not None:
        budgets = pd.concat([budgets, pd.DataFrame([{"name": natural, "family": "natural"}])], ignore_index=True)
    out = rows.merge(budgets.rename(columns={"name": "source"}), on="source", how="inner")
    return out[columns].sort_values(["family", "eps", "measure"], kind="stable").reset_index(drop=True)


def _cell(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """The rows of `frame` in the (target, n_train, blocks) cell of `like`'s first row."""
    if frame.empty or like.empty:
        return frame.iloc[0:0]
    first = like.iloc[0]
    return frame[(frame["target"] == first["target"]) & (frame["n_train"] == first["n_train"])
                 & (frame["blocks"] == first["blocks"])]


def _interval(row: pd.Series) -> Interval:
    return from_summary(row["mean"], row["lo"], row["hi"], int(row["n_seeds"]))


def budget_summary(deltas: pd.DataFrame, versus: Mapping[str, pd.DataFrame] | None = None) -> str:
    """What the curve says, computed, every comparison with its 95% interval over seeds (`compute.intervals`):
    the best budget against natural and the budgets tied with it, the worst, how many are above / below natural,
    and per family its smallest budget against its largest.

    `deltas` is one (target, n_train, blocks) cell of `budget_deltas`; `versus[s]` is `delta_summary(s)` (every
    source minus `s`, paired by seed) for the best source and each family's largest budget. Without a source's
    entry its comparisons cannot be paired and are said to be undecided."""
    if deltas.empty:
        return "No robust source has paired runs here."
    versus = versus or {}
    best, worst = deltas.loc[deltas["mean"].idxmax()], deltas.loc[deltas["mean"].idxmin()]

    def point(row: pd.Series) -> str:
        return (f"{row['source']} ({row['family']}, ε={row['eps']:.3g}): "
                + describe(_interval(row), "ahead of natural", "behind natural", what=basis(row)))

    others = set(deltas["source"]) - {best["source"]}
    tie = tied(_cell(versus.get(best["source"], pd.DataFrame()), deltas), others)
    tie_text = (f" A tie with {', '.join(tie)}: their differences from {best['source']} (paired by seed) have 95% "
                "intervals that reach zero, so the best budget is not distinguishable here among them." if tie
                else f" Every other budget is below {best['source']} with 95% confidence (paired by seed)."
                if others else "")
    trends = []
    for fam, group in deltas.groupby("family", sort=True):
        if len(group) < 2:
            continue
        small, large = group.loc[group["eps"].idxmin()], group.loc[group["eps"].idxmax()]
        rows = _cell(versus.get(large["source"], pd.DataFrame()), deltas)
        rows = rows[rows["source"] == small["source"]] if not rows.empty else rows
        iv = _interval(rows.iloc[0]) if not rows.empty else Interval(small["mean"] - large["mean"], *[float("nan")] * 2,
                                                                      0, float("nan"))
        trends.append(f"{fam}: smallest ε {small['eps']:.3g} minus largest ε {large['eps']:.3g}: "
                      + describe(iv, "the smaller budget transfers better", "the larger budget transfers better",
                                 what=basis(rows) if not rows.empty else "seeds"))
    intervals = [_interval(r) for _, r in deltas.iterrows()]
    above, below = sum(iv.sign > 0 for iv in intervals), sum(iv.sign < 0 for iv in intervals)
    rest = len(deltas) - above - below
    text = (f"Best: {point(best)}.{tie_text} Worst: {point(worst)}. {above} of {len(deltas)} sources are above "
            f"natural and {below} below it with 95% confidence; {rest} {'is' if rest == 1 else 'are'} not "
            "distinguishable here from natural.")
    return text + (" " + "; ".join(trends) + "." if trends else "")
