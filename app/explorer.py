"""Robust Transfer Explorer: the Streamlit entry. Run it with `rtx explore` (or `streamlit run app/explorer.py`).

One page per question of Utrera et al., ICLR 2021; every page reads the cache in $RTX_CACHE read-only
through `app.data`, so the explorer keeps working while `rtx precompute` writes, and a sidebar watcher
redraws the page when a newer snapshot is published (at most every `MIN_REDRAW_SECONDS`: a precompute publishes
about once a second, and redrawing every open session's charts that often kept a 2-core server and the browsers
busy redrawing instead of answering clicks; measured with `bench/explorer.py --sessions 10`).
"""

from __future__ import annotations

import time

import streamlit as st

from app import data
from app.ui import CITATION

PAGES = [  # (file, title, url path): one question each, files numbered in the order they show
    ("views/1_overview.py", "Overview", "overview"),
    ("views/2_transfer_better.py", "Transfer better?", "better"),
    ("views/3_transfer_faster.py", "Transfer faster?", "faster"),
    ("views/4_blocks.py", "How many blocks?", "blocks"),
    ("views/5_constraint.py", "Which constraint?", "constraint"),
    ("views/6_budget.py", "Which budget?", "budget"),
    ("views/7_shape_texture.py", "Shape vs texture", "shape-texture"),
    ("views/8_influence.py", "Influence", "influence"),
    ("views/9_featviz.py", "Feature visualization", "featviz"),
    ("views/10_paper.py", "Paper vs here", "paper"),
]
REFRESH_SECONDS = 5  # how often the watcher looks for a newer snapshot (a stat)
MIN_REDRAW_SECONDS = 30  # how often, at most, it redraws the page for one


def redraw_due(auto: bool, drawn_at: float, now: float) -> bool:
    """Whether the watcher redraws a page that has new results: auto-refresh on and the last drawing old enough."""
    return auto and now - drawn_at >= MIN_REDRAW_SECONDS


@st.fragment(run_every=REFRESH_SECONDS)
def _watch(snap: data.Snapshot) -> None:
    """Redraw the whole app when `rtx precompute` has published a newer snapshot; say so meanwhile."""
    if not data.snapshot_changed(snap):
        return
    auto = st.session_state.get("auto_refresh", True)
    if redraw_due(auto, st.session_state.get("drawn_at", 0.0), time.monotonic()):
        st.rerun(scope="app")
    st.caption("New results were published since this page was drawn"
               + (f"; it redraws within {MIN_REDRAW_SECONDS} s." if auto else "."))
    if st.button("Show new results", key="redraw_now"):
        st.session_state["want_newest"] = True  # adopt the newest snapshot now, not within data.ADOPT_SECONDS
        st.rerun(scope="app")


def main() -> None:
    st.set_page_config(page_title="Robust Transfer Explorer", layout="wide")
    snap = data.snapshot(newest=st.session_state.pop("want_newest", False))
    st.session_state["drawn_at"] = time.monotonic()
    pages = [st.Page(path, title=title, url_path=url, default=(i == 0)) for i, (path, title, url) in enumerate(PAGES)]
    page = st.navigation(pages)
    with st.sidebar:
        counts = data.counts(snap).set_index("table")["rows"]
        st.caption(f"Cache `{snap.root}`: "
                   + (f"{int(counts['runs'])} runs, {int(counts['influence'])} influence results"
                      if not snap.empty else "empty"))
        st.toggle("Refresh when new results arrive", value=True, key="auto_refresh")
        _watch(snap)
        st.caption(f"Reproduces figures of {CITATION}.")
    page.run()


if __name__ == "__main__":  # streamlit runs the entry as __main__; importing it (tests) only defines PAGES
    main()
