"""The "Which budget transfers best?" page under streamlit.testing, on a cache holding a ladder of sources whose
budgets live only in the schema-v2 columns (`kind`, `norm`, `eps`, `steps`): the chart's rows must be the paired
robust-minus-natural deltas of the chosen cell, placed at each source's eps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from app.explorer import PAGES
from compute.cache import CacheWriter
from compute.data import paper_seeds
from compute.records import CurvePoint, RobustnessRecord, RunRecord, SourceRecord

APP = str(Path(__file__).resolve().parents[1] / "app" / "explorer.py")
LADDER = (  # name, kind, norm, eps, steps, transfer bonus (largest at small budgets), clean accuracy
    ("natural", "natural", None, None, 0, 0.0, 0.90),
    ("l2_0.1", "pgd", "l2", 0.1, 3, 0.04, 0.89), ("l2_0.5", "pgd", "l2", 0.5, 3, 0.02, 0.86),
    ("l2_1.5", "pgd", "l2", 1.5, 3, -0.03, 0.80),
    ("linf_4", "pgd", "linf", 4 / 255, 3, 0.03, 0.88), ("linf_0.1", "pgd", "linf", 0.1, 3, -0.02, 0.82),
    ("pgd1_l2_0.22", "pgd", "l2", 0.22, 1, 0.01, 0.88), ("gaussian", "gaussian", None, 0.0079, 0, 0.0, 0.90),
)
SEEDS, SIZES, BLOCKS = tuple(paper_seeds(4)), (20, 100), (1, 3)


def acc(bonus: float, n_train: int, blocks: int, seed: int) -> float:
    return round(0.5 + 0.1 * np.log2(n_train / 20) + bonus + 0.01 * blocks + 0.01 * ((seed // 100000) % 3 - 1)
                 + 0.003 * bonus * 100 * (seed % 7 == 0), 6)


def write_ladder_cache(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    runs, curves = [], []
    with CacheWriter(root) as writer:
        for name, kind, norm, eps, steps, bonus, clean in LADDER:
            constraint = "none" if kind == "natural" else f"{norm or kind}:{eps}"
            writer.record_source_model(SourceRecord(name, "small_resnet", constraint, steps, "fmnist",
                                                    f"synthetic-{name}", f"sources/{name}.safetensors", clean, 1.0,
                                                    {"synthetic": True}))
            writer.record_robustness([RobustnessRecord(name, "fmnist", "none", 0.0, 0, clean, 1000),
                                      RobustnessRecord(name, "fmnist", "l2", 0.5, 3, round(0.2 + (eps or 0) * 0.3, 4),
                                                       1000)])
            for n_train in SIZES:
                for blocks in BLOCKS:
                    for seed in SEEDS:
                        final = acc(bonus, n_train, blocks, seed)
                        runs.append(RunRecord(f"ft-{name}-{n_train}-{blocks}-{seed}", "done", name, "mnist5k",
                                              n_train, seed, blocks, 4, {"synthetic": True}, (0,), final, 0.1, 1.0,
                                              "cpu"))
                        curves.append([CurvePoint(4, final, 0.1)])
        writer.record_runs(runs, curves)
    return root


def chart_data(at: AppTest) -> list[pd.DataFrame]:
    return [convert_arrow_bytes_to_pandas_df(d.data.data) for chart in at.get("vega_lite_chart")
            for d in chart.proto.datasets]


@pytest.fixture(scope="module")
def ladder_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ladder_cache(tmp_path_factory.mktemp("budget") / "cache")


def open_budget(monkeypatch: pytest.MonkeyPatch, root: Path) -> AppTest:
    monkeypatch.setenv("RTX_CACHE", str(root))
    at = AppTest.from_file(APP, default_timeout=60).run()
    return at.switch_page(next(p for p, _, url in PAGES if url == "budget")).run()


def test_budget_curve_is_paired_delta_at_each_sources_eps(monkeypatch, ladder_cache: Path) -> None:
    at = open_budget(monkeypatch, ladder_cache)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Which budget transfers best?"
    csv_buttons = [b for b in at.get("download_button") if b.key.startswith("csv-")]  # SVG/PNG beside each chart
    assert len(at.get("vega_lite_chart")) == 1 and len(csv_buttons) == 2
    frames = chart_data(at)
    deltas = next(f for f in frames if "mean" in f.columns)
    accuracy = next(f for f in frames if "measure" in f.columns)
    assert (deltas["n_train"] == 20).all() and (deltas["blocks"] == 3).all()  # defaults: smallest size, 3 blocks
    assert set(deltas["source"]) == {name for name, *_ in LADDER} - {"natural"}
    row = deltas.set_index("source").loc["linf_4"]
    assert row["eps"] == pytest.approx(4 / 255) and row["family"] == "L∞, PGD(3)"
    diffs = np.array([acc(0.03, 20, 3, s) - acc(0.0, 20, 3, s) for s in SEEDS])
    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    assert row["mean"] == pytest.approx(diffs.mean()) and row["hi"] == pytest.approx(diffs.mean() + half)
    assert set(accuracy["measure"]) == {"clean", "L2 ε=0.5, PGD(3)"}
    assert accuracy.loc[(accuracy["source"] == "l2_1.5") & (accuracy["measure"] == "clean"), "accuracy"].item() == 0.80
    said = " ".join(m.value for m in at.markdown)
    assert "Best: l2_0.1 (L2, PGD(3), ε=0.1)" in said and "Worst: l2_1.5" in said
    assert "(95% interval over" in said and ("A tie with" in said or "Every other budget is below" in said)


def test_selectors_move_to_another_cell(monkeypatch, ladder_cache: Path) -> None:
    at = open_budget(monkeypatch, ladder_cache)
    at.selectbox(key="budget-size").set_value(100).run()
    at.selectbox(key="budget-blocks").set_value(1).run()
    assert not at.exception
    deltas = next(f for f in chart_data(at) if "mean" in f.columns)
    assert (deltas["n_train"] == 100).all() and (deltas["blocks"] == 1).all()


def test_the_explorers_synthetic_cache_gets_its_budgets_from_the_migrated_columns(monkeypatch, tmp_path: Path) -> None:
    from tests.helpers.explorer_cache import SOURCES, write_explorer_cache

    at = open_budget(monkeypatch, write_explorer_cache(tmp_path / "cache"))
    assert not at.exception
    deltas = next(f for f in chart_data(at) if "mean" in f.columns)
    assert set(deltas["source"]) == {name for name, *_ in SOURCES} - {"natural"}
    assert deltas.set_index("source").loc["linf_0.2", "eps"] == pytest.approx(0.2)
    assert deltas.set_index("source").loc["pgd1_l2_1.5", "family"] == "L2, PGD(1)"


def test_a_cache_with_only_natural_sources_names_what_is_missing(monkeypatch, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    with CacheWriter(root) as writer:
        writer.record_source_model(SourceRecord("natural", "small_resnet", "none", 0, "fmnist", "x", "x", 0.9, 1.0))
        writer.record_run(RunRecord("r", "done", "natural", "mnist5k", 20, SEEDS[0], 3, 4, final_test_acc=0.5),
                          [CurvePoint(4, 0.5, 0.1)])
    at = open_budget(monkeypatch, root)
    assert not at.exception and not at.get("vega_lite_chart")
    assert any("robust and natural runs on the same subsets" in i.value for i in at.info)
