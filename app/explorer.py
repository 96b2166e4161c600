"""Robust Transfer Explorer: the Streamlit entry. Run it with `rtx explore` (or `streamlit run app/explorer.py`).

One page per question of Utrera et al., ICLR 2021; every page reads the cache in $RTX_CACHE read-only
through `app.data`, so the explorer keeps working while `rtx precompute` writes, and a sidebar watcher
reruns the app when a newer snapshot is published.
"""

from __future__ import annotations

import streamlit as st

from app import data
from app.ui import CITATION

PAGES = [  # (file, title, url path): one question each
    ("pages/1_overview.py", "Overview", "overview"),
    ("pages/2_transfer_better.py", "Transfer better?", "better"),
    ("pages/3_transfer_faster.py", "Transfer faster?", "faster"),
    ("pages/4_blocks.py", "How many blocks?", "blocks"),
    ("pages/5_constraint.py", "Which constraint?", "constraint"),
    ("pages/10_budget.py", "Which budget?", "budget"),
    ("pages/6_shape_texture.py", "Shape vs texture", "shape-texture"),
    ("pages/7_influence.py", "Influence", "influence"),
    ("pages/8_featviz.py", "Feature visualization", "featviz"),
    ("pages/9_paper.py", "Paper vs here", "paper"),
]
REFRESH_SECONDS = 5


@st.fragment(run_every=REFRESH_SECONDS)
def _watch(snap: data.Snapshot) -> None:
    """Rerun the whole app when `rtx precompute` publishes a newer snapshot (a stat every few seconds)."""
    if st.session_state.get("auto_refresh", True) and data.snapshot_changed(snap):
        st.rerun(scope="app")


def main() -> None:
    st.set_page_config(page_title="Robust Transfer Explorer", layout="wide")
    snap = data.snapshot()
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
