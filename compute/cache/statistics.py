"""The cache's statistics: accuracies and seed-paired accuracy differences, each with a mean and a 95% interval over
seeds (and over source retraining where the cache has replicas: compute.intervals.summarise, source_spread).

Both sides use them: the reader for the explorer's pages, the writer for the influence stage, which picks the budget
that transferred best from `delta_summary` (compute.best_budget).

"Cell" here: the runs one mean summarises, (source, target, n_train, blocks[, epoch]), or for a difference the
(target, n_train, blocks[, epoch]) both sides share; the seeds vary inside a cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pandas as pd

from compute.errors import RtxError
from compute.intervals import source_spread, summarise


def per_seed_rows(which: str) -> tuple[str, str]:
    """SQL for one accuracy per run ('final') or per run and evaluated epoch ('curve'), with the source model the run
    started from (`model`: a replica's name, compute.replicas), and the extra grouping column."""
    model = "json_extract_string(r.config, '$.source') AS model"
    if which == "final":
        return (f"SELECT r.source, {model}, r.target, r.n_train, r.blocks, r.seed, r.final_test_acc AS acc "
                "FROM runs r WHERE r.status = 'done'"), ""
    if which == "curve":
        return (f"SELECT r.source, {model}, r.target, r.n_train, r.blocks, r.seed, m.epoch, m.test_acc AS acc "
                "FROM runs r JOIN epoch_metrics m ON m.run_key = r.key WHERE r.status = 'done'"), ", epoch"
    raise RtxError(f"unknown summary {which!r}; valid choices: curve, final")


class PairedDeltas:
    """Mean and 95% interval over seeds (and source retraining, compute.intervals.summarise) of accuracies and of
    seed-paired accuracy differences, for the reader (the explorer's pages) and the writer (the influence stage
    picks the budget that transferred best from them). Needs `self.con` (None: an empty cache, empty frames)."""

    con: duckdb.DuckDBPyConnection | None

    def final_summary(self) -> pd.DataFrame:
        """Mean and 95% interval of final test accuracy per (source, target, n_train, blocks): over seeds, and over
        source retraining where the cache has replicas (compute.intervals.summarise)."""
        return self._summary("final")

    def curve_summary(self) -> pd.DataFrame:
        """As `final_summary`, per evaluated epoch too (source, target, n_train, blocks, epoch)."""
        return self._summary("curve")

    def delta_summary(self, natural: str, which: str = "final") -> pd.DataFrame:
        """Robust-minus-natural accuracy per cell, paired by seed (same seed = same subset), with 95% interval.

        One row per (source, target, n_train, blocks[, epoch]) for every source other than `natural`.
        """
        return self._paired_delta(which, ["target", "n_train", "blocks"], "source",
                                  "b.source = ? AND a.source <> ?", [natural, natural])

    def blocks_delta_summary(self, high: int, low: int, which: str = "final") -> pd.DataFrame:
        """Accuracy with `high` fine-tuned blocks minus with `low` (the paper's Fig. 4b: 3 minus 1), paired by seed.

        One row per (source, target, n_train[, epoch]) with n_seeds, mean, sd and the 95% t-interval lo, hi.
        """
        return self._paired_delta(which, ["source", "target", "n_train"], None, "a.blocks = ? AND b.blocks = ?",
                                  [high, low], across_sources=False)

    def _per_seed(self, which: str) -> tuple[pd.DataFrame, list[str]]:
        """One row per run (and epoch): source, model, target, n_train, blocks, seed[, epoch], acc; and the cell."""
        rows, epoch = per_seed_rows(which)
        return self.con.execute(rows).df(), ["target", "n_train", "blocks"] + (["epoch"] if epoch else [])

    def _summary(self, which: str) -> pd.DataFrame:
        if self.con is None:
            return pd.DataFrame()
        per, cell = self._per_seed(which)
        return summarise(per, ["source", *cell], spread=source_spread(per, cell))

    def _paired_delta(self, which: str, match: list[str], label: str | None, pairing: str,
                      params: Sequence[Any], across_sources: bool = True) -> pd.DataFrame:
        """Mean and 95% interval over seeds of a.acc - b.acc, where runs a and b share `match` (+ epoch) and seed
        and `pairing` (a WHERE clause on a and b) says which is which; `label` is a column of a kept in the output.
        `across_sources`: a and b come from different source models, so retraining each adds its spread (False
        when both sides are the same model, e.g. 3 minus 1 fine-tuned blocks of one source)."""
        if self.con is None:
            return pd.DataFrame()
        rows, epoch = per_seed_rows(which)
        cell = match + (["epoch"] if epoch else [])
        group = ([label] if label else []) + cell
        join = " AND ".join(f"a.{c} = b.{c}" for c in [*cell, "seed"])
        paired = self.con.execute(
            f"""
            WITH per AS ({rows})
            SELECT {', '.join('a.' + c for c in group)}, a.seed, a.model AS model_a, b.model AS model_b,
                   a.acc - b.acc AS acc
            FROM per a JOIN per b ON {join} WHERE {pairing}
            """,
            list(params),
        ).df()
        spread = source_spread(*self._per_seed(which)) if across_sources else None
        return summarise(paired, group, ("model_a", "model_b"), spread)


__all__ = ["PairedDeltas", "per_seed_rows"]
