"""End to end: `rtx explore` on a free localhost port behind a URL prefix, every page in headless Chromium.

Each page must show its title, then its charts (Vega renders a canvas or svg) or images, with no Streamlit
exception element and no browser console error. Screenshots go to test-artifacts/explorer/ (gitignored).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "explorer"
PREFIX = "rtx/explorer"  # served under a path prefix, as behind a reverse proxy
PAGES = {  # url path -> (title text, number of charts, needs images)
    "overview": ("What is in the cache?", 1, True),
    "better": ("Do robust models transfer better?", 2, False),
    "faster": ("Do robust models transfer faster?", 2, False),
    "blocks": ("How many blocks should be fine-tuned?", 2, False),
    "constraint": ("Which constraint transfers best?", 2, False),
    "shape-texture": ("Does the robust advantage survive losing texture?", 2, False),
    "influence": ("Which training images influence a prediction?", 2, True),
    "featviz": ("What do the models' features look like?", 0, True),
    "paper": ("The paper's numbers vs this cache", 1, False),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rtx explore exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout} s")


@contextlib.contextmanager
def _explore(root: Path, logs: Path) -> Iterator[str]:
    """`rtx explore` over `root` on a free port under PREFIX; yields its base URL, stops it on exit."""
    port = _free_port()
    log = open(logs / "explore.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "compute.cli", "--cache", str(root), "explore", "--port", str(port),
                             "--base-url-path", PREFIX], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: teardown stops rtx and streamlit
    base = f"http://127.0.0.1:{port}/{PREFIX}"
    try:
        _wait_healthy(f"{base}/_stcore/health", proc)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, cache root) of `rtx explore` serving a synthetic cache under PREFIX."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium)")
    from tests.helpers.explorer_cache import write_explorer_cache
    from tests.helpers.influence_methods import add_method

    root = write_explorer_cache(tmp_path_factory.mktemp("explorer") / "cache")
    add_method(root, "tracincp")  # a second influence method on the same fine-tunes: the methods-compared view
    with _explore(root, tmp_path_factory.mktemp("logs")) as base:
        yield base, root


@pytest.fixture(scope="module")
def explorer_url(served: tuple[str, Path]) -> str:
    return served[0]


@pytest.fixture(scope="module")
def browser(explorer_url: str):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        yield browser
        browser.close()


@pytest.mark.parametrize("url_path", list(PAGES))
def test_page_renders_without_errors(explorer_url: str, browser, url_path: str) -> None:
    """Open the app at its prefix, follow the sidebar link (client-side routing, as a user does), check the page."""
    from app.explorer import PAGES as NAV

    nav_title = next(title for _, title, url in NAV if url == url_path)
    title, n_charts, needs_images = PAGES[url_path]
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console: {msg.text} {msg.location}") if msg.type == "error" else None)
    page.on("pageerror", lambda err: errors.append(f"pageerror: {err}"))
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    try:
        page.goto(f"{explorer_url}/")
        page.get_by_role("heading", name=PAGES["overview"][0]).wait_for(timeout=30_000)
        if url_path != "overview":
            page.locator("[data-testid='stSidebarNav']").get_by_role("link", name=nav_title, exact=True).click()
        page.get_by_role("heading", name=title).wait_for(timeout=30_000)
        assert page.url.rstrip("/").endswith(f"/{PREFIX}" if url_path == "overview" else f"/{PREFIX}/{url_path}")
        if n_charts:
            page.wait_for_function(
                f"document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length >= {n_charts}",
                timeout=30_000)
        if needs_images:
            page.wait_for_selector("[data-testid='stImage'] img", timeout=30_000)
        page.wait_for_timeout(1_000)  # let the last deltas of the run arrive
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{url_path}.png"), full_page=True)
        if url_path == "influence":  # click-to-enlarge: the popover shows the top five per model
            page.get_by_role("button", name="enlarge").first.click()
            page.get_by_text("top-5 influential training images").first.wait_for(timeout=10_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "influence-enlarged.png"))
        exceptions = page.locator("[data-testid='stException']")
        assert exceptions.count() == 0, exceptions.first.inner_text()
        assert not errors, errors
    finally:
        page.close()


def test_influence_methods_compared_view(explorer_url: str, browser) -> None:
    """Two methods on one subset: the method selector, per-method label-match curves, the agreement table and the
    top-k overlap chart render without errors (screenshot: influence-methods.png)."""
    page = browser.new_page(viewport={"width": 1400, "height": 3600})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(f"pageerror: {err}"))
    try:
        page.goto(f"{explorer_url}/influence")
        page.get_by_role("heading", name="Methods compared on this subset").wait_for(timeout=60_000)
        page.wait_for_function("document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length >= 4",
                               timeout=60_000)
        page.get_by_text("Agreement with fc-exact").wait_for(timeout=30_000)
        page.wait_for_timeout(1_000)
        page.get_by_role("heading", name="Methods compared on this subset").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "influence-methods.png"), full_page=True)
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.locator("[data-testid='stDataFrame']").count() >= 1
        assert not errors, errors
    finally:
        page.close()


def test_an_open_page_refreshes_when_precompute_publishes(served: tuple[str, Path], browser) -> None:
    """Runs recorded while pages are open appear without a reload: the sidebar watcher says so within
    REFRESH_SECONDS, "Show new results" redraws at once, and an untouched page redraws itself (at most every
    MIN_REDRAW_SECONDS, so that a precompute publishing every second does not keep every page redrawing)."""
    from app.explorer import MIN_REDRAW_SECONDS, REFRESH_SECONDS
    from compute.cache import CacheWriter
    from compute.records import RunRecord
    from tests.helpers.explorer_cache import SEEDS

    url, root = served
    clicked, untouched = (browser.new_page(viewport={"width": 1400, "height": 1200}) for _ in range(2))
    try:
        for page in (clicked, untouched):
            page.goto(f"{url}/")
            page.locator("[data-testid='stSidebarNav']").get_by_role("link", name="Transfer better?", exact=True).click()
            page.get_by_role("heading", name=PAGES["better"][0]).wait_for(timeout=30_000)
            assert page.get_by_text("fmnist", exact=True).count() == 0
        with CacheWriter(root) as writer:  # what `rtx precompute` does in another process
            for i, seed in enumerate(SEEDS):
                for source in ("natural", "l2_1.5"):
                    writer.record_run(RunRecord(f"live-{source}-{i}", "done", source, "fmnist", 20, seed, 3, 9,
                                                final_test_acc=0.6 + 0.05 * (source != "natural")), [])
        notice = clicked.get_by_text("New results were published since this page was drawn")
        notice.wait_for(timeout=(REFRESH_SECONDS + 10) * 1000)
        clicked.screenshot(path=str(ARTIFACTS / "new-results-notice.png"))
        clicked.get_by_role("button", name="Show new results").click()
        clicked.get_by_text("fmnist", exact=True).first.wait_for(timeout=15_000)  # its chip in the targets filter
        untouched.get_by_text("fmnist", exact=True).first.wait_for(timeout=(MIN_REDRAW_SECONDS + REFRESH_SECONDS + 15)
                                                                   * 1000)
        untouched.screenshot(path=str(ARTIFACTS / "refreshed.png"))
        for page in (clicked, untouched):
            assert page.locator("[data-testid='stException']").count() == 0
        assert notice.count() == 0  # the notice goes with the redraw
    finally:
        clicked.close()
        untouched.close()


def test_a_deep_link_as_the_first_visit_of_a_fresh_server_opens_its_page(served: tuple[str, Path], browser,
                                                                        tmp_path: Path) -> None:
    """A shared link to a page (…/better) opened before anyone has visited a freshly started explorer shows
    that page, without Streamlit's "Page not found" dialog (which a `pages/` folder beside the entry script
    caused: Streamlit read it as a v1 page list with other URLs until the first run's st.navigation)."""
    with _explore(served[1], tmp_path) as base:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        try:
            page.goto(f"{base}/better")
            page.get_by_role("heading", name=PAGES["better"][0]).wait_for(timeout=60_000)
            page.wait_for_timeout(2_000)  # the dialog, when it comes, comes with the first run's page list
            assert page.get_by_text("Page not found").count() == 0
            assert page.url.rstrip("/").endswith(f"/{PREFIX}/better")
        finally:
            page.close()
