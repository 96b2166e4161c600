"""app.influence_compare: rank correlation and top-k overlap between influence methods, against scipy and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from app.influence_compare import compare_methods, exact_method, overlap_long, spearman_per_test, topk_overlap


def test_spearman_per_test_equals_scipy_column_by_column() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 6)), rng.normal(size=(40, 6))
    b[:, 0] = a[:, 0] * 3 + 1  # monotone: 1
    b[:, 1] = -a[:, 1]  # reversed: -1
    rho = spearman_per_test(a, b)
    expected = [stats.spearmanr(a[:, t], b[:, t]).statistic for t in range(6)]
    np.testing.assert_allclose(rho, expected, atol=1e-12)
    assert rho[0] == pytest.approx(1.0) and rho[1] == pytest.approx(-1.0)
    b[:, 2] = 5.0  # constant column: undefined
    assert np.isnan(spearman_per_test(a, b)[2])


def test_topk_overlap_counts_shared_rows() -> None:
    a = np.array([[9.0], [8.0], [7.0], [1.0], [0.0]])  # top 3: rows 0, 1, 2
    b = np.array([[9.0], [0.0], [7.0], [8.0], [1.0]])  # top 3: rows 0, 3, 2
    assert topk_overlap(a, b, 3).tolist() == [pytest.approx(2 / 3)]
    assert topk_overlap(a, b, 1).tolist() == [1.0]
    assert topk_overlap(a, b, 50).tolist() == [1.0]  # k capped at n_train


def test_compare_methods_reports_each_method_against_the_exact_one() -> None:
    rng = np.random.default_rng(1)
    exact = rng.normal(size=(30, 8))
    table = compare_methods({"fast": exact, "tracincp": exact + rng.normal(0, 0.5, exact.shape),
                             "random": rng.normal(size=exact.shape)}, "fast", ks=(1, 5))
    rows = table.set_index("method")
    assert rows.at["fast", "spearman"] == pytest.approx(1.0) and rows.at["fast", "overlap@5"] == 1.0
    assert 0.5 < rows.at["tracincp", "spearman"] < 1.0
    assert abs(rows.at["random", "spearman"]) < 0.3
    assert rows.at["tracincp", "overlap@5"] > rows.at["random", "overlap@5"]
    long = overlap_long(table.assign(model="m"))
    assert set(long["k"]) == {1, 5} and len(long) == 3 * 2


def test_exact_method_prefers_known_exact_then_unknown() -> None:
    assert exact_method({"tracincp": False, "fast": True, "reference": True}) == "reference"
    assert exact_method({"tracincp": False, "fast": True}) == "fast"
    assert exact_method({"tracincp": False, "fc-exact": None}) == "fc-exact"
    assert exact_method({"tracincp": False}) is None


def test_method_charts_plot_their_rows_by_method_and_model() -> None:
    import pandas as pd

    from app.influence_charts import methods_label_match, methods_overlap

    curves = pd.DataFrame({"model": ["a", "a", "b"], "method": ["fast", "tracincp", "fast"], "k": [1, 1, 1],
                           "match": [0.5, 0.4, 0.2]})
    spec = methods_label_match(curves).to_dict()
    assert spec["spec"]["encoding"]["color"]["field"] == "method" and spec["facet"]["column"]["field"] == "model"
    assert spec["spec"]["encoding"]["y"]["field"] == "match"
    overlap = overlap_long(pd.DataFrame({"model": ["a"], "method": ["tracincp"], "overlap@1": [0.5], "overlap@5": [0.6]}))
    spec = methods_overlap(overlap).to_dict()
    assert spec["spec"]["encoding"]["y"]["field"] == "overlap" and spec["spec"]["encoding"]["x"]["field"] == "k"
    assert sorted(overlap["k"]) == [1, 5] and overlap["overlap"].tolist() == [0.5, 0.6]
