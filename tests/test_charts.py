"""The explorer's pure parts without a browser: chart specs (app.charts), heatmap pooling against the
reference route (compute.influence.derived), and the Table 7 mapping (app.paper)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import pytest

from app import charts, paper
from compute.influence.derived import sorted_standardized
from compute.roles import SourceFacts, SourceRoles, derive_roles


def _summary(**extra) -> pd.DataFrame:
    rows = [{"source": s, "target": t, "n_train": n, "blocks": b, "n_seeds": 3, "mean": 0.5 + 0.1 * i,
             "sd": 0.01, "lo": 0.45 + 0.1 * i, "hi": 0.55 + 0.1 * i}
            for i, s in enumerate(("natural", "l2_1.5")) for t in ("digits", "mnist5k") for n in (20, 50, 100)
            for b in (1, 3)]
    return pd.DataFrame(rows).assign(**extra)


def _layers(spec: dict) -> list[dict]:
    return spec["spec"]["layer"] if "spec" in spec else spec["layer"]


def _rows(chart: alt.TopLevelMixin) -> list[dict]:
    spec = chart.to_dict()
    return next(iter(spec["datasets"].values()))


def test_accuracy_chart_is_faceted_by_target_with_log_x_and_a_band() -> None:
    frame = _summary()
    spec = charts.accuracy_vs_size(frame).to_dict()
    assert spec["facet"]["field"] == "target"
    band, line = _layers(spec)[:2]
    assert band["mark"]["type"] == "area" and band["encoding"]["y2"]["field"] == "hi"
    assert line["encoding"]["x"]["scale"]["type"] == "log" and line["encoding"]["color"]["field"] == "source"
    assert len(_rows(charts.accuracy_vs_size(frame))) == len(frame)  # every row is plotted, none invented


def test_delta_charts_draw_a_zero_rule_and_signed_percent() -> None:
    frame = _summary(source="l2_1.5")
    for chart in (charts.delta_vs_size(frame), charts.delta_vs_epoch(frame.assign(epoch=1))):
        layers = _layers(chart.to_dict())
        assert any(layer["mark"]["type"] == "rule" and layer["encoding"]["y"] == {"datum": 0} for layer in layers)
        assert layers[0]["encoding"]["y"]["axis"]["format"].startswith("+")


def test_blocks_chart_colours_by_number_of_blocks_in_numeric_order() -> None:
    frame = _summary()
    frame = pd.concat([frame, frame.assign(blocks=9)])
    color = _layers(charts.accuracy_by_blocks(frame).to_dict())[1]["encoding"]["color"]
    assert color["field"] == "blocks" and color["sort"] == ["1", "3", "9"]


def test_every_source_gets_its_own_colour_and_natural_the_reference_grey() -> None:
    """Twelve sources (the demo cache's count): tableau10 alone gave `natural` the same blue as an eleventh."""
    sources = ["natural", *(f"l2_{e}" for e in (0.1, 0.22, 0.5, 1, 1.5)), *(f"linf_{e}" for e in (0.1, 2, 4, 8)),
               "gaussian_0.0079", "pgd1_l2_0.22"]
    frame = pd.concat([_summary(source=s, role=SourceRoles("natural").role_of(s)) for s in sources])
    scale = _layers(charts.accuracy_vs_size(frame).to_dict())[1]["encoding"]["color"]["scale"]
    colours = dict(zip(scale["domain"], scale["range"], strict=True))
    assert set(colours) == set(sources) and len(set(colours.values())) == len(sources)
    assert colours["natural"] == charts.NATURAL_COLOUR
    blocks = _layers(charts.accuracy_by_blocks(pd.concat([_summary(), _summary(blocks=9)])).to_dict())[1]
    assert blocks["encoding"]["color"]["scale"]["domain"] == ["1", "3", "9"]  # the legend keeps numeric order


def test_robustness_bars_call_clean_rows_clean() -> None:
    frame = pd.DataFrame({"source": ["natural", "natural"], "dataset": ["fmnist"] * 2, "norm": ["none", "l2"],
                          "eps": [0.0, 1.5], "steps": [0, 3], "accuracy": [0.9, 0.2], "n_images": [100, 100]})
    attacks = {row["attack"] for row in _rows(charts.robustness_bars(frame))}
    assert attacks == {"clean", "l2 ε=1.5 PGD(3)"}


def test_heatmap_frame_mean_pools_blocks_and_keeps_majority_labels() -> None:
    matrix = np.arange(24, dtype=np.float32).reshape(4, 6)
    cells = charts.heatmap_frame(matrix, np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1, 1, 1]), max_bins=2)
    assert len(cells) == 4
    top_left = cells[(cells.row_bin == 0) & (cells.col_bin == 0)].iloc[0]
    assert top_left["value"] == pytest.approx(matrix[:2, :3].mean())
    assert (top_left["row_label"], top_left["col_label"]) == (0, 0)
    assert len(charts.heatmap_frame(matrix, np.zeros(4, int), np.zeros(6, int), max_bins=60)) == 24  # no upsampling


@pytest.mark.parametrize("shape", [(50, 30), (123, 457), (7, 5)])
def test_fast_sorted_heatmap_matches_the_reference_route(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    matrix = rng.standard_normal(shape).astype(np.float32)
    train_labels, test_labels = rng.integers(0, 10, shape[0]), rng.integers(0, 10, shape[1])
    ref = sorted_standardized(matrix, train_labels, test_labels)
    expected = charts.heatmap_frame(ref.matrix, ref.train_labels, ref.test_labels, max_bins=20)
    fast = charts.sorted_heatmap_frame(matrix, train_labels, test_labels, max_bins=20)
    np.testing.assert_allclose(fast["value"], expected["value"], rtol=1e-5, atol=1e-7)
    pd.testing.assert_frame_equal(fast.drop(columns="value"), expected.drop(columns="value"), check_dtype=False)


def test_influence_heatmap_is_rects_one_panel_per_model() -> None:
    cells = charts.heatmap_frame(np.ones((4, 4), np.float32), np.zeros(4, int), np.zeros(4, int))
    spec = charts.influence_heatmap(pd.concat([cells.assign(model="robust"), cells.assign(model="natural")])).to_dict()
    assert spec["spec"]["mark"]["type"] == "rect" and spec["facet"]["column"]["field"] == "model"
    assert spec["spec"]["encoding"]["color"]["scale"]["domainMid"] == 0


def test_label_match_and_paper_charts_encode_what_they_claim() -> None:
    match = pd.DataFrame({"model": ["a", "a", "b", "b"], "k": [1, 2, 1, 2], "match": [0.8, 0.7, 0.5, 0.4]})
    enc = charts.label_match_chart(match).to_dict()["encoding"]
    assert enc["y"]["scale"]["domain"] == [0, 1] and enc["x"]["field"] == "k"
    plot = pd.DataFrame({"target": ["mnist"] * 2, "n_train": [100, 100], "model": ["natural"] * 2,
                         "origin": ["paper", "here"], "acc": [0.69, 0.70]})
    assert charts.paper_vs_here(plot).to_dict()["spec"]["encoding"]["strokeDash"]["field"] == "origin"


# --- app.paper ----------------------------------------------------------------------------------------------
def with_columns(sources: pd.DataFrame) -> pd.DataFrame:
    """A source_models frame with the kind/norm/eps/steps columns the cache records (compute's parser)."""
    from compute.records import constraint_columns

    cols = [constraint_columns(c, s) for c, s in zip(sources["constraint_"], sources["attack_steps"], strict=True)]
    return pd.concat([sources, pd.DataFrame(cols, index=sources.index)], axis=1)


SOURCES = with_columns(pd.DataFrame({
    "name": ["natural", "l2_1.5", "linf_0.1", "linf_0.2", "pgd1_l2_1.5", "gaussian_0.054"],
    "arch": ["small_resnet"] * 6,
    "constraint_": ["none", "l2:1.5", "linf:0.1", "linf:0.2", "l2:1.5", "gaussian:0.054"],
    "attack_steps": [0, 3, 3, 3, 1, 0],
}))


def test_table7_reads_as_fractions_with_every_cell() -> None:
    table = paper.paper_table()
    assert len(table) == 60 * 5 and table["paper_acc"].between(0, 1).all()
    row = table[(table.target == "cifar10") & (table.n_train == 3200) & (table.model == "l2_eps3")]
    assert row["paper_acc"].iloc[0] == pytest.approx(0.8756)


def facts(sources: pd.DataFrame, meta: dict | None = None) -> list[SourceFacts]:
    """What CacheReader.source_roles reads from a source_models frame (no roles recorded unless `meta` says)."""
    return [SourceFacts(r.name, r.kind, r.norm, r.eps, int(r.steps), (meta or {}).get(r.name, {}))
            for r in sources.itertuples()]


def test_an_older_cache_maps_its_sources_to_table7_columns_as_before() -> None:
    """derive_roles (a cache whose sources stage recorded no roles) keeps the mapping "Paper vs here" made then."""
    assert derive_roles(facts(SOURCES)).columns == {
        "natural": "natural", "l2_1.5": "l2_eps3", "linf_0.1": "linf_eps4_255", "linf_0.2": "linf_eps8_255"}
    imagenet = with_columns(pd.DataFrame({"name": ["nat", "l2_3", "linf_8", "linf_4"], "arch": ["resnet50"] * 4,
                                          "constraint_": ["none", "l2:3", "linf:8/255", "linf:4/255"],
                                          "attack_steps": [0, 20, 20, 20]}))
    assert derive_roles(facts(imagenet)).columns == {"nat": "natural", "l2_3": "l2_eps3", "linf_4": "linf_eps4_255",
                                                     "linf_8": "linf_eps8_255"}


def test_comparison_lines_up_cells_and_computes_the_difference() -> None:
    summary = pd.DataFrame({"source": ["l2_1.5", "l2_1.5", "gaussian_0.054"], "target": ["mnist5k", "mnist5k", "mnist5k"],
                            "n_train": [100, 100, 100], "blocks": [3, 1, 3], "n_seeds": [3, 3, 3],
                            "mean": [0.80, 0.70, 0.75], "sd": [0.01] * 3, "lo": [0.78, 0.68, 0.7], "hi": [0.82, 0.72, 0.8]})
    compared = paper.comparison(summary, SOURCES, derive_roles(facts(SOURCES)), blocks=3)
    assert len(compared) == 4 * 60
    cell = compared.dropna(subset=["here_acc"])
    assert len(cell) == 1 and cell["model"].iloc[0] == "l2_eps3" and cell["target"].iloc[0] == "mnist"
    assert cell["diff"].iloc[0] == pytest.approx(0.80 - 0.8383)  # here minus the paper's 83.83% (mnist, 100, L2)
    assert cell["arch"].iloc[0] == "small_resnet"


@pytest.mark.parametrize("models", [("robust", "natural"), ("analogue", "best", "natural")])
def test_influence_heatmap_panels_fit_the_content_width(models: tuple[str, ...]) -> None:
    """Three models (natural, paper analogue, best budget) used to overflow the page: the panels share one width."""
    cells = charts.heatmap_frame(np.ones((4, 4), np.float32), np.zeros(4, int), np.zeros(4, int))
    spec = charts.influence_heatmap(pd.concat([cells.assign(model=m) for m in models])).to_dict()
    assert len(models) * spec["spec"]["width"] <= charts.HEATMAP_ROW_WIDTH and spec["spec"]["width"] >= 150
