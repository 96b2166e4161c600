"""The demo in headless Chromium: upload through the page, click an example, draw, upload a broken file.

Screenshots go to test-artifacts/ (gitignored). The page must make no request beyond the demo server.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compute.cache import CacheReader

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


@pytest.fixture
def page(browser, demo_server: str) -> Iterator[object]:
    """A fresh page on the demo; records console errors and requests that leave the demo server."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.console_errors, page.foreign_requests = [], []
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda req: None if req.url.startswith(demo_server) or req.url.startswith("data:")
            else page.foreign_requests.append(req.url))
    page.goto(demo_server)
    page.wait_for_selector("#upload input[type=file]", state="attached", timeout=TIMEOUT_MS)
    yield page
    context.close()


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


def wait_for_results(page, k: int = 5) -> None:
    """Both galleries hold k decoded images, both model views one, and the summary line is there."""
    loaded = "Array.from(document.querySelectorAll('{sel} img')).filter(i => i.complete && i.naturalWidth > 0).length"
    for side in ("robust", "natural"):
        page.wait_for_function(f"{loaded.format(sel=f'#{side}-gallery')} >= {k}", timeout=TIMEOUT_MS)
        page.wait_for_function(f"{loaded.format(sel=f'#{side}-view')} == 1", timeout=TIMEOUT_MS)
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
    assert "robust" in summary and "natural" in summary and "of 5" in summary
    assert page.locator("#robust-label").inner_text().strip() and page.locator("#natural-label").inner_text().strip()
    assert page.locator("#robust-view img").count() == 1
    captions = page.locator("#robust-gallery").inner_text()
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
