"""The read queries both sides of the cache share: the writer (stage look-ups: which fine-tune to score, is a
source recorded) and the reader (the explorer, the demo, `rtx influence --run`) ask them the same way.

One-row reads return records (compute.records, through compute.cache.rows), never dicts; the statistics come from
`PairedDeltas` (compute.cache.statistics).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pandas as pd

from compute import records as rec
from compute.cache.rows import (
    KEPT_RUN_COLUMNS,
    fetch_rows,
    influence_record,
    kept_run,
    run_record,
    source_record,
)
from compute.cache.statistics import PairedDeltas

# Done fine-tunes of one influence subset, (target, n_train, seed, blocks) (the influence stage's input); the newest
# first when one was re-run.
INFLUENCE_RUNS_SQL = (
    f"SELECT {KEPT_RUN_COLUMNS} FROM runs WHERE status = 'done' AND target = ? AND n_train = ? AND seed = ? "
    "AND blocks = ? ORDER BY source, created DESC"
)
DONE_RUN_SQL = f"SELECT {KEPT_RUN_COLUMNS} FROM runs WHERE status = 'done' AND key = ?"


class CacheQueries(PairedDeltas):
    """Reads on `self.con` (None: an empty cache, where every read is empty)."""

    con: duckdb.DuckDBPyConnection | None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        if self.con is None:
            return pd.DataFrame()
        return self.con.execute(sql, list(params)).df()

    def influence_runs(self, target: str, n_train: int, seed: int, blocks: int) -> list[rec.KeptRun]:
        """Done fine-tunes of one (target, subset size, seed, blocks) subset, by source, the newest first."""
        return [kept_run(r) for r in fetch_rows(self.con, INFLUENCE_RUNS_SQL, [target, n_train, seed, blocks])]

    def kept_by_source(self, target: str, n_train: int, seed: int, blocks: int) -> dict[str, rec.KeptRun]:
        """Source -> its newest done fine-tune of the subset with kept weights (what influence can score)."""
        found: dict[str, rec.KeptRun] = {}
        for run in self.influence_runs(target, n_train, seed, blocks):
            if run.model_path is not None:
                found.setdefault(run.source, run)
        return found

    def runs_with_weights(self) -> list[rec.KeptRun]:
        """Every done fine-tune that kept its weights (what `rtx influence --run` can score), by key."""
        sql = f"SELECT {KEPT_RUN_COLUMNS} FROM runs WHERE status = 'done' AND model_path IS NOT NULL ORDER BY key"
        return [kept_run(r) for r in fetch_rows(self.con, sql)]

    def done_run(self, key: str) -> rec.KeptRun | None:
        """One completed run (with its subset and model path), or None."""
        rows = fetch_rows(self.con, DONE_RUN_SQL, [key])
        return kept_run(rows[0]) if rows else None

    def run(self, key: str) -> rec.RunRecord | None:
        """The run `key`, done or failed (config parsed), or None."""
        rows = fetch_rows(self.con, "SELECT * FROM runs WHERE key = ?", [key])
        return run_record(rows[0]) if rows else None

    def influence(self, key: str) -> rec.InfluenceRecord | None:
        """The influence result `key` (meta parsed), or None."""
        rows = fetch_rows(self.con, "SELECT * FROM influence WHERE key = ?", [key])
        return influence_record(rows[0]) if rows else None

    def source_row(self, name: str) -> rec.SourceRecord | None:
        """The recorded source `name` (meta parsed), or None."""
        rows = fetch_rows(self.con, "SELECT * FROM source_models WHERE name = ?", [name])
        return source_record(rows[0]) if rows else None


__all__ = ["DONE_RUN_SQL", "INFLUENCE_RUNS_SQL", "CacheQueries"]
