"""The budget page's pure parts (app.budget, charts.budget_chart) on hand-made frames, and the Shape-vs-texture
bar chart's axis title."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import pytest

from app import budget, charts

SOURCES = pd.DataFrame([  # name, kind, norm, eps, steps: the columns of schema migration 2
    ("natural", "natural", None, np.nan, 0), ("l2_0.1", "pgd", "l2", 0.1, 3), ("l2_0.5", "pgd", "l2", 0.5, 3),
    ("l2_1.5", "pgd", "l2", 1.5, 3), ("linf_4", "pgd", "linf", 4 / 255, 3), ("linf_8", "pgd", "linf", 8 / 255, 3),
    ("pgd1", "pgd", "l2", 0.22, 1), ("gauss", "gaussian", None, 0.0079, 0),
], columns=["name", "kind", "norm", "eps", "steps"]).assign(constraint_="misleading:9")


def _delta(source: str, mean: float, half: float = 0.01, **cell) -> dict:
    return {"source": source, "target": "mnist5k", "n_train": 20, "blocks": 3, "n_seeds": 5, "mean": mean,
            "sd": 0.01, "lo": mean - half, "hi": mean + half, **cell}


DELTA = pd.DataFrame([_delta("l2_0.1", 0.05), _delta("l2_0.5", 0.02), _delta("l2_1.5", -0.04, 0.05),
                      _delta("linf_4", 0.03), _delta("linf_8", 0.01), _delta("pgd1", 0.0), _delta("gauss", 0.001)])


def test_deltas_take_each_sources_budget_from_the_budget_columns() -> None:
    frame = budget.budget_deltas(DELTA, SOURCES)
    assert len(frame) == len(DELTA)
    row = frame.set_index("source").loc["linf_8"]
    assert row["eps"] == pytest.approx(8 / 255) and row["family"] == "L∞, PGD(3)"
    assert frame.set_index("source").loc["pgd1", "family"] == "L2, PGD(1)"
    assert frame.set_index("source").loc["gauss", "family"] == "Gaussian (ε = σ)"
    l2 = frame[frame["family"] == "L2, PGD(3)"]
    assert list(l2["eps"]) == sorted(l2["eps"])  # lines are drawn in eps order
    assert budget.budget_deltas(DELTA, SOURCES.drop(columns=["eps"])).empty  # a cache before schema v2


def test_accuracy_rows_are_clean_and_the_chosen_attack_with_natural_as_reference() -> None:
    rob = pd.DataFrame([(s, "fmnist", n, e, k, acc, 1000) for s in SOURCES["name"]
                        for n, e, k, acc in (("none", 0.0, 0, 0.9), ("l2", 0.5, 3, 0.4), ("linf", 8 / 255, 3, 0.3))],
                       columns=["source", "dataset", "norm", "eps", "steps", "accuracy", "n_images"])
    label = budget.attack_label("l2", 0.5, 3)
    assert label == "L2 ε=0.5, PGD(3)" and budget.attack_label("none", 0, 0) == "clean"
    acc = budget.budget_accuracy(SOURCES, rob, label, natural="natural")
    assert set(acc["measure"]) == {"clean", label} and len(acc) == 2 * len(SOURCES)
    assert acc.loc[acc["source"] == "natural", "family"].eq("natural").all()
    assert acc.loc[acc["source"] == "l2_0.5", "eps"].eq(0.5).all()


def _versus(reference: str, rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """delta_summary(reference) rows of the cell: (source, mean, half-width) of source minus reference."""
    return pd.DataFrame([_delta(s, m, h) for s, m, h in rows]).assign(reference=reference)


def test_summary_names_the_best_budget_and_the_trend() -> None:
    frame = budget.budget_deltas(DELTA, SOURCES)
    versus = {"l2_0.1": _versus("l2_0.1", [("l2_0.5", -0.03, 0.01), ("linf_4", -0.02, 0.03), ("l2_1.5", -0.09, 0.05),
                                            ("linf_8", -0.04, 0.01), ("pgd1", -0.05, 0.01), ("gauss", -0.049, 0.01)]),
              "l2_1.5": _versus("l2_1.5", [("l2_0.1", 0.09, 0.05)]),
              "linf_8": _versus("linf_8", [("linf_4", 0.02, 0.03)])}
    text = budget.budget_summary(frame, versus)
    assert text.startswith("Best: l2_0.1 (L2, PGD(3), ε=0.1): ahead of natural: +5.0 points [+4.0, +6.0] (95% "
                           "interval over 5 seeds).")
    assert "A tie with linf_4: their differences from l2_0.1" in text  # -0.02 +- 0.03 reaches zero; the rest do not
    assert "Worst: l2_1.5 (L2, PGD(3), ε=1.5): not distinguishable here: -4.0 points [-9.0, +1.0]" in text
    assert "L2, PGD(3): smallest ε 0.1 minus largest ε 1.5: the smaller budget transfers better: +9.0 points" in text
    assert "L∞, PGD(3): smallest ε 0.0157 minus largest ε 0.0314: not distinguishable here: +2.0 points" in text
    assert "3 of 7 sources are above natural and 0 below it with 95% confidence; 4 are not distinguishable" in text
    assert "7 of 7 sources are above" in budget.budget_summary(frame.assign(lo=frame["lo"].clip(lower=0.0001)))
    unpaired = budget.budget_summary(frame)  # no paired rows: every tie and trend undecided, said so
    assert "A tie with gauss, l2_0.5, l2_1.5, linf_4, linf_8, pgd1" in unpaired
    assert "smallest ε 0.1 minus largest ε 1.5: not distinguishable here: +9.0 points (no interval: 0 seeds)" \
        in unpaired
    flipped = budget.budget_summary(frame.assign(mean=-frame["mean"], lo=-frame["hi"], hi=-frame["lo"]))
    assert flipped.startswith("Best: l2_1.5") and "behind natural: -5.0 points" in flipped


def test_budget_chart_shares_the_eps_axis_between_transfer_and_robustness() -> None:
    frame = budget.budget_deltas(DELTA, SOURCES)
    rob = pd.DataFrame([(s, "fmnist", n, e, 3 if e else 0, 0.5, 1000) for s in SOURCES["name"]
                        for n, e in (("none", 0.0), ("l2", 0.5))],
                       columns=["source", "dataset", "norm", "eps", "steps", "accuracy", "n_images"])
    acc = budget.budget_accuracy(SOURCES, rob, "L2 ε=0.5, PGD(3)", natural="natural")
    spec = charts.budget_chart(frame, acc).to_dict()
    assert spec["resolve"]["scale"]["x"] == "shared"
    top, bottom = spec["vconcat"]
    bar, line, points, rule = top["layer"]
    assert points["encoding"]["shape"]["field"] == "family" and points["encoding"]["y"]["field"] == "mean"
    assert line["encoding"]["x"]["field"] == "eps" and line["encoding"]["x"]["scale"]["type"] == "log"
    assert line["encoding"]["x"]["scale"]["domain"] == pytest.approx([0.0079 / 1.4, 1.5 * 1.4])  # the data's span
    assert bar["mark"]["type"] == "errorbar" and bar["encoding"]["y2"]["field"] == "hi"
    assert rule["encoding"]["y"] == {"datum": 0}
    assert line["encoding"]["color"]["field"] == "family"
    assert bottom["layer"][0]["encoding"]["strokeDash"]["field"] == "measure"
    assert bottom["layer"][1]["mark"]["type"] == "rule"  # natural: a reference line, it has no budget


def test_variant_bars_y_title_is_not_the_error_bars_field() -> None:
    frame = pd.DataFrame({"source": ["natural", "l2"], "target": ["mnist5k"] * 2, "mean": [0.8, 0.85],
                          "lo": [0.75, 0.8], "hi": [0.85, 0.9], "n_seeds": [3, 3]})
    chart = charts.variant_bars(frame)
    spec = chart.to_dict()
    bars, errors = spec["spec"]["layer"]
    assert bars["encoding"]["y"]["title"] == "test accuracy"
    assert errors["encoding"]["y"].get("title") == "test accuracy"
    # Vega-Lite titles a shared axis from every layer's title: only one distinct title may remain
    titles = {layer["encoding"]["y"].get("title", layer["encoding"]["y"]["field"]) for layer in (bars, errors)}
    assert titles == {"test accuracy"}
    assert isinstance(chart, alt.FacetChart)
