"""The explorer's only door to the cache: a read-only `CacheReader` and reads memoised per snapshot.

Why it is shaped like this:
- `rtx precompute` publishes `rtx.snapshot.duckdb` atomically after each job; a reader sees new results only
  after `reopen()`. `snapshot()` reopens on a rerun (a stat when nothing changed; while a precompute keeps
  publishing, at most every `ADOPT_SECONDS`) and returns a `Snapshot` whose token names the published file
  version; every read below is `st.cache_data` keyed on it, so each aggregate is computed once per snapshot
  and a new snapshot refreshes pages without restart.
- One reader per cache directory is shared by all sessions (`st.cache_resource`); a DuckDB connection is
  not safe to use from several threads at once and `reopen()` swaps it, so every use holds `_LOCK`.
  Reads are aggregates computed in DuckDB (milliseconds) and then cached, so the lock is rarely contended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import streamlit as st

from app import pairing, spectra
from app.charts import sorted_heatmap_frame
from app.pairing import InfluenceCell
from compute.cache import CacheReader, snapshot_path
from compute.errors import RtxError
from compute.paths import cache_dir
from compute.records import InfluenceRecord
from compute.roles import SourceRoles

FILL_COMMAND = "rtx precompute --preset demo"
MAX_SNAPSHOTS = 32  # entries kept per read: a long precompute publishes often, old snapshots' results age out
ADOPT_SECONDS = 10.0  # a newer snapshot replaces the one pages read at most this often (see `snapshot`)

T = TypeVar("T")
_LOCK = threading.Lock()
_ADOPTED_AT: dict[str, float] = {}  # cache root -> when this server last adopted a snapshot


@dataclass(frozen=True)
class Snapshot:
    """Which published snapshot a page reads: the memoisation key of every read in this module."""

    root: str
    token: str  # "<snapshot path>@<mtime ns>"; "" while `rtx precompute` has published nothing

    @property
    def empty(self) -> bool:
        return not self.token


@st.cache_resource(show_spinner=False)
def _reader(root: str) -> CacheReader:
    return CacheReader(Path(root))


def _token(reader: CacheReader) -> str:
    return f"{reader.version.path}@{reader.version.mtime_ns}" if reader.version.path else ""


def snapshot(newest: bool = False) -> Snapshot:
    """The published snapshot pages read: the newest one, adopted by this server at most every `ADOPT_SECONDS`
    while `rtx precompute` keeps publishing, or at once when `newest` (the user asked for new results).

    Why the wait: every adoption is a new key for every cached read below, so each page's aggregates and charts
    are computed again; a precompute publishes about once a second, and recomputing on almost every click of
    every session doubled the server's CPU per page visit (`bench/explorer.py --sessions` with its writer).
    After a quiet spell the first read adopts a new snapshot at once (the wait counts from the last adoption).
    """
    root = str(cache_dir())
    try:
        with _LOCK:
            reader = _reader(root)
            now = time.monotonic()
            if newest or now - _ADOPTED_AT.get(root, float("-inf")) >= ADOPT_SECONDS:
                if reader.reopen() or (root not in _ADOPTED_AT and reader.version.path):  # (opened when created)
                    _ADOPTED_AT[root] = now
            return Snapshot(root, _token(reader))
    except RtxError as err:  # e.g. a snapshot written by an older rtx (compute.cache.OLD_SCHEMA): say so, stop
        st.error(str(err))
        st.stop()


def snapshot_changed(snap: Snapshot) -> bool:
    """True when a newer snapshot was published than `snap` (a stat only: cheap enough to poll)."""
    path = snapshot_path(Path(snap.root))
    try:
        return f"{path}@{path.stat().st_mtime_ns}" != snap.token
    except FileNotFoundError:
        return bool(snap.token)


def _read(snap: Snapshot, fn: Callable[[CacheReader], T]) -> T:
    with _LOCK:
        return fn(_reader(snap.root))


# --- tables ----------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def counts(snap: Snapshot) -> pd.DataFrame:
    return _read(snap, lambda r: r.counts())


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def source_models(snap: Snapshot) -> pd.DataFrame:
    return _read(snap, lambda r: r.source_models())


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def run_counts(snap: Snapshot) -> pd.DataFrame:
    return _read(snap, lambda r: r.run_counts())


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def robustness(snap: Snapshot) -> pd.DataFrame:
    """Each source's accuracy under each attack, with its `role` (`with_roles`)."""
    return with_roles(_read(snap, lambda r: r.robustness()), source_roles(snap))


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def final_summary(snap: Snapshot) -> pd.DataFrame:
    """Mean and 95% interval of final accuracy per (source, target, n_train, blocks), with the source's `role`."""
    return with_roles(_read(snap, lambda r: r.final_summary()), source_roles(snap))


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def curve_summary(snap: Snapshot) -> pd.DataFrame:
    """Mean and 95% interval of accuracy per (source, target, n_train, blocks, epoch), with the source's `role`."""
    return with_roles(_read(snap, lambda r: r.curve_summary()), source_roles(snap))


def with_roles(frame: pd.DataFrame, roles: SourceRoles, column: str = "source") -> pd.DataFrame:
    """`frame` with a `role` column: the part its `column`'s source plays ('natural', 'paper analogue' or None),
    what the charts colour by (app.charts.palette) and what a page's CSV says."""
    if frame.empty or column not in frame:
        return frame
    return frame.assign(role=frame[column].map(roles.role_of))


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def delta_summary(snap: Snapshot, reference: str, which: str = "final") -> pd.DataFrame:
    """Every other source minus `reference`, paired by seed (reference = natural for the paper's deltas)."""
    return _read(snap, lambda r: r.delta_summary(reference, which))


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def blocks_delta(snap: Snapshot, high: int, low: int) -> pd.DataFrame:
    """Accuracy with `high` fine-tuned blocks minus with `low`, paired by seed (Fig. 4b: 3 minus 1)."""
    return _read(snap, lambda r: r.blocks_delta_summary(high, low))


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def thumbnail_summary(snap: Snapshot) -> pd.DataFrame:
    return _read(snap, lambda r: r.thumbnail_summary())


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def thumbnail_samples(snap: Snapshot, split: str = "test", per_label: int = 1) -> pd.DataFrame:
    return _read(snap, lambda r: r.thumbnail_samples(split, per_label))


@st.cache_data(show_spinner=False, max_entries=64)
def thumbnails(snap: Snapshot, dataset: str, split: str, indices: tuple[int, ...]) -> dict[int, bytes]:
    """PNG bytes of the given dataset indices (only those stored; missing ones are absent)."""
    frame = _read(snap, lambda r: r.thumbnail_pngs(dataset, split, list(indices)))
    return {int(i): bytes(p) for i, p in zip(frame["idx"], frame["png"], strict=True)}


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def featviz(snap: Snapshot) -> pd.DataFrame:
    """The newest feature visualisation per (model, seed photo), PNGs included."""
    return spectra.latest_featviz(_read(snap, lambda r: r.featviz()))


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def featviz_spectra(snap: Snapshot) -> pd.DataFrame:
    """`spectra.featviz_spectra` of every visualisation in `featviz`, once per snapshot (a DCT per picture)."""
    viz = featviz(snap)
    return spectra.featviz_spectra(viz, spectra.model_groups(source_roles(snap), viz.get("model", ())))


# --- derived ---------------------------------------------------------------------------------------------------
# Every fact about a source or a target below comes from the columns compute records (schema 2: a source's kind,
# norm, eps, steps; a run's base_dataset and variant), never from re-parsing its constraint or target text.
@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def source_roles(snap: Snapshot) -> SourceRoles:
    """Which source is natural, the paper analogue and each Table 7 column (compute.roles): recorded by the
    sources stage, or derived once from a cache written before it recorded them. Every page reads roles here."""
    return _read(snap, lambda r: r.source_roles())


def natural_source(snap: Snapshot) -> str | None:
    """The natural reference source when it has runs (None otherwise: no robust-minus-natural to show)."""
    natural = source_roles(snap).natural
    return natural if natural in set(final_summary(snap).get("source", pd.Series(dtype=str))) else None


def analogue_source(snap: Snapshot) -> str | None:
    """The robust source that plays the paper's L2 eps 3 (compute.roles), None when the cache has none."""
    return source_roles(snap).analogue


def headline_robust(snap: Snapshot) -> str | None:
    """"The" robust model of the pages: the paper analogue when it has runs, else the first other robust source
    with runs by name."""
    ran = set(final_summary(snap).get("source", pd.Series(dtype=str))) - {natural_source(snap)}
    analogue = analogue_source(snap)
    return analogue if analogue in ran else min(ran) if ran else None


def source_label(row: pd.Series) -> str:
    """'l2_1.5: L2 ε=1.5, PGD(3)' from a source_models row (its kind, norm, eps and steps columns)."""
    name, kind = row["name"], row.get("kind")
    if kind == "natural":
        return f"{name}: natural training"
    if kind == "gaussian":
        return f"{name}: Gaussian σ={row['eps']:.3g}"
    norm = "L2" if row.get("norm") == "l2" else "L∞"
    steps = row.get("steps")
    return f"{name}: {norm} ε={row['eps']:.3g}, PGD({int(steps) if pd.notna(steps) else '?'})"


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def variant_targets(snap: Snapshot) -> dict[str, list[str]]:
    """Base dataset -> its variant targets that have finished runs, e.g. {'mnist5k': ['mnist5k+lowpass(400)']}."""
    runs = _read(snap, lambda r: r.runs("done"))
    if runs.empty:
        return {}
    variants = runs.loc[runs["variant"].notna(), ["base_dataset", "target"]].drop_duplicates()
    return {str(base): sorted(group["target"]) for base, group in variants.groupby("base_dataset", sort=True)}


# --- influence (Section 6) -------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def influence_results(snap: Snapshot) -> pd.DataFrame:
    """Influence results with their run's cell (target, subset_size, seed, blocks, source) and method."""
    return _read(snap, lambda r: r.influence_results())


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def influence_cells(snap: Snapshot) -> list[InfluenceCell]:
    """Influence results grouped as `app.pairing` does for the demo: one cell per subset, method and cut-off."""
    return pairing.influence_cells(influence_results(snap), source_roles(snap).naturals)


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def influence_row(snap: Snapshot, key: str) -> InfluenceRecord | None:
    """One stored result as the record the influence stage wrote (meta parsed by the reader), None when absent."""
    return _read(snap, lambda r: r.influence(key))


@st.cache_data(show_spinner=False, max_entries=MAX_SNAPSHOTS)
def influence_topk(snap: Snapshot, key: str, k: int) -> pd.DataFrame:
    return _read(snap, lambda r: r.influence_topk(key, k))


@st.cache_data(show_spinner=False, max_entries=16)
def influence_heatmap(snap: Snapshot, key: str, max_bins: int = 60) -> pd.DataFrame:
    """Fig. 7a cells for one result: the stored (n_train, n_test) matrix sorted by label and standardized by its
    norm as `compute.influence.derived.sorted_standardized` does (charts.sorted_heatmap_frame, held to it by a
    test), pooled, and transposed to test rows x train columns."""
    row = influence_row(snap, key)
    if row is None or not row.matrix_path:
        return pd.DataFrame()
    path = _read(snap, lambda r: r.artefact(row.matrix_path))
    if not path.exists():
        return pd.DataFrame()
    matrix = np.load(path, mmap_mode="r")  # (n_train, n_test) float32, read once by one matrix product
    pooled = sorted_heatmap_frame(matrix, np.asarray(row.train_labels), np.asarray(row.test_labels), max_bins)
    return pooled.rename(columns={"row_bin": "col_bin", "col_bin": "row_bin", "row_label": "col_label",
                                  "col_label": "row_label"})


@st.cache_data(show_spinner=False, max_entries=16)
def influence_matrix(snap: Snapshot, key: str) -> np.ndarray | None:
    """The stored (n_train, n_test) float32 matrix of one result, None when its NPY file is missing."""
    row = influence_row(snap, key)
    if row is None or not row.matrix_path:
        return None
    path = _read(snap, lambda r: r.artefact(row.matrix_path))
    return np.load(path) if path.exists() else None


def influence_exact(snap: Snapshot, key: str) -> bool | None:
    """Whether the result's method is exact (the stage records `exact` in its meta); None when not recorded."""
    row = influence_row(snap, key)
    exact = None if row is None else row.meta.get("exact")
    return None if exact is None else bool(exact)
