"""Charts of the Influence page's "methods compared" view: pure functions `DataFrame -> alt.Chart`.

Kept beside `app.charts` (same palette and formats) so the methods view can grow without touching the
figure charts; rows are exactly what the page offers as CSV.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from app.charts import ACC_FORMAT, PALETTE

WIDTH, HEIGHT = 300, 200


def methods_label_match(frame: pd.DataFrame) -> alt.Chart:
    """Fig. 7b per method: label match (0..1) against k, one line per method, one panel per model.

    `frame` has model, method, k, match."""
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("k:Q", title="top-k influential training images", axis=alt.Axis(tickMinStep=1),
                scale=alt.Scale(zero=False)),
        y=alt.Y("match:Q", title="label match", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=ACC_FORMAT)),
        color=alt.Color("method:N", title="method", scale=PALETTE),
        tooltip=["model:N", "method:N", "k:Q", alt.Tooltip("match:Q", format=".1%")],
    ).properties(width=WIDTH, height=HEIGHT).facet(column=alt.Column("model:N", title="model"))


def methods_overlap(frame: pd.DataFrame) -> alt.Chart:
    """Mean top-k overlap with the exact method (0..1) against k, one line per method, one panel per model.

    `frame` has model, method, k, overlap (`influence_compare.overlap_long`)."""
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("k:O", title="k (size of the top-k sets)", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("overlap:Q", title="top-k overlap with the exact method", scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format=ACC_FORMAT)),
        color=alt.Color("method:N", title="method", scale=PALETTE),
        tooltip=["model:N", "method:N", "k:Q", alt.Tooltip("overlap:Q", format=".1%")],
    ).properties(width=WIDTH, height=HEIGHT).facet(column=alt.Column("model:N", title="model"))


__all__ = ["methods_label_match", "methods_overlap"]
