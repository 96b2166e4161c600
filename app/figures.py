"""The paper's figure set from any cache, as files: what `rtx figures --cache DIR --out DIR` writes.

Each figure is the explorer's chart for the page's default view (every target and source, 3 fine-tuned blocks
when the cache has them, the headline robust source, the first influence subset): the same `app.charts`
functions on the same `app.data` reads, so a file matches what the page draws (tests/test_figures.py compares
the specs). Per figure: SVG and PDF (vl-convert, offline), the plotted rows as CSV, and a caption file with the
provenance line (what is plotted and the runs behind it, the cache snapshot, the command).

Reads go through `app.data` outside a Streamlit server: its `st.cache_data` memoises in memory then (`rtx
figures` silences its "No runtime found" warnings).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from app import budget, charts, data, influence_charts, influence_seeds, paper
from app.figure_files import provenance, render
from app.ui import backing

__all__ = ["FIGURES", "Figure", "FigureFile", "figures", "write_figures"]

FILE_FORMATS = ("svg", "pdf")  # vector formats for a paper; the explorer's buttons add PNG for slides


@dataclass(frozen=True)
class Figure:
    """One chart of the figure set: its chart builder and arguments (as the explorer calls `ui.chart`), the rows
    it plots (the CSV) and its caption."""

    name: str  # file stem, e.g. "fig2a_accuracy_vs_size"
    paper: str  # "Fig. 2a"
    build: Callable[..., Any]  # an app.charts function
    args: tuple
    rows: pd.DataFrame
    caption: str

    def chart(self):
        return self.build(*self.args)


@dataclass(frozen=True)
class FigureFile:
    """A file `write_figures` wrote (what the CLI lists and the tests open)."""

    figure: str
    path: Path
    fmt: str


# --- the paper's figures, each a function of the snapshot returning its Figure (None when the cache lacks it) ---
def _blocks(frame: pd.DataFrame) -> int:
    """The explorer's default number of fine-tuned blocks (`ui.blocks_picker`): 3 when present, else the fewest."""
    options = sorted(frame["blocks"].unique())
    return 3 if 3 in options else int(options[0])


def _delta(snap: data.Snapshot, which: str) -> pd.DataFrame:
    natural = data.natural_source(snap)
    return data.delta_summary(snap, natural, which) if natural else pd.DataFrame()


def fig2(snap: data.Snapshot) -> Iterator[Figure]:
    summary = data.final_summary(snap)
    if summary.empty:
        return
    blocks = _blocks(summary)
    rows = summary[summary["blocks"] == blocks]
    yield Figure("fig2a_accuracy_vs_size", "Fig. 2a", charts.accuracy_vs_size, (rows,), rows,
                 f"Final test accuracy vs training images, {blocks} fine-tuned blocks; line = mean over seeds, band = "
                 f"95% interval; {backing(rows)}.")
    delta = _delta(snap, "final")
    if not delta.empty and not (delta := delta[delta["blocks"] == blocks]).empty:
        yield Figure("fig2b_delta_vs_size", "Fig. 2b", charts.delta_vs_size, (delta,), delta,
                     f"Each source's accuracy minus {data.natural_source(snap)}'s on the same subset (paired by "
                     f"seed), {blocks} blocks, mean and 95% interval; {backing(delta)}.")


def fig3(snap: data.Snapshot) -> Iterator[Figure]:
    curves = data.curve_summary(snap)
    if curves.empty:
        return
    blocks = _blocks(curves)
    sizes = sorted(curves.loc[curves["blocks"] == blocks, "n_train"].unique())
    n_train = 3200 if 3200 in sizes else sizes[len(sizes) // 2]  # the page's default size (the paper's Fig. 3)
    cell = (curves["blocks"] == blocks) & (curves["n_train"] == n_train)
    yield Figure("fig3a_accuracy_vs_epoch", "Fig. 3a", charts.accuracy_vs_epoch, (curves[cell],), curves[cell],
                 f"Test accuracy at each evaluated epoch, {blocks} blocks, {n_train} training images; mean and 95% "
                 f"interval; {backing(curves[cell])}.")
    delta = _delta(snap, "curve")
    if not delta.empty:
        delta = delta[(delta["blocks"] == blocks) & (delta["n_train"] == n_train)]
        yield Figure("fig3b_delta_vs_epoch", "Fig. 3b", charts.delta_vs_epoch, (delta,), delta,
                     f"Accuracy minus {data.natural_source(snap)}'s at the same epoch on the same subset, {blocks} "
                     f"blocks, {n_train} images; {backing(delta)}.")


def fig4(snap: data.Snapshot) -> Iterator[Figure]:
    summary = data.final_summary(snap)
    if summary.empty or summary["blocks"].nunique() < 2:
        return
    source = data.headline_robust(snap) or sorted(summary["source"].unique())[0]
    rows = summary[summary["source"] == source]
    yield Figure("fig4a_accuracy_by_blocks", "Fig. 4a", charts.accuracy_by_blocks, (rows,), rows,
                 f"Test accuracy of {source} vs training images per number of fine-tuned blocks; mean and 95% "
                 f"interval; {backing(rows)}.")
    options = sorted(summary["blocks"].unique())
    high, low = (3 if 3 in options else options[-1]), (1 if 1 in options else options[0])
    delta = data.blocks_delta(snap, int(high), int(low))
    if not delta.empty and not (delta := delta[delta["source"] == source]).empty:
        yield Figure("fig4b_blocks_delta", "Fig. 4b", charts.delta_vs_size, (delta, f"{high} minus {low} blocks"),
                     delta, f"{source}: accuracy with {high} fine-tuned blocks minus with {low} on the same subset "
                     f"(paired by seed); {backing(delta)}.")


def _constraint_pairs(sources: pd.DataFrame, ran: set) -> list[tuple[str, str]]:
    """Fig. 5's differences: every L2 PGD(k>1) source minus every L∞ one, and each small L∞ ε minus a larger."""
    pgd = sources[sources["name"].isin(ran) & (sources["kind"] == "pgd") & (sources["steps"].fillna(0) > 1)]
    pgd = pgd.sort_values("eps")
    by_norm = {norm: pgd.loc[pgd["norm"] == norm, "name"].tolist() for norm in ("l2", "linf")}
    linf = by_norm["linf"]
    return [(a, b) for a in by_norm["l2"] for b in linf] + [(s, t) for i, s in enumerate(linf) for t in linf[i + 1:]]


def fig5(snap: data.Snapshot) -> Iterator[Figure]:
    summary, sources = data.final_summary(snap), data.source_models(snap)
    if summary.empty or sources.empty:
        return
    labels = {row["name"]: data.source_label(row) for _, row in sources.iterrows()}
    parts = [data.delta_summary(snap, b, "final").query("source == @a").assign(source=f"{labels[a]}  −  {labels[b]}")
             for a, b in _constraint_pairs(sources, set(summary["source"]))]
    if not parts:
        return
    blocks = _blocks(summary)
    rows = pd.concat(parts)
    rows = rows[rows["blocks"] == blocks]
    if not rows.empty:
        yield Figure("fig5_constraint_deltas", "Fig. 5", charts.delta_vs_size, (rows, "accuracy difference"), rows,
                     f"L2 vs L∞ and small vs large ε: first source's accuracy minus the second's on the same subsets "
                     f"(paired by seed), {blocks} blocks; mean and 95% interval; {backing(rows)}.")


def fig7(snap: data.Snapshot) -> Iterator[Figure]:
    cells = data.influence_cells(snap)
    if not cells:
        return
    group = influence_seeds.seed_groups(cells)[0]  # the page's default: the first subsets, first method, first seed
    cell = group.first
    results = data.influence_results(snap).set_index("key")
    match = influence_seeds.label_match_over_seeds(group, group.curves())
    if not match.empty:
        yield Figure("fig7b_label_match", "Fig. 7b", influence_charts.label_match_over_seeds, (match,), match,
                     f"Share of each test image's k most influential training images that carry its label, averaged "
                     f"over {int(results.at[cell.members[0][1], 'n_test'])} test images; mean and 95% t-interval over "
                     f"{len(group.seeds)} fine-tuning seeds ({cell.target}, {cell.subset_size} images, "
                     f"{cell.method_label}).")
    keys = {cell.name(src): key for src, key in cell.compared.items()}
    what = (f"{', '.join(keys)} fine-tuned on the same {cell.subset_size} {cell.target} images (seed {cell.seed}), "
            f"{cell.method_label}")
    heat = pd.concat([data.influence_heatmap(snap, key).assign(model=name) for name, key in keys.items()])
    if not heat.empty:
        yield Figure("fig7a_influence_heatmap", "Fig. 7a", charts.influence_heatmap, (heat,), heat,
                     f"Test x training influence (sorted by label, standardized by the matrix norm, mean-pooled) of "
                     f"{what}.")


def budget_curve(snap: data.Snapshot) -> Iterator[Figure]:
    summary, sources, natural = data.final_summary(snap), data.source_models(snap), data.natural_source(snap)
    if summary.empty or natural is None or not budget.has_budgets(sources):
        return
    deltas = budget.budget_deltas(data.delta_summary(snap, natural, "final"), sources)
    if deltas.empty:
        return
    complete = [t for t in sorted(deltas["target"].unique())
                if deltas.loc[deltas["target"] == t, "source"].nunique() == deltas["source"].nunique()]
    target = (complete or sorted(deltas["target"].unique()))[0]  # the page's default target, blocks and size
    cell = deltas[deltas["target"] == target]
    blocks = _blocks(cell)
    n_train = sorted(cell.loc[cell["blocks"] == blocks, "n_train"].unique())[0]
    rows = cell[(cell["blocks"] == blocks) & (cell["n_train"] == n_train)]
    robust = data.robustness(snap)
    attacks = sorted({budget.attack_label(n, e, k) for n, e, k in
                      zip(robust.get("norm", []), robust.get("eps", []), robust.get("steps", []), strict=True)}
                     - {"clean"})
    accuracy = budget.budget_accuracy(sources, robust, (attacks or ["clean"])[0], natural)
    yield Figure("budget_curve", "budget curve", charts.budget_chart, (rows, accuracy), rows,
                 f"Robust minus {natural} on {target} ({n_train} images, {blocks} blocks) against each source's "
                 f"training budget ε, mean and 95% interval; below, the sources' clean and attacked accuracy "
                 f"({(attacks or ['clean'])[0]}). {backing(rows)}.")


def table7(snap: data.Snapshot) -> Iterator[Figure]:
    summary, sources = data.final_summary(snap), data.source_models(snap)
    if summary.empty or sources.empty:
        return
    blocks = _blocks(summary)
    compared = paper.comparison(summary, sources, data.source_roles(snap), blocks)
    matched = compared.dropna(subset=["here_acc"])
    if matched.empty:
        return
    curve = compared.merge(matched[["target", "model"]].drop_duplicates(), on=["target", "model"])
    plot = pd.concat([curve.assign(origin="paper", acc=curve["paper_acc"]),
                      matched.assign(origin="here", acc=matched["here_acc"])])
    plot = plot[["target", "n_train", "model", "origin", "acc"]]
    yield Figure("table7_paper_vs_here", "Table 7 vs here", charts.paper_vs_here, (plot,), compared,
                 f"The paper's Table 7 ({len(compared)} cells) beside this cache's runs for the same cells "
                 f"({len(matched)} matched, {blocks} blocks); the CSV holds every cell with the 95% interval.")


FIGURES: tuple[Callable[[data.Snapshot], Iterator[Figure]], ...] = (
    fig2, fig3, fig4, fig5, fig7, budget_curve, table7)


def figures(snap: data.Snapshot) -> list[Figure]:
    """Every figure of the set the cache can back (a cache without influence results has no Fig. 7, ...)."""
    return [figure for make in FIGURES for figure in make(snap)]


def write_figures(root: Path, out: Path, command: str, progress: bool = True) -> list[FigureFile]:
    """Write every figure the cache at `root` backs into `out`: SVG, PDF, CSV and a caption file each."""
    import os

    from tqdm import tqdm

    os.environ["RTX_CACHE"] = str(root)
    snap = data.snapshot(newest=True)
    made = figures(snap)
    out.mkdir(parents=True, exist_ok=True)
    written: list[FigureFile] = []
    for figure in tqdm(made, desc="figures", unit="figure", disable=not progress):
        line = provenance(root, f"{figure.paper}: {figure.caption}", command)
        spec = figure.chart().to_dict()
        for fmt in FILE_FORMATS:
            path = out / f"{figure.name}.{fmt}"
            path.write_bytes(render(spec, fmt, line))
            written.append(FigureFile(figure.name, path, fmt))
        figure.rows.to_csv(out / f"{figure.name}.csv", index=False)
        (out / f"{figure.name}.caption.txt").write_text(line + "\n")
        written += [FigureFile(figure.name, out / f"{figure.name}.csv", "csv"),
                    FigureFile(figure.name, out / f"{figure.name}.caption.txt", "txt")]
    return written
