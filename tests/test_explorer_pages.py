"""The explorer's page files are numbered as the sidebar shows them (issue 21: `10_budget` showed sixth)."""

from __future__ import annotations

from pathlib import Path

from app.explorer import PAGES

APP = Path(__file__).resolve().parents[1] / "app"


def test_page_files_are_numbered_in_the_order_they_show() -> None:
    numbers = [int(Path(path).name.split("_", 1)[0]) for path, _, _ in PAGES]
    assert numbers == list(range(1, len(PAGES) + 1))
    assert sorted(p.name for p in (APP / "views").glob("*.py")) == sorted(Path(path).name for path, _, _ in PAGES)
