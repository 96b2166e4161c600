"""Do two caches of the same preset tell the same story? Each computed claim of cache A (mean and 95% interval over
seeds) beside cache B's mean, and whether B lands inside A's interval.

    python bench/compare_caches.py CACHE_A CACHE_B [--min-seeds 5]

Why: float32 training differs between machines (AMD AVX2 vs Intel AVX-512, MKL/oneDNN paths) in the last bits
and then visibly, so a verdict is only worth showing if another machine's run lands inside its interval (issue
24). B may come from another machine or from this one on another kernel path, e.g.
`ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE python bench/precompute.py --cache B`.

Claims compared: robust minus natural final accuracy per (source, target, subset size, blocks) cell with at least
--min-seeds seeds (the budget and transfer pages); influence label match at top-1 and top-5 per model over seeds
(the Influence page); the best budget the influence stage chose and its ties; the feature visualisations' high-
frequency share, robust minus natural (the featviz page's verdict).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from app import influence_seeds, spectra
from app.pairing import influence_cells
from compute.cache import CacheReader
from compute.intervals import Interval, t_quantile


def deltas(reader: CacheReader, seeds_only: bool = False) -> pd.DataFrame:
    """Robust minus natural, paired by seed, per cell: source, target, n_train, blocks, n_seeds, mean, lo, hi; with
    `seeds_only`, the interval over fine-tuning seeds alone (what the pages showed before source replicas)."""
    frame = reader.delta_summary(reader.source_roles().natural, "final")
    if seeds_only and not frame.empty:
        half = t_quantile((frame["n_seeds"] - 1).clip(lower=1).to_numpy()) * frame["sd"] / np.sqrt(frame["n_seeds"])
        frame = frame.assign(lo=frame["mean"] - half, hi=frame["mean"] + half)
    return frame


def label_match(reader: CacheReader) -> pd.DataFrame:
    """Label match over seeds per model at k = 1 and 5 of the first influence subset (the page's default)."""
    results = reader.influence_results()
    cells = influence_cells(results, reader.source_roles().naturals)
    if not cells:
        return pd.DataFrame(columns=["source", "k", "n_seeds", "mean", "lo", "hi"])
    group = influence_seeds.seed_groups(cells)[0]
    frame = influence_seeds.label_match_over_seeds(group, group.curves())
    frame = frame[frame["k"].isin(influence_seeds.SWEEP_KS)]
    return frame.rename(columns={"match": "mean"})[["source", "k", "n_seeds", "mean", "lo", "hi"]]


def best_budget(reader: CacheReader) -> set[str]:
    """The role notes of the best-budget results (which source, and which it is tied with)."""
    results = reader.influence_results()
    best = results[results["role"].fillna("").str.contains("best budget")]
    return {f"{source}: {note}" for source, note in zip(best["source"], best["role_note"], strict=True)
            if isinstance(note, str)}


def featviz_difference(reader: CacheReader) -> Interval | None:
    """Robust minus natural high-frequency share of the feature visualisations (Welch over pictures), as the page."""
    viz = spectra.latest_featviz(reader.featviz())
    if viz.empty:
        return None
    groups = spectra.model_groups(reader.source_roles(), viz["model"].unique())
    return spectra.hf_difference(spectra.featviz_spectra(viz, groups))


def compare(a: pd.DataFrame, b: pd.DataFrame, on: list[str], min_seeds: int) -> pd.DataFrame:
    merged = a.merge(b[[*on, "mean"]], on=on, suffixes=("", "_b"))
    merged = merged[merged["n_seeds"] >= min_seeds]
    return merged.assign(inside=(merged["mean_b"] >= merged["lo"]) & (merged["mean_b"] <= merged["hi"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache_a", type=Path)
    parser.add_argument("cache_b", type=Path)
    parser.add_argument("--min-seeds", type=int, default=5, help="only cells with at least this many seeds")
    args = parser.parse_args()
    a, b = CacheReader(args.cache_a), CacheReader(args.cache_b)
    try:
        tables = {
            "robust minus natural accuracy": compare(deltas(a), deltas(b), ["source", "target", "n_train", "blocks"],
                                                     args.min_seeds),
            "robust minus natural accuracy, intervals over fine-tuning seeds only": compare(
                deltas(a, seeds_only=True), deltas(b), ["source", "target", "n_train", "blocks"], args.min_seeds),
            "influence label match": compare(label_match(a), label_match(b), ["source", "k"], args.min_seeds),
        }
        for title, table in tables.items():
            print(f"\n{title}: B's mean inside A's 95% interval in {int(table['inside'].sum())} of {len(table)} "
                  f"claims with >= {args.min_seeds} seeds")
            if not table.empty:
                print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        fa, fb = featviz_difference(a), featviz_difference(b)
        if fa is not None and fb is not None:
            print(f"\nfeatviz high-frequency share, robust minus natural: A {fa.text(unit=' points')}, B "
                  f"{fb.mean * 100:+.1f} points: B {'inside' if fa.lo <= fb.mean <= fa.hi else 'OUTSIDE'} A's interval")
        print("\nbest budget (A):", "; ".join(sorted(best_budget(a))) or "none")
        print("best budget (B):", "; ".join(sorted(best_budget(b))) or "none")
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
