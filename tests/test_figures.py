"""`rtx figures` and the explorer's SVG/PNG downloads: every file renders, carries its provenance, and each
figure's spec is the one the explorer's page draws by default (same chart function, same rows)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app import figure_files, figures, ui
from app.data import Snapshot
from app.explorer import PAGES
from compute.cli import main
from tests.helpers.explorer_cache import write_explorer_cache

APP = str(Path(__file__).resolve().parents[1] / "app" / "explorer.py")
# figure -> (explorer page, index of the chart on it); together the paper's set the issue lists
ON_PAGE = {"fig2a_accuracy_vs_size": ("better", 0), "fig2b_delta_vs_size": ("better", 1),
           "fig3a_accuracy_vs_epoch": ("faster", 0), "fig3b_delta_vs_epoch": ("faster", 1),
           "fig4a_accuracy_by_blocks": ("blocks", 0), "fig4b_blocks_delta": ("blocks", 1),
           "fig5_constraint_deltas": ("constraint", 0), "fig7a_influence_heatmap": ("influence", 1),
           "fig7b_label_match": ("influence", 0), "budget_curve": ("budget", 0), "table7_paper_vs_here": ("paper", 0)}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_explorer_cache(tmp_path_factory.mktemp("figures") / "cache")


@pytest.fixture(scope="module")
def made(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`rtx figures` run once over the synthetic cache: (output folder, its stdout)."""
    out = tmp_path_factory.mktemp("out") / "figures"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RTX_CACHE", raising=False)
        assert main(["figures", "--cache", str(cache), "--out", str(out), "--no-progress"]) == 0
    return out, str(out)


@pytest.fixture(scope="module")
def figure_set(cache: Path) -> dict[str, figures.Figure]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RTX_CACHE", str(cache))
        from app.data import snapshot

        snap: Snapshot = snapshot(newest=True)
        return {f.name: f for f in figures.figures(snap)}


def test_the_paper_set_is_written_as_svg_pdf_csv_and_caption(made: tuple[Path, str], cache: Path) -> None:
    out, _ = made
    for name in ON_PAGE:
        svg, pdf, csv, caption = (out / f"{name}.{ext}" for ext in ("svg", "pdf", "csv", "caption.txt"))
        root = ET.fromstring(svg.read_bytes())  # well-formed XML ...
        assert root.tag.endswith("svg") and root.iter("{http://www.w3.org/2000/svg}path"), name  # ... with marks
        assert len(list(root.iter("{http://www.w3.org/2000/svg}path"))) > 5, name
        body = pdf.read_bytes()
        assert body.startswith(b"%PDF-") and b"/Type /Page" in body and body.rstrip().endswith(b"%%EOF"), name
        assert not pd.read_csv(csv).empty, name
        line = caption.read_text().strip()
        assert f"Cache: {cache}" in line and f"rtx figures --cache {cache}" in line, line
        assert figure_files.embedded_provenance(svg.read_bytes(), "svg") == line


def test_captions_count_the_runs_behind_each_curve(made: tuple[Path, str], figure_set) -> None:
    """'N points from M runs': M is the sum of the plotted rows' seeds, read back from the CSV."""
    out, _ = made
    for name in ("fig2a_accuracy_vs_size", "fig2b_delta_vs_size", "fig4a_accuracy_by_blocks"):
        runs = int(re.search(r"from (\d+) runs", (out / f"{name}.caption.txt").read_text()).group(1))
        assert runs == int(pd.read_csv(out / f"{name}.csv")["n_seeds"].sum()) > 0


@pytest.mark.parametrize("name", list(ON_PAGE))
def test_each_figure_is_the_explorer_pages_chart(monkeypatch, cache: Path, figure_set, name: str) -> None:
    """The spec `st.altair_chart` would send for the figure equals the page's default chart, data included (the
    datasets are named by a hash of their rows)."""
    page, index = ON_PAGE[name]
    monkeypatch.setenv("RTX_CACHE", str(cache))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at = at.switch_page(next(p for p, _, url in PAGES if url == page)).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = at.get("vega_lite_chart")[index].proto
    drawn = json.loads(shown.spec)
    drawn.pop("autosize", None)  # added by st.vega_lite_chart (container width), not part of the chart
    ours = ui._convert_altair_to_vega_lite_spec(figure_set[name].chart())
    datasets = ours.pop("datasets", {})
    assert drawn == ours
    assert sorted(d.name for d in shown.datasets) == sorted(datasets)


def test_every_chart_in_the_explorer_offers_svg_and_png(monkeypatch, cache: Path) -> None:
    """Beside each chart's CSV: an SVG and a PNG button, one pair per chart on every page."""
    monkeypatch.setenv("RTX_CACHE", str(cache))
    for path, _, url in PAGES:
        at = AppTest.from_file(APP, default_timeout=60).run().switch_page(path).run()
        labels = [b.proto.label for b in at.get("download_button")]
        charts = len(at.get("vega_lite_chart"))
        assert labels.count("SVG") == labels.count("PNG") == charts, (url, labels)
        names = [b.proto.label for b in at.get("download_button")]
        assert all(names[i - 1].startswith("Download") for i, n in enumerate(names) if n == "SVG"), url


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_download_files_render_and_carry_provenance(cache: Path, figure_set, fmt: str) -> None:
    """What a click on SVG / PNG returns (ui's lambda calls `render` on the chart): a valid file, provenance inside."""
    line = figure_files.provenance(cache, "Fig. 2a: a caption. 36 points from 108 runs.", "rtx explore")
    assert "36 points from 108 runs" in line and f"Cache: {cache} (snapshot 20" in line
    body = figure_files.render(figure_set["fig2a_accuracy_vs_size"].chart().to_dict(), fmt, line)
    if fmt == "png":
        assert body.startswith(PNG_MAGIC)
        import io

        from PIL import Image

        with Image.open(io.BytesIO(body)) as image:
            assert image.width > 1000  # PNG_SCALE 2 of a three-facet chart about 900 px wide
    else:
        ET.fromstring(body)
    assert figure_files.embedded_provenance(body, fmt) == line


def test_an_empty_cache_is_one_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["figures", "--cache", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rtx precompute --preset demo" in err
    assert not (tmp_path / "out").exists()


def test_global_cache_flag_works_too(cache: Path, tmp_path: Path, monkeypatch) -> None:
    """`rtx --cache DIR figures --out ...` (the flag every other command takes before its name)."""
    monkeypatch.delenv("RTX_CACHE", raising=False)
    assert main(["--cache", str(cache), "figures", "--out", str(tmp_path / "f"), "--no-progress"]) == 0
    assert (tmp_path / "f" / "fig2a_accuracy_vs_size.svg").exists()
