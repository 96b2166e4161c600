"""Widgets every explorer page shares: the empty state, the caption + downloads footer (CSV, and SVG/PNG of the
chart above it), the common filters, and the chart call (Altair specs built once per data, not once per rerun)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

import pandas as pd
import streamlit as st

# The exact spec `st.altair_chart` sends (theme, Arrow-encoded datasets); private, so streamlit is pinned in
# pyproject.toml and tests/test_explorer_apptest.py checks that a cached chart equals `st.altair_chart`'s.
from streamlit.elements.vega_charts import _convert_altair_to_vega_lite_spec

from app import figure_files
from app.data import FILL_COMMAND, Snapshot
from compute.intervals import RETRAINING, basis
from compute.paths import cache_dir

_LAST_CHART = "_ui_last_chart"  # session state: the chart drawn since the last footer, for its SVG/PNG downloads
CITATION = ("Utrera, Kravitz, Erichson, Khanna, Mahoney: *Adversarially-Trained Deep Nets Transfer Better: "
            "Illustration on Image Classification*, ICLR 2021")


def empty_state(snap: Snapshot, what: str, command: str = FILL_COMMAND) -> None:
    """What is missing and the command that fills it; pages call this instead of drawing an empty chart."""
    where = "" if snap.empty else " (the cache has a snapshot, but not these rows yet)"
    st.info(f"No {what} in the cache at `{snap.root}`{where}. Fill it with `{command}`; "
            "this page refreshes when new results are published.")


def stop_if(missing: bool, snap: Snapshot, what: str, command: str = FILL_COMMAND) -> None:
    """When `missing`, show the empty state for `what` and stop the page (nothing below it renders)."""
    if missing:
        empty_state(snap, what, command)
        st.stop()


@st.cache_data(show_spinner=False, max_entries=512)
def _vega_lite_spec(builder: str, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    module, name = builder.rsplit(".", 1)
    return _convert_altair_to_vega_lite_spec(getattr(import_module(module), name)(*args, **kwargs))


def chart(build: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """`st.altair_chart(build(*args, **kwargs))`, the finished Vega-Lite spec cached per arguments.

    Why: building the Altair objects and validating them against the Vega-Lite schema was about half of a
    page rerun's server CPU (py-spy under `bench/explorer.py --sessions 10`), paid again on every click by
    every session; the arguments (a page's filtered frames) hash in about a millisecond. `build` must be a
    module-level function of its arguments alone.
    """
    st.vega_lite_chart(spec=_vega_lite_spec(f"{build.__module__}.{build.__qualname__}", args, kwargs))
    st.session_state[_LAST_CHART] = (build, args, kwargs)  # the next footer offers it as SVG and PNG


def _figure_download(fmt: str, build: Callable[..., Any], args: tuple, kwargs: dict[str, Any], line: str,
                     name: str) -> None:
    """A button that renders the chart as `fmt` (vl-convert, in-process) when clicked, provenance embedded.

    Rendered on click, not per rerun: an SVG of a three-facet chart took about 0.5 s of server CPU, a PNG 0.4 s."""
    st.download_button(f"{fmt.upper()}", lambda: figure_files.render(build(*args, **kwargs).to_dict(), fmt, line),
                       file_name=f"{name}.{fmt}", mime=figure_files.MIME[fmt], key=f"{fmt}-{name}")


def footer(caption: str, rows: pd.DataFrame, name: str) -> None:
    """A caption saying what is plotted and how much backs it, and the plotted rows as CSV.

    The CSV is written when the button is clicked, not on every rerun (the influence heatmap's 200,000 rows
    took 0.05 s of server CPU per page visit to serialise for a download few visits ask for).
    The chart drawn since the previous footer (pages call `chart` then `footer`) gets SVG and PNG buttons beside
    the CSV's, each file carrying this caption, the cache snapshot and the command (`figure_files.provenance`).
    """
    st.caption(caption)
    drawn = st.session_state.pop(_LAST_CHART, None)
    csv_column, *figure_columns = st.columns([3, 1, 1, 4]) if drawn else [st.container()]
    with csv_column:
        st.download_button(f"Download these {len(rows)} rows (CSV)", lambda: rows.to_csv(index=False).encode(),
                           file_name=f"{name}.csv", mime="text/csv", key=f"csv-{name}")
    if drawn:
        root = cache_dir()
        line = figure_files.provenance(root, caption, f"rtx explore --cache {root} (or: rtx figures --cache {root} "
                                                      "--out figures)")
        for column, fmt in zip(figure_columns, ("svg", "png"), strict=False):
            with column:
                _figure_download(fmt, *drawn, line, name)


def backing(frame: pd.DataFrame) -> str:
    """'N cells from M runs (seeds per cell: a-b)' for a summary with an `n_seeds` column."""
    if frame.empty:
        return "no runs"
    lo, hi = int(frame["n_seeds"].min()), int(frame["n_seeds"].max())
    seeds = f"{lo}" if lo == hi else f"{lo}-{hi}"
    text = f"{len(frame)} points from {int(frame['n_seeds'].sum())} runs ({seeds} seeds per point)"
    if basis(frame) == RETRAINING:
        lo, hi = (f"{100 * v:.1f}" for v in (frame["source_sd"].min(), frame["source_sd"].max()))
        text += (f"; intervals over seeds and retraining the source (accuracy sd between source replicas "
                 f"{lo if lo == hi else f'{lo}-{hi}'} points, measured on the replicated sources and assumed for "
                 "the others)")
    elif "source_sd" in frame:
        text += "; intervals over fine-tuning seeds only (each source trained once: retraining it is not covered)"
    return text


def pick_many(label: str, options: Sequence, key: str, default: Sequence | None = None) -> list:
    """A multiselect whose default is every option (or `default`, where those exist).

    Options that appear later (a precompute recorded a new target while the page was open) join the
    selection, so new results show up without the user re-ticking them; the user's deselections stay.
    """
    options = list(options)
    offered = f"{key}__offered"
    if key in st.session_state:
        new = [o for o in options if o not in st.session_state.get(offered, [])]
        st.session_state[key] = [v for v in st.session_state[key] if v in options] + new
        chosen = None
    else:
        chosen = [d for d in (default if default is not None else options) if d in options] or options
    st.session_state[offered] = options
    return st.multiselect(label, options, default=chosen, key=key)


def pick_one(label: str, options: Sequence, preferred: Sequence = (), key: str | None = None):
    """A selectbox starting at the first `preferred` value that is an option (else the first option)."""
    options = list(options)
    index = next((options.index(p) for p in preferred if p in options), 0)
    return st.selectbox(label, options, index=index, key=key)


def blocks_picker(summary: pd.DataFrame, key: str) -> int:
    """Number of fine-tuned blocks; the paper's headline figures use 3."""
    return int(pick_one("fine-tuned blocks", sorted(summary["blocks"].unique()), (3,), key=key))


def run_filters(frame: pd.DataFrame, key: str, widths: Sequence[int] = (2, 2, 1)) -> tuple[list, list, int, list]:
    """Targets, source models and fine-tuned blocks side by side (widgets keyed `<key>-targets` ...), plus any
    further columns of `widths` for the page's own pickers: (targets, sources, blocks, [extra columns])."""
    columns = st.columns(list(widths))
    with columns[0]:
        targets = pick_many("targets", sorted(frame["target"].unique()), key=f"{key}-targets")
    with columns[1]:
        sources = pick_many("source models", sorted(frame["source"].unique()), key=f"{key}-sources")
    with columns[2]:
        blocks = blocks_picker(frame, key=f"{key}-blocks")
    return targets, sources, blocks, columns[3:]
