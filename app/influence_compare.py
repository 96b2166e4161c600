"""How far do two influence methods agree on one fine-tune? Pure numpy/scipy on stored (n_train, n_test) matrices.

The exact methods (`fast`, `reference`, ...) give the paper's g_t^T H^+ g_j; `tracincp` replaces H by I. Their
label-match curves can look alike while the images they rank first differ, so the Influence page reports,
per test image, the Spearman rank correlation of a method's scores over the training images with the exact
method's, and the share of the exact method's top-k training images the method also ranks in its top k.
Torch-free, so the explorer computes it without loading torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

OVERLAP_KS = (1, 5, 10)
EXACT_PREFERENCE = ("reference", "fast", "dense", "iterative")  # the paper's route first, then the fast exact ones


def spearman_per_test(scores: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """(n_test,) Spearman correlation over training images (rows) of each test column of two (n_train, n_test)
    matrices; NaN for a column that is constant in either matrix."""
    if scores.shape != baseline.shape:
        raise ValueError(f"matrices differ in shape: {scores.shape} vs {baseline.shape}")
    a = stats.rankdata(scores, axis=0)  # (n_train, n_test) ranks, ties averaged
    b = stats.rankdata(baseline, axis=0)
    a, b = a - a.mean(0), b - b.mean(0)
    denom = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(0) / np.where(denom > 0, denom, 1.0), np.nan)


def top_sets(scores: np.ndarray, k: int) -> np.ndarray:
    """(n_test, k) training rows with the k highest scores per test column (highest first, ties by row)."""
    return np.argsort(-scores, axis=0, kind="stable")[:k].T


def topk_overlap(scores: np.ndarray, baseline: np.ndarray, k: int) -> np.ndarray:
    """(n_test,) |top-k(scores) ∩ top-k(baseline)| / k per test image."""
    k = min(k, scores.shape[0])
    mine, theirs = top_sets(scores, k), top_sets(baseline, k)
    return np.array([len(set(m) & set(t)) / k for m, t in zip(mine, theirs, strict=True)])


def exact_method(exact: Mapping[str, bool | None]) -> str | None:
    """The method the others are compared with: an exact one (by `EXACT_PREFERENCE`, then by name); a method
    whose exactness is unknown (None) only when no method is known to be exact."""
    known = [m for m in exact if exact[m]]
    unknown = [m for m in exact if exact[m] is None]
    for pool in (known, unknown):
        if pool:
            return min(pool, key=lambda m: (EXACT_PREFERENCE.index(m) if m in EXACT_PREFERENCE else len(
                EXACT_PREFERENCE), m))
    return None


def compare_methods(matrices: Mapping[str, np.ndarray], baseline: str,
                    ks: Sequence[int] = OVERLAP_KS) -> pd.DataFrame:
    """One row per method: mean, standard deviation and count of the per-test-image Spearman correlation with
    `baseline`'s scores, and the mean top-k overlap with it for each k (columns `overlap@k`)."""
    base = np.asarray(matrices[baseline], dtype=np.float64)
    rows = []
    for method, matrix in matrices.items():
        matrix = np.asarray(matrix, dtype=np.float64)
        rho = spearman_per_test(matrix, base)
        valid = rho[~np.isnan(rho)]
        row = {"method": method, "baseline": baseline, "spearman": float(valid.mean()) if valid.size else np.nan,
               "spearman_sd": float(valid.std(ddof=1)) if valid.size > 1 else np.nan, "n_test": int(valid.size)}
        for k in ks:
            row[f"overlap@{k}"] = float(topk_overlap(matrix, base, k).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def overlap_long(table: pd.DataFrame) -> pd.DataFrame:
    """`compare_methods` rows -> one row per (model, method, k, overlap) for a chart (keeps a `model` column)."""
    cols = [c for c in table.columns if c.startswith("overlap@")]
    ids = [c for c in ("model", "method") if c in table.columns]
    long = table.melt(id_vars=ids, value_vars=cols, var_name="k", value_name="overlap")
    return long.assign(k=long["k"].str.removeprefix("overlap@").astype(int))


__all__ = ["OVERLAP_KS", "compare_methods", "exact_method", "overlap_long", "spearman_per_test", "top_sets",
           "topk_overlap"]
