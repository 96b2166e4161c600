"""The demo in headless Chromium: upload through the page, click an example, draw, upload a broken file.

Screenshots go to test-artifacts/ (gitignored). The page must make no request beyond the demo server.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compute.cache import CacheReader
from tests.helpers.three_models import BEST_NOTE, BEST_SOURCE

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, url: str) -> Iterator[object]:
    """A fresh page on the demo at `url`; records console errors and requests that leave the demo server."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.console_errors, page.foreign_requests = [], []
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda req: None if req.url.startswith(url) or req.url.startswith("data:")
            else page.foreign_requests.append(req.url))
    page.goto(url)
    page.wait_for_selector("#upload input[type=file]", state="attached", timeout=TIMEOUT_MS)
    yield page
    context.close()


@pytest.fixture
def page(browser, demo_server: str) -> Iterator[object]:
    """The tiny cache's demo: two models (the paper analogue, which is also the best budget, and natural)."""
    yield from open_page(browser, demo_server)


@pytest.fixture
def three_page(browser, three_model_server: str) -> Iterator[object]:
    """The demo over a cell of three models: the paper analogue, a distinct best budget, natural."""
    yield from open_page(browser, three_model_server)


@pytest.fixture(scope="module")
def test_image(demo_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    reader = CacheReader(demo_cache)
    try:
        frame = reader.thumbnails("digits", "test")
    finally:
        reader.close()
    path = tmp_path_factory.mktemp("browser") / "digit.png"
    path.write_bytes(bytes(frame["png"].iloc[0]))
    return path


def wait_for_results(page, k: int = 5, columns: int = 2) -> None:
    """Each shown model's gallery holds its k neighbours as one decoded picture, its view one, and the summary line is
    there (`k` stays for the callers: the picture's width says k, tests/test_demo_composite.py checks it)."""
    loaded = "Array.from(document.querySelectorAll('{sel} img')).filter(i => i.complete && i.naturalWidth > 0).length"
    for n in range(1, columns + 1):
        page.wait_for_function(f"{loaded.format(sel=f'#model-{n}-gallery')} >= 1", timeout=TIMEOUT_MS)
        page.wait_for_function(f"{loaded.format(sel=f'#model-{n}-view')} == 1", timeout=TIMEOUT_MS)
    page.wait_for_function("document.querySelector('#summary').innerText.includes('neighbours share')",
                           timeout=TIMEOUT_MS)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.wait_for_timeout(300)  # let the gallery images finish painting
    page.screenshot(path=str(path), full_page=True)
    return path


def test_upload_renders_both_models_neighbours(page, test_image: Path) -> None:
    page.locator("#upload input[type=file]").set_input_files(str(test_image))
    wait_for_results(page)
    summary = page.locator("#summary").inner_text()
    assert "paper analogue, best budget on digits" in summary and "of 5" in summary
    assert re.search(r"5 neighbours share the predicted label, (\d (more|fewer) than|as many as) natural;", summary)
    assert "Paper analogue, best budget on digits: l2_1.5" in page.locator("#model-1-header").inner_text()
    assert "Natural: natural" in page.locator("#model-2-header").inner_text()
    assert not page.locator("#model-3").is_visible()  # two models: the third column is hidden, not empty
    assert page.locator("#model-1-label").inner_text().strip() and page.locator("#model-2-label").inner_text().strip()
    assert page.locator("#model-1-view img").count() == 1
    captions = page.locator("#model-1-gallery").inner_text()
    assert "·" in captions  # "label · score" captions
    assert screenshot(page, "demo.png").stat().st_size > 10_000
    assert not page.console_errors, page.console_errors
    assert not page.foreign_requests, f"the page reached beyond the demo server: {page.foreign_requests}"


def test_clicking_an_example_answers(page) -> None:
    page.locator("#examples img").first.click()
    wait_for_results(page)
    assert "Answered in" in page.locator("#status").inner_text()


def test_broken_upload_shows_a_message(page, tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    broken = tmp_path / "broken.png"
    broken.write_bytes(buffer.getvalue()[:2000])
    page.locator("#upload input[type=file]").set_input_files(str(broken))
    page.wait_for_function("document.querySelector('#status').innerText.includes('truncated or corrupt')",
                           timeout=TIMEOUT_MS)
    assert "Traceback" not in page.content()
    screenshot(page, "demo-broken-upload.png")


def test_drawing_a_digit(page) -> None:
    page.get_by_role("tab", name="Draw").click()
    page.locator("#sketch button[aria-label=Brush]").click()
    canvas = page.locator("#sketch canvas").first
    canvas.wait_for(timeout=TIMEOUT_MS)
    box = canvas.bounding_box()
    x, top = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.2
    page.mouse.move(x, top)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x, top + box["height"] * 0.06 * step)
    page.mouse.up()
    page.get_by_role("button", name="Find neighbours of the drawing").click()
    wait_for_results(page)
    assert page.locator("#status").inner_text().startswith("Drawing")
    screenshot(page, "demo-drawing.png")


def test_three_models_side_by_side(three_page, test_image: Path) -> None:
    """Issue 14: the paper analogue, the best budget (with why) and natural, each with its own column."""
    page = three_page
    page.locator("#upload input[type=file]").set_input_files(str(test_image))
    wait_for_results(page, columns=3)
    headers = [page.locator(f"#model-{n}-header").inner_text() for n in (1, 2, 3)]
    assert "Paper analogue: l2_1.5" in headers[0]
    assert f"Best budget on digits: {BEST_SOURCE}" in headers[1] and BEST_NOTE in headers[1]
    assert "Natural: natural" in headers[2]
    assert all(page.locator(f"#model-{n}").is_visible() for n in (1, 2, 3))
    tops = [page.locator(f"#model-{n}-header").bounding_box()["y"] for n in (1, 2, 3)]
    views = [page.locator(f"#model-{n}-view").bounding_box()["y"] for n in (1, 2, 3)]
    assert max(tops) - min(tops) < 2 and max(views) - min(views) < 2  # the reason does not push one column down
    cell = page.locator("#cell input").input_value()
    assert cell.startswith("digits · 40 images") and "fast" in cell
    summary = page.locator("#summary").inner_text()
    assert summary.count("than natural") + summary.count("as many as natural") == 2
    screenshot(page, "demo-three-models.png")
    assert not page.console_errors, page.console_errors
