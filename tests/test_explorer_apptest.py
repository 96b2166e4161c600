"""The explorer under streamlit.testing: every page on the synthetic cache and on an empty one, chart data
checked against the runs it claims to plot, and refresh to a newer snapshot without restarting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from app.data import FILL_COMMAND
from app.explorer import PAGES
from compute.cache import CacheWriter
from compute.records import CurvePoint, RunRecord
from tests.helpers.explorer_cache import SEEDS, synthetic_acc, write_explorer_cache

APP = str(Path(__file__).resolve().parents[1] / "app" / "explorer.py")
CHARTS = {"overview": 1, "better": 2, "faster": 2, "blocks": 2, "constraint": 2, "shape-texture": 2,
          "influence": 2, "featviz": 1, "paper": 1, "budget": 1}
TITLES = {"overview": "What is in the cache?", "better": "Do robust models transfer better?",
          "faster": "Do robust models transfer faster?", "influence": "Which training images influence a prediction?"}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic cache for the read-only tests of this module (building it takes a second or two)."""
    return write_explorer_cache(tmp_path_factory.mktemp("explorer") / "cache")


def open_page(monkeypatch: pytest.MonkeyPatch, root: Path, page: str) -> AppTest:
    monkeypatch.setenv("RTX_CACHE", str(root))
    at = AppTest.from_file(APP, default_timeout=60).run()
    path = next(p for p, _, url in PAGES if url == page)
    return at.switch_page(path).run()


def chart_data(at: AppTest) -> list[pd.DataFrame]:
    """The rows each Altair chart on the page was sent (one frame per chart)."""
    frames = []
    for chart in at.get("vega_lite_chart"):
        parts = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets]
        frames.append(pd.concat(parts) if parts else pd.DataFrame())
    return frames


@pytest.mark.parametrize("page", [url for _, _, url in PAGES])
def test_every_page_renders_on_the_synthetic_cache(monkeypatch, shared_cache: Path, page: str) -> None:
    at = open_page(monkeypatch, shared_cache, page)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title and at.title[0].value
    assert len(at.get("vega_lite_chart")) == CHARTS[page]
    assert all(not frame.empty for frame in chart_data(at))
    assert at.caption, "every page says what it plots"
    assert at.get("download_button"), "every page offers its rows as CSV"
    assert not [i.value for i in at.info if FILL_COMMAND in i.value], "no empty state on a full cache"


@pytest.mark.parametrize("page", [url for _, _, url in PAGES])
def test_every_page_names_the_fill_command_on_an_empty_cache(monkeypatch, tmp_path: Path, page: str) -> None:
    at = open_page(monkeypatch, tmp_path / "nothing-here", page)
    assert not at.exception, [e.value for e in at.exception]
    assert any(FILL_COMMAND in i.value for i in at.info)
    assert not at.get("vega_lite_chart")


def _expected_delta(source: str, target: str, n_train: int, blocks: int) -> tuple[float, float, float]:
    diffs = np.array([synthetic_acc(source, target, n_train, blocks, i) - synthetic_acc("natural", target, n_train,
                                                                                         blocks, i)
                      for i in range(len(SEEDS))])
    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    return diffs.mean(), diffs.mean() - half, diffs.mean() + half


def test_delta_chart_is_robust_minus_natural_paired_by_seed(monkeypatch, shared_cache: Path) -> None:
    at = open_page(monkeypatch, shared_cache, "better")
    accuracy, delta = chart_data(at)
    cell = delta[(delta["source"] == "linf_0.2") & (delta["target"] == "mnist5k") & (delta["n_train"] == 50)]
    assert len(cell) == 1 and int(cell["blocks"].iloc[0]) == 3 and int(cell["n_seeds"].iloc[0]) == 3
    mean, lo, hi = _expected_delta("linf_0.2", "mnist5k", 50, 3)
    assert cell["mean"].iloc[0] == pytest.approx(mean, abs=1e-9)
    assert (cell["lo"].iloc[0], cell["hi"].iloc[0]) == pytest.approx((lo, hi), abs=1e-9)
    assert set(delta["source"]) == {"l2_1.5", "linf_0.1", "linf_0.2", "pgd1_l2_1.5", "gaussian_0.054"}
    acc = accuracy[(accuracy["source"] == "l2_1.5") & (accuracy["target"] == "digits") & (accuracy["n_train"] == 100)]
    assert acc["mean"].iloc[0] == pytest.approx(np.mean([synthetic_acc("l2_1.5", "digits", 100, 3, i) for i in range(3)]))


def test_filters_restrict_the_plotted_rows(monkeypatch, shared_cache: Path) -> None:
    at = open_page(monkeypatch, shared_cache, "better")
    at.multiselect(key="better-targets").set_value(["digits"])
    at.selectbox(key="better-blocks").set_value(1)
    at.run()
    accuracy, delta = chart_data(at)
    assert set(accuracy["target"]) == {"digits"} and set(accuracy["blocks"]) == {1}
    assert set(delta["source"]) == {"l2_1.5"}


def test_blocks_delta_is_three_minus_one(monkeypatch, shared_cache: Path) -> None:
    at = open_page(monkeypatch, shared_cache, "blocks")
    _, delta = chart_data(at)
    assert set(delta["source"]) == {"l2_1.5"}  # the paper's Fig. 4 source: L2, PGD(k > 1)
    cell = delta[(delta["target"] == "mnist5k") & (delta["n_train"] == 20)]
    expected = np.mean([synthetic_acc("l2_1.5", "mnist5k", 20, 3, i) - synthetic_acc("l2_1.5", "mnist5k", 20, 1, i)
                        for i in range(3)])
    assert cell["mean"].iloc[0] == pytest.approx(expected, abs=1e-9)


def test_constraint_page_compares_l2_with_linf_and_small_with_large_eps(monkeypatch, shared_cache: Path) -> None:
    at = open_page(monkeypatch, shared_cache, "constraint")
    fig5, fig8 = chart_data(at)
    assert fig5["source"].nunique() == 3  # l2 - linf small, l2 - linf large, linf small - linf large
    l2_vs_large = fig5[fig5["source"].str.startswith("l2_1.5") & fig5["source"].str.contains("linf_0.2")]
    assert l2_vs_large["mean"].iloc[0] == pytest.approx(0.03, abs=0.02)  # bonuses 0.06 vs 0.03, plus seed noise
    assert any("PGD(1)" in s for s in fig8["source"]) and any("Gaussian" in s for s in fig8["source"])


def test_influence_page_shows_both_models_and_their_label_match(monkeypatch, shared_cache: Path) -> None:
    at = open_page(monkeypatch, shared_cache, "influence")
    match, heat = chart_data(at)  # label match over seeds (one seed here: no interval), then Fig. 7a
    assert set(heat["model"]) == {"l2_1.5", "natural"}
    assert (match["n_seeds"] == 1).all() and match["lo"].isna().all()
    assert match.groupby("model")["match"].first()["l2_1.5"] > match.groupby("model")["match"].first()["natural"]
    at.toggle(key="influence-per-class").set_value(False).run()
    pagination = at.get("pagination")
    assert pagination and pagination[0].num_pages == 5  # 30 test images, 6 per page
    pagination[0].set_value(2)
    at.run()
    assert not at.exception


def test_paper_page_lines_up_table7_with_the_cache(monkeypatch, shared_cache: Path) -> None:
    at = open_page(monkeypatch, shared_cache, "paper")
    (plot,) = chart_data(at)
    here = plot[plot["origin"] == "here"]
    assert set(here["model"]) == {"natural", "l2_eps3", "linf_eps4_255", "linf_eps8_255"}
    assert set(here["n_train"]) == {100} and set(here["target"]) == {"mnist"}  # mnist5k counts as mnist
    l2 = here[here["model"] == "l2_eps3"]["acc"].iloc[0]
    assert l2 == pytest.approx(np.mean([synthetic_acc("l2_1.5", "mnist5k", 100, 3, i) for i in range(3)]))
    recipe, table = (frame.value for frame in at.dataframe)
    assert {"augmentation", "frozen BatchNorm", "new FC layer"} <= set(recipe["setting"])  # the recipe, then Table 7
    assert len(table) == 4 * 60  # every Table 7 cell of the four ImageNet sources, matched or greyed


def _publish_fmnist(root: Path, n_train: int = 20) -> None:
    with CacheWriter(root) as writer:  # what `rtx precompute` does while the explorer is open
        for i, seed in enumerate(SEEDS):
            for source in ("natural", "l2_1.5"):
                writer.record_run(RunRecord(f"new-{source}-{n_train}-{i}", "done", source, "fmnist", n_train, seed, 3, 9,
                                            final_test_acc=0.5 + 0.1 * (source != "natural") + 0.01 * i),
                                  [CurvePoint(9, 0.5, 0.1)])


def test_pages_pick_up_a_newer_snapshot_without_restart(monkeypatch, tiny_cache: Path) -> None:
    monkeypatch.setattr("app.data.ADOPT_SECONDS", 0.0)  # adopt at once (the wait has its own test below)
    at = open_page(monkeypatch, tiny_cache, "better")
    assert "fmnist" not in at.multiselect(key="better-targets").options
    _publish_fmnist(tiny_cache)
    at.run()
    assert "fmnist" in at.multiselect(key="better-targets").options
    accuracy, delta = chart_data(at)
    new = delta[(delta["target"] == "fmnist") & (delta["source"] == "l2_1.5")]
    assert new["mean"].iloc[0] == pytest.approx(0.1)


def test_a_new_snapshot_waits_for_adopt_seconds_or_the_button(monkeypatch, tiny_cache: Path) -> None:
    """While a precompute publishes every second, pages keep reading the adopted snapshot for ADOPT_SECONDS
    (their cached reads stay valid); "Show new results" adopts the newest at once."""
    monkeypatch.setattr("app.data.ADOPT_SECONDS", 3600.0)
    at = open_page(monkeypatch, tiny_cache, "better")
    _publish_fmnist(tiny_cache)
    at.run()
    assert "fmnist" not in at.multiselect(key="better-targets").options  # adopted less than ADOPT_SECONDS ago
    assert at.button(key="redraw_now")  # the watcher says new results exist and offers them
    at.button(key="redraw_now").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "fmnist" in at.multiselect(key="better-targets").options
    monkeypatch.setattr("app.data.ADOPT_SECONDS", 0.0)  # the wait is over: a plain rerun adopts the next one
    _publish_fmnist(tiny_cache, n_train=40)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "redraw_now" not in [b.key for b in at.button]  # nothing newer than what the page shows
    assert 40 in set(chart_data(at)[0]["n_train"])


def test_pages_keep_working_while_a_writer_publishes(monkeypatch, tiny_cache: Path) -> None:
    """A second process records a run and publishes a snapshot every 20 ms while pages rerun (rtx precompute)."""
    monkeypatch.setattr("app.data.ADOPT_SECONDS", 0.0)  # every rerun reads the newest snapshot: the hard case
    at = open_page(monkeypatch, tiny_cache, "faster")
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.slow_writer", str(tiny_cache), "40", "0.02"],
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()  # the writer holds the database and has published at least once
        for page in ("faster", "better", "overview", "influence", "faster"):
            at.switch_page(next(p for p, _, url in PAGES if url == page)).run()
            assert not at.exception, [e.value for e in at.exception]
            assert [t.value for t in at.title] == [TITLES[page]], page  # the page asked for, not a blank or another
            assert len(at.get("vega_lite_chart")) == CHARTS[page], page
            assert all(not frame.empty for frame in chart_data(at)), page
    finally:
        assert proc.wait(timeout=60) == 0
    at.switch_page(next(p for p, _, url in PAGES if url == "better")).run()
    assert "t" in at.multiselect(key="better-targets").options  # the writer's target arrived without restart


def test_explorer_command_is_offline_local_and_prefixable() -> None:
    from compute.cli import build_parser, explorer_command

    argv = explorer_command(8600, "127.0.0.1", "/rtx/explorer/")
    flags = dict(zip(argv[5::2], argv[6::2], strict=False))
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4] == APP
    assert flags["--browser.gatherUsageStats"] == "false" and flags["--server.headless"] == "true"
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8600"
    assert flags["--server.baseUrlPath"] == "rtx/explorer"
    assert "--server.baseUrlPath" not in explorer_command(8600)
    assert flags["--runner.postScriptGC"] == "false"  # a full GC after every rerun cost 0.1 s of the shared GIL
    from streamlit import config

    assert {flag[2:] for flag in flags} <= set(config.get_config_options())  # real option names, no typo
    args = build_parser().parse_args(["explore", "--port", "8600"])
    assert (args.host, args.port, args.base_url_path) == ("127.0.0.1", 8600, None)


def test_streamlit_config_file_matches_rtx_explore_flags() -> None:
    """`streamlit run app/explorer.py` from the repository root reads .streamlit/config.toml: the same settings."""
    import tomllib

    from compute.cli import explorer_command

    argv = explorer_command(8600)
    flags = dict(zip(argv[5::2], argv[6::2], strict=False))
    config = tomllib.loads((Path(APP).parents[1] / ".streamlit" / "config.toml").read_text())
    written = {f"--{section}.{name}": str(value).lower() for section, options in config.items()
               for name, value in options.items()}
    assert written and all(flags.get(flag) == value for flag, value in written.items()), (written, flags)
    assert "--runner.postScriptGC" in written


def test_watcher_redraws_new_results_at_most_every_min_redraw_seconds() -> None:
    from app.explorer import MIN_REDRAW_SECONDS, REFRESH_SECONDS, redraw_due

    assert REFRESH_SECONDS < MIN_REDRAW_SECONDS
    assert redraw_due(True, drawn_at=100.0, now=100.0 + MIN_REDRAW_SECONDS)
    assert not redraw_due(True, drawn_at=100.0, now=100.0 + MIN_REDRAW_SECONDS - 1)  # drawn too recently
    assert not redraw_due(False, drawn_at=0.0, now=1e9)  # auto-refresh switched off: only the button redraws


# --- two influence methods on one subset (issue 14: they were merged into one pair) ---------------------------
@pytest.fixture(scope="module")
def two_method_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers.influence_methods import add_method

    root = write_explorer_cache(tmp_path_factory.mktemp("two-methods") / "cache")
    add_method(root, "tracincp")
    return root


def test_influence_page_keeps_methods_apart(monkeypatch, two_method_cache: Path) -> None:
    at = open_page(monkeypatch, two_method_cache, "influence")
    assert not at.exception, [e.value for e in at.exception]
    match, heat = chart_data(at)[:2]
    assert set(heat["model"]) == {"l2_1.5", "natural"}
    assert len(match) == 2 * 5, "one label-match curve (k = 1..5) per model, for one method"
    assert any("k = 1..5:" in c.value for c in at.caption), [c.value for c in at.caption]


def test_influence_page_compares_methods_on_one_subset(monkeypatch, two_method_cache: Path) -> None:
    at = open_page(monkeypatch, two_method_cache, "influence")
    methods = at.selectbox(key="influence-method")
    assert set(methods.options) == {"fc-exact, cut-off 0.05", "tracincp, cut-off 0.05"}
    match, heat, by_method, overlap = chart_data(at)
    assert set(by_method["method"]) == set(methods.options) and len(by_method) == 2 * 2 * 5
    table = at.dataframe[0].value
    exact = table[table["method"] == "fc-exact, cut-off 0.05"]
    assert exact["spearman"].tolist() == pytest.approx([1.0, 1.0]) and (exact["overlap@5"] == 1.0).all()
    approx = table[table["method"] == "tracincp, cut-off 0.05"]
    assert ((approx["spearman"] > 0.3) & (approx["spearman"] < 0.999)).all(), approx
    assert set(overlap["k"]) == {1, 5, 10}
    methods.set_value("tracincp, cut-off 0.05").run()
    assert not at.exception
    assert any("tracincp, cut-off 0.05" in c.value for c in at.caption)
