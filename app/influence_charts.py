"""Charts of the Influence page's own views (methods compared, label match over seeds, label match against the
cut-off): pure functions `DataFrame -> alt.Chart`.

Kept beside `app.charts` (same palette and formats) so these views can grow without touching the figure charts;
rows are exactly what the page offers as CSV.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from app.charts import ACC_FORMAT, PALETTE, natural_values, palette

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


def _band(frame: pd.DataFrame, x: alt.X, y: str, y_title: str, color: alt.Color, tooltip: list) -> alt.LayerChart:
    """Mean line with points and its 95% interval as a band (columns `y`, lo, hi)."""
    base = alt.Chart().encode(x=x, color=color)  # data on the layer, so a facet can split it
    line = base.mark_line(point=True).encode(y=alt.Y(f"{y}:Q", title=y_title, axis=alt.Axis(format=ACC_FORMAT)),
                                             tooltip=tooltip)
    band = base.mark_area(opacity=0.2).encode(y="lo:Q", y2="hi:Q")
    return alt.layer(band, line, data=frame)


def _tooltip(y: str) -> list:
    return ["model:N", alt.Tooltip(f"{y}:Q", format=".1%"), alt.Tooltip("lo:Q", format=".1%"),
            alt.Tooltip("hi:Q", format=".1%"), "n_seeds:Q"]


def label_match_over_seeds(frame: pd.DataFrame) -> alt.LayerChart:
    """Fig. 7b over seeds: mean label match against k with its 95% interval band, one colour per model.

    `frame` has model, role, k, match, lo, hi, n_seeds (`app.influence_seeds.label_match_over_seeds`)."""
    x = alt.X("k:Q", title="top-k influential training images", axis=alt.Axis(tickMinStep=1),
              scale=alt.Scale(zero=False))
    color = alt.Color("model:N", title="model", scale=palette(frame["model"], natural=natural_values(frame, "model")))
    return _band(frame, x, "match", "label match (mean over seeds)", color, ["k:Q", *_tooltip("match")]) \
        .properties(width=360, height=220)


def _cutoff_x() -> alt.X:
    """Cut-offs on an ordinal axis: the sweep includes 0, which a log axis cannot place."""
    return alt.X("cutoff:O", title="relative cut-off (fraction of the largest Hessian eigenvalue)",
                 axis=alt.Axis(labelAngle=-45, format="~g"))  # ~g: 0.0001, not 0.000100000


def label_match_vs_cutoff(frame: pd.DataFrame) -> alt.FacetChart:
    """Label match (mean over seeds, 95% band) against the cut-off, one colour per model, one panel per k.

    `frame` has model, role, cutoff, k, match, lo, hi, n_seeds, rank (`app.influence_seeds.sweep_summary`)."""
    color = alt.Color("model:N", title="model", scale=palette(frame["model"], natural=natural_values(frame, "model")))
    layer = _band(frame, _cutoff_x(), "match", "label match", color,
                  ["cutoff:O", "k:Q", *_tooltip("match"), alt.Tooltip("rank:Q", title="directions kept", format=".0f")])
    return layer.properties(width=WIDTH, height=HEIGHT).facet(column=alt.Column("k:O", title="top-k"))


def cutoff_difference(frame: pd.DataFrame) -> alt.FacetChart:
    """Robust minus natural label match (paired by seed) against the cut-off: mean and 95% interval bars, a zero
    rule; above it the paper's direction holds. `frame` is `app.influence_seeds.sweep_difference`'s."""
    base = alt.Chart().encode(x=_cutoff_x(), color=alt.Color("model:N", title="robust model",
                                                                     scale=palette(frame["model"])))
    points = base.mark_point(filled=True).encode(
        y=alt.Y("diff:Q", title="robust minus natural label match", axis=alt.Axis(format=ACC_FORMAT)),
        tooltip=["model:N", "cutoff:O", "k:Q", *_tooltip("diff")[1:]])
    bars = base.mark_rule().encode(y="lo:Q", y2="hi:Q")
    zero = alt.Chart().mark_rule(color="grey", strokeDash=[4, 4]).encode(y=alt.datum(0))
    return alt.layer(bars, points, zero, data=frame).properties(width=WIDTH, height=HEIGHT).facet(
        column=alt.Column("k:O", title="top-k"))


__all__ = ["cutoff_difference", "label_match_over_seeds", "label_match_vs_cutoff", "methods_label_match",
           "methods_overlap"]
