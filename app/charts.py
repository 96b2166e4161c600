"""Every chart the explorer draws: pure functions `DataFrame -> alt.Chart`, testable without a browser.

Accuracies stay fractions (0..1) in the data and are shown as percent by the axis format, so the rows a
page offers as CSV are exactly the rows a chart plots. Curves are the paper's style: the solid line is the
mean over seeds and the shaded band its 95% t-interval (columns `mean`, `lo`, `hi` from CacheReader).
Deltas get a zero rule: above it, the first model of the difference transfers better.
"""

from __future__ import annotations

from collections.abc import Collection

import altair as alt
import numpy as np
import pandas as pd

from compute.roles import NATURAL_ROLE, TABLE7_NATURAL

__all__ = [
    "accuracy_by_blocks",
    "accuracy_vs_epoch",
    "accuracy_vs_size",
    "budget_chart",
    "delta_vs_epoch",
    "delta_vs_size",
    "featviz_spectrum_chart",
    "heatmap_frame",
    "sorted_heatmap_frame",
    "influence_heatmap",
    "label_match_chart",
    "paper_vs_here",
    "robustness_bars",
    "variant_bars",
]

FACET_WIDTH = 230  # px per small multiple; three fit a wide Streamlit page
FACET_HEIGHT = 170
ACC_FORMAT = ".0%"
DELTA_FORMAT = "+.1%"
PALETTE = alt.Scale(scheme="tableau10")  # saturated categorical colours, for few categories that are not sources
NATURAL_COLOUR = "#3b3b3b"  # the natural (non-robust) model: the reference every robust line is compared with
# tableau10 without its grey (taken by natural), then Carto's Bold: 19 distinguishable colours before any repeats
CATEGORICAL = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
               "#7f3c8d", "#11a579", "#3969ac", "#f2b701", "#e73f74", "#80ba5a", "#e68310", "#008695", "#cf1c90",
               "#f97b72")


def natural_values(frame: pd.DataFrame, field: str) -> frozenset:
    """The `field` values of the rows whose `role` column says natural (compute.roles; `app.data.with_roles` adds
    it): the categories drawn in NATURAL_COLOUR. Decided by the recorded role, never by a category's name."""
    if "role" not in frame or field not in frame:
        return frozenset()
    return frozenset(frame.loc[frame["role"] == NATURAL_ROLE, field])


def palette(values: pd.Series | list, order: list | None = None, natural: Collection = frozenset()) -> alt.Scale:
    """Colours for the categories in `values`: the `natural` ones dark grey, every other its own colour.

    A scheme alone (tableau10) repeats after ten categories, and the demo cache has twelve sources: `natural` and
    the eleventh source came out the same blue. The domain is `order` (else the sorted categories), so the
    legend keeps that order."""
    domain = list(order) if order is not None else sorted(set(values), key=str)
    others = iter(CATEGORICAL * (1 + len(domain) // len(CATEGORICAL)))
    return alt.Scale(domain=domain, range=[NATURAL_COLOUR if v in natural else next(others) for v in domain])


def _x_size(log: bool = True) -> alt.X:
    """Subset size on a log axis, as the paper's Fig. 2 draws it (100 ... 50,000)."""
    scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
    return alt.X("n_train:Q", scale=scale, title="training images (log scale)" if log else "training images",
                 axis=alt.Axis(format="~s", grid=False))


def _band_lines(frame: pd.DataFrame, x: alt.X, color: str, color_title: str, y_title: str, delta: bool,
                facet: str | None, facet_title: str = "", sort: list | None = None) -> alt.Chart:
    """Mean line + 95% band per `color`, optionally one small multiple per `facet` value."""
    fmt = DELTA_FORMAT if delta else ACC_FORMAT
    color_enc = alt.Color(f"{color}:N", title=color_title, sort=sort, scale=palette(frame[color], sort, natural_values(frame, color)),
                          legend=alt.Legend(symbolOpacity=1))  # the band's 0.2 opacity would fade the legend
    tooltip = [alt.Tooltip(f"{color}:N", title=color_title), alt.Tooltip(x.to_dict()["field"], type="quantitative"),
               alt.Tooltip("mean:Q", format=".2%"), alt.Tooltip("lo:Q", format=".2%"), alt.Tooltip("hi:Q", format=".2%"),
               alt.Tooltip("n_seeds:Q", title="seeds")]
    base = alt.Chart().encode(x=x)
    layers = [
        base.mark_area(opacity=0.2).encode(y=alt.Y("lo:Q", title=y_title, axis=alt.Axis(format=fmt),
                                                   scale=alt.Scale(zero=delta)), y2="hi:Q", color=color_enc),
        base.mark_line(point=True).encode(y="mean:Q", color=color_enc, tooltip=tooltip),
    ]
    if delta:
        layers.append(alt.Chart().mark_rule(color="grey", strokeDash=[4, 4]).encode(y=alt.datum(0)))
    chart = alt.layer(*layers, data=frame).properties(width=FACET_WIDTH, height=FACET_HEIGHT)
    if facet:
        return chart.facet(facet=alt.Facet(f"{facet}:N", title=facet_title), columns=3)
    return chart


def accuracy_vs_size(summary: pd.DataFrame) -> alt.Chart:
    """Fig. 2a: test accuracy vs training images, one line per source, one panel per target."""
    return _band_lines(summary, _x_size(), "source", "source model", "test accuracy", False, "target", "target")


def delta_vs_size(delta: pd.DataFrame, title: str = "robust minus natural") -> alt.Chart:
    """Fig. 2b / 5 / 8: an accuracy delta vs training images, one line per target, one panel per source."""
    return _band_lines(delta, _x_size(), "target", "target", title, True, "source", "source model")


def accuracy_vs_epoch(curves: pd.DataFrame) -> alt.Chart:
    """Fig. 3a: test accuracy during fine-tuning, one line per source, one panel per target."""
    x = alt.X("epoch:Q", title="fine-tuning epoch", axis=alt.Axis(grid=False))
    return _band_lines(curves, x, "source", "source model", "test accuracy", False, "target", "target")


def delta_vs_epoch(delta: pd.DataFrame) -> alt.Chart:
    """Fig. 3b: robust-minus-natural accuracy during fine-tuning, one line per target, one panel per source."""
    x = alt.X("epoch:Q", title="fine-tuning epoch", axis=alt.Axis(grid=False))
    return _band_lines(delta, x, "target", "target", "robust minus natural", True, "source", "source model")


def accuracy_by_blocks(summary: pd.DataFrame) -> alt.Chart:
    """Fig. 4a / 11a: test accuracy vs training images, one line per number of fine-tuned blocks."""
    frame = summary.assign(blocks=summary["blocks"].astype(str))
    order = sorted(frame["blocks"].unique(), key=int)
    return _band_lines(frame, _x_size(), "blocks", "fine-tuned blocks", "test accuracy", False, "target", "target",
                       sort=order)


def variant_bars(frame: pd.DataFrame) -> alt.Chart:
    """Table 2: accuracy of each source on the base target and its low-res / low-pass variants, with 95% bars."""
    base = alt.Chart().encode(x=alt.X("source:N", title=None, axis=alt.Axis(labels=False, ticks=False)),
                              color=alt.Color("source:N", title="source model",
                                              scale=palette(frame["source"], natural=natural_values(frame, "source"))))
    tooltip = ["target:N", "source:N", alt.Tooltip("mean:Q", format=".2%"), alt.Tooltip("n_seeds:Q", title="seeds")]
    layers = alt.layer(
        base.mark_bar().encode(y=alt.Y("mean:Q", title="test accuracy", axis=alt.Axis(format=ACC_FORMAT)),
                               tooltip=tooltip),
        base.mark_errorbar(color="black").encode(y=alt.Y("lo:Q", title="test accuracy"), y2="hi:Q"),
        data=frame,
    ).properties(width=150, height=FACET_HEIGHT)
    return layers.facet(facet=alt.Facet("target:N", title="target"), columns=4)


def robustness_bars(frame: pd.DataFrame) -> alt.Chart:
    """Table 1b analogue: each source's accuracy under each attack (norm 'none' = clean), one panel per attack."""
    attack = frame["norm"] + " ε=" + frame["eps"].map("{:g}".format) + " PGD(" + frame["steps"].astype(str) + ")"
    data = frame.assign(attack=attack.where(frame["norm"] != "none", "clean"))
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("source:N", title=None, axis=alt.Axis(labels=False, ticks=False)),
        y=alt.Y("accuracy:Q", title="accuracy under attack", axis=alt.Axis(format=ACC_FORMAT)),
        color=alt.Color("source:N", title="source model",
                        scale=palette(frame["source"], natural=natural_values(frame, "source"))),
        tooltip=["source:N", "dataset:N", "attack:N", alt.Tooltip("accuracy:Q", format=".2%"), "n_images:Q"],
    ).properties(width=160, height=140).facet(facet=alt.Facet("attack:N", title="attack"), columns=4)


# --- budgets (Salman et al. 2020's question, on the paper's sources) ----------------------------------------------
def _eps_x(eps: pd.Series) -> alt.X:
    """The sources' budgets on a log axis spanning just the data (a "nice" log domain wastes a decade each side)."""
    eps = eps[eps > 0]
    domain = [float(eps.min()) / 1.4, float(eps.max()) * 1.4] if len(eps) else [0.001, 10]
    return alt.X("eps:Q", scale=alt.Scale(type="log", domain=domain, nice=False),
                 title="training budget ε (L2 or L∞ radius; Gaussian: σ), log scale",
                 axis=alt.Axis(format="~g", grid=False))


def budget_chart(deltas: pd.DataFrame, accuracy: pd.DataFrame) -> alt.VConcatChart:
    """Robust minus natural (mean, 95% bars) against each source's budget, one line per family; below it, on the
    same ε axis, each source's clean accuracy (solid) and accuracy under the chosen attack (dashed), with the
    natural source's as grey reference rules: the transfer benefit and the robustness trade-off side by side.

    `deltas` is `app.budget.budget_deltas` for one (target, n_train, blocks); `accuracy` `budget_accuracy`.
    """
    color = alt.Color("family:N", title="source family", legend=alt.Legend(symbolOpacity=1),
                      scale=palette(pd.concat([deltas["family"], accuracy["family"]]),
                                    natural={NATURAL_ROLE}))  # app.budget names natural's family by its role
    tooltip = ["source:N", "family:N", alt.Tooltip("eps:Q", format=".4g"), alt.Tooltip("mean:Q", format="+.2%"),
               alt.Tooltip("lo:Q", format="+.2%"), alt.Tooltip("hi:Q", format="+.2%"),
               alt.Tooltip("n_seeds:Q", title="seeds")]
    x = _eps_x(pd.concat([deltas["eps"], accuracy["eps"]]).dropna())
    top_base = alt.Chart(deltas).encode(x=x, color=color)
    top = alt.layer(
        top_base.mark_errorbar(ticks=True).encode(y=alt.Y("lo:Q", title="robust minus natural (test accuracy)",
                                                          axis=alt.Axis(format=DELTA_FORMAT)), y2="hi:Q"),
        top_base.mark_line().encode(y="mean:Q"),
        top_base.mark_point(filled=True, size=70).encode(  # shapes: an L2 PGD(1) point on an L2 PGD(3) one shows
            y="mean:Q", shape=alt.Shape("family:N", title="source family"), tooltip=tooltip),
        alt.Chart().mark_rule(color="grey", strokeDash=[4, 4]).encode(y=alt.datum(0)),
    ).properties(width=520, height=240)
    robust = accuracy[accuracy["family"] != NATURAL_ROLE]
    natural = accuracy[accuracy["family"] == NATURAL_ROLE]
    dash = alt.StrokeDash("measure:N", title="source accuracy", sort=["clean"])
    acc_tooltip = ["source:N", "family:N", "measure:N", alt.Tooltip("eps:Q", format=".4g"),
                   alt.Tooltip("accuracy:Q", format=".1%"), "n_images:Q"]
    bottom = alt.layer(
        alt.Chart(robust).mark_line(point=True).encode(
            x=x, y=alt.Y("accuracy:Q", title="source accuracy (own test set)", axis=alt.Axis(format=ACC_FORMAT),
                              scale=alt.Scale(domain=[0, 1])),
            color=color, strokeDash=dash, detail="family:N", tooltip=acc_tooltip),
        alt.Chart(natural).mark_rule(color="grey").encode(y="accuracy:Q", strokeDash=dash, tooltip=acc_tooltip),
    ).properties(width=520, height=200)
    return alt.vconcat(top, bottom).resolve_scale(x="shared", color="shared", strokeDash="independent")


def featviz_spectrum_chart(frame: pd.DataFrame, summary: pd.DataFrame) -> alt.LayerChart:
    """High-frequency share of each optimised image (one point per seed photo and unit) per model, each model's
    mean with its 95% interval, and the seeds' own share as a grey dashed rule: above it, the ascent added texture.

    `frame` is `app.spectra.featviz_spectra` (model, group, seed_image, unit, hf, seed_hf); `summary` is
    `app.spectra.spectrum_summary` (model, group, n, mean, lo, hi, seed_mean).
    """
    order = summary.sort_values(["group", "model"])["model"].tolist()
    x = alt.X("model:N", title=None, sort=order)
    y = alt.Y("hf:Q", title="energy above ½ Nyquist", axis=alt.Axis(format=ACC_FORMAT))
    color = alt.Color("group:N", title="model", scale=palette(frame["group"], natural={NATURAL_ROLE}))  # role groups
    points = alt.Chart(frame).mark_circle(size=40, opacity=0.55).encode(
        x=x, xOffset=alt.XOffset("seed_image:N"), y=y, color=color,
        tooltip=["model:N", "seed_image:N", "unit:Q", alt.Tooltip("hf:Q", format=".1%"),
                 alt.Tooltip("seed_hf:Q", format=".1%", title="seed photo")])
    bars = alt.Chart(summary).mark_errorbar(color="black", thickness=2).encode(  # no ticks: they ignore xOffset
        x=x, y=alt.Y("lo:Q", title="energy above ½ Nyquist"), y2="hi:Q")
    means = alt.Chart(summary).mark_point(shape="diamond", size=90, filled=True, color="black").encode(
        x=x, y="mean:Q", tooltip=["model:N", "n:Q", alt.Tooltip("mean:Q", format=".1%"),
                                  alt.Tooltip("lo:Q", format=".1%"), alt.Tooltip("hi:Q", format=".1%")])
    seeds = alt.Chart(summary).mark_rule(color="grey", strokeDash=[4, 4]).encode(y="mean(seed_mean):Q")
    return alt.layer(points, bars, means, seeds).properties(width=420, height=240)


# --- influence (Section 6) -------------------------------------------------------------------------------------
def _edges(n: int, max_bins: int) -> np.ndarray:
    """Bin edges splitting n positions into min(n, max_bins) near-equal runs: (bins + 1,) ints."""
    return np.linspace(0, n, min(n, max_bins) + 1).round().astype(int)


def _majority(labels: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.array([np.bincount(labels[a:b]).argmax() for a, b in zip(edges[:-1], edges[1:], strict=True)])


def _long(pooled: np.ndarray, row_labels: np.ndarray, col_labels: np.ndarray) -> pd.DataFrame:
    ri, ci = np.meshgrid(np.arange(pooled.shape[0]), np.arange(pooled.shape[1]), indexing="ij")
    return pd.DataFrame({"row_bin": ri.ravel(), "col_bin": ci.ravel(), "value": pooled.ravel(),
                         "row_label": row_labels[ri.ravel()], "col_label": col_labels[ci.ravel()]})


def heatmap_frame(matrix: np.ndarray, row_labels: np.ndarray, col_labels: np.ndarray,
                  max_bins: int = 60) -> pd.DataFrame:
    """Mean-pool a (rows, cols) matrix into at most max_bins x max_bins cells, long format for `mark_rect`.

    A 3,200 x 10,000 influence matrix is 32M cells; Vega draws a few thousand rectangles smoothly, so
    the pooled cell (row_bin, col_bin) holds the mean of its block and the majority label of its rows/cols.
    """
    r_edges, c_edges = _edges(matrix.shape[0], max_bins), _edges(matrix.shape[1], max_bins)
    sums = np.add.reduceat(np.add.reduceat(matrix, r_edges[:-1], axis=0, dtype=np.float64), c_edges[:-1], axis=1)
    pooled = sums / np.outer(np.diff(r_edges), np.diff(c_edges))  # (row_bins, col_bins)
    return _long(pooled, _majority(np.asarray(row_labels), r_edges), _majority(np.asarray(col_labels), c_edges))


def sorted_heatmap_frame(matrix: np.ndarray, row_labels: np.ndarray, col_labels: np.ndarray,
                         max_bins: int = 60) -> pd.DataFrame:
    """Fig. 7a cells, fast: `heatmap_frame` of `compute.influence.derived.sorted_standardized(matrix, ...)`.

    The reference sorts rows and columns by label (stable), divides by the Frobenius norm, then pools: for
    3,200 x 10,000 that gathers a 128 MB copy (about 1.5 s on 2 cores). Pooling only needs each original
    row's and column's bin, so here the sum is one BLAS product with a (cols, col_bins) 0/1 matrix and a
    scatter-add over rows (about 0.2 s). Same cells up to float32 summation order; a test compares them.
    """
    rows, cols = matrix.shape
    row_labels, col_labels = np.asarray(row_labels), np.asarray(col_labels)
    r_order, c_order = np.argsort(row_labels, kind="stable"), np.argsort(col_labels, kind="stable")
    r_edges, c_edges = _edges(rows, max_bins), _edges(cols, max_bins)
    r_bin, c_bin = np.empty(rows, int), np.empty(cols, int)
    r_bin[r_order] = np.searchsorted(r_edges, np.arange(rows), side="right") - 1  # bin of each original row
    c_bin[c_order] = np.searchsorted(c_edges, np.arange(cols), side="right") - 1
    onehot = np.zeros((cols, len(c_edges) - 1), dtype=matrix.dtype)
    onehot[np.arange(cols), c_bin] = 1
    partial = np.asarray(matrix @ onehot, dtype=np.float64)  # (rows, col_bins)
    sums = np.zeros((len(r_edges) - 1, len(c_edges) - 1))
    np.add.at(sums, r_bin, partial)
    norm = float(np.linalg.norm(matrix)) or 1.0
    pooled = sums / np.outer(np.diff(r_edges), np.diff(c_edges)) / norm
    return _long(pooled, _majority(row_labels[r_order], r_edges), _majority(col_labels[c_order], c_edges))


_BARE = alt.Axis(labels=False, ticks=False, domain=False)
HEATMAP_ROW_WIDTH = 600  # pixels the heatmap panels share (the explorer's content column minus the colour legend)


def influence_heatmap(frame: pd.DataFrame) -> alt.Chart:
    """Fig. 7a: standardized influence (test rows x training columns, both sorted by label), one panel per model.

    `frame` is `heatmap_frame` output for the test x train matrix plus a `model` column; diverging colours
    centred on zero, so well-defined dark blocks on the diagonal mean label-consistent influence. Panels shrink
    with the number of models so that three (natural, analogue, best budget) fit the page's content width.
    """
    side = min(280, HEATMAP_ROW_WIDTH // max(frame["model"].nunique(), 1))
    return alt.Chart(frame).mark_rect().encode(
        x=alt.X("col_bin:O", title="training images (sorted by label)", axis=_BARE),
        y=alt.Y("row_bin:O", title="test images (sorted by label)", axis=_BARE),
        color=alt.Color("value:Q", title="influence / ‖I‖", scale=alt.Scale(scheme="purpleorange", domainMid=0)),
        tooltip=["model:N", alt.Tooltip("row_label:Q", title="test label"),
                 alt.Tooltip("col_label:Q", title="train label"), alt.Tooltip("value:Q", format=".3g")],
    ).properties(width=side, height=side).facet(column=alt.Column("model:N", title=None))


def label_match_chart(frame: pd.DataFrame) -> alt.Chart:
    """Fig. 7b: share of test images whose top-k influential training images carry the test label (k = 1..K)."""
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("k:Q", title="top-k influential training images", axis=alt.Axis(tickMinStep=1),
                scale=alt.Scale(zero=False)),
        y=alt.Y("match:Q", title="label match", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=ACC_FORMAT)),
        color=alt.Color("model:N", title="model", scale=palette(frame["model"], natural=natural_values(frame, "model"))),
        tooltip=["model:N", "k:Q", alt.Tooltip("match:Q", format=".1%")],
    ).properties(width=360, height=220)


# --- paper vs here ---------------------------------------------------------------------------------------------
def paper_vs_here(frame: pd.DataFrame) -> alt.Chart:
    """Table 7 next to the cache: accuracy vs training images, one line style for the paper, one for this cache.

    `frame` has target, n_train, model (paper column name), origin ('paper' | 'here'), acc (fraction).
    """
    return alt.Chart(frame).mark_line(point=True).encode(
        x=_x_size(),
        y=alt.Y("acc:Q", title="test accuracy", axis=alt.Axis(format=ACC_FORMAT), scale=alt.Scale(zero=False)),
        color=alt.Color("model:N", title="source (paper name)", scale=palette(frame["model"], natural={TABLE7_NATURAL})),
        strokeDash=alt.StrokeDash("origin:N", title="from", sort=["here", "paper"]),
        tooltip=["target:N", "n_train:Q", "model:N", "origin:N", alt.Tooltip("acc:Q", format=".2%")],
    ).properties(width=FACET_WIDTH, height=FACET_HEIGHT).facet(facet=alt.Facet("target:N", title="target"), columns=3)
