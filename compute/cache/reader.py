"""The cache's readers' side: a read-only view of the latest published snapshot, and the listings and aggregates
the explorer, the demo and `rtx status` show.

Readers (`CacheReader`, the explorer, the demo) open the snapshot `rtx.snapshot.duckdb` read-only and see new
results when they `reopen()`; the writer publishes it after each recorded job (compute.cache.writer).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from compute.cache.queries import CacheQueries
from compute.cache.rows import parse_json
from compute.cache.schema import OLD_SCHEMA, SCHEMA_VERSION, TABLES, snapshot_path
from compute.cache_diagnosis import snapshot_error
from compute.errors import RtxError
from compute.paths import cache_dir
from compute.replicas import REPLICA_MARK
from compute.roles import SourceFacts, SourceRoles, read_roles

# The runs every page and listing sees: a failed row is left out once a run of the same job completed after it (same
# config but for the source's checksum: the source was retrained or re-imported, so the key changed). A later success
# with the same key needs nothing here: it replaces the failed row itself (INSERT OR REPLACE on the key).
LIVE_RUNS = """(SELECT * FROM runs f WHERE f.status <> 'failed' OR NOT EXISTS (
    SELECT 1 FROM runs d WHERE d.status = 'done' AND d.source = f.source AND d.target = f.target AND d.seed = f.seed
    AND d.blocks = f.blocks AND d.n_train IS NOT DISTINCT FROM f.n_train AND d.created >= f.created
    AND json_merge_patch(d.config, '{"source_checksum": null}')::VARCHAR
        = json_merge_patch(f.config, '{"source_checksum": null}')::VARCHAR))"""
FAILED_RUNS_SQL = (
    f"SELECT key, source, target, n_train, seed, blocks, split_part(error, ' | ', 1) AS error, created "
    f"FROM {LIVE_RUNS} AS runs WHERE status = 'failed' ORDER BY created"
)


@dataclass(frozen=True)
class CacheVersion:
    """Identifies a published snapshot; readers key their memoisation on it."""

    path: str
    mtime_ns: int


class CacheReader(CacheQueries):
    """Read-only view of the latest published snapshot; `reopen()` picks up newer results."""

    def __init__(self, root: Path | None = None):
        self.root = root or cache_dir()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.version = CacheVersion("", 0)
        self.reopen()

    def reopen(self) -> bool:
        """Switch to the newest snapshot if it changed; returns True when it did."""
        snap = snapshot_path(self.root)
        if not snap.exists():
            return False
        stat = snap.stat()
        if CacheVersion(str(snap), stat.st_mtime_ns) == self.version:
            return False
        if self.con is not None:
            self.con.close()
            self.con = None
        for attempt in range(20):
            try:
                # A fresh in-memory instance per open: DuckDB caches instances by path within a process, so
                # connecting to the path again could hand back the previous (replaced) snapshot.
                con = duckdb.connect()
                con.execute(f"ATTACH '{snap}' AS cache (READ_ONLY)")
                con.execute("USE cache")
                version = con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0] or 0
                break
            except duckdb.Error as err:  # the rename raced us; try again
                if attempt == 19:
                    raise snapshot_error(self.root, err) from err
                time.sleep(0.05)
        if version < SCHEMA_VERSION:  # read-only: it cannot migrate; a writer does on open
            con.close()
            raise RtxError(OLD_SCHEMA.format(root=self.root, version=version, current=SCHEMA_VERSION))
        self.con, self.version = con, CacheVersion(str(snap), stat.st_mtime_ns)
        return True

    @property
    def empty(self) -> bool:
        return self.con is None

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    # --- listings and aggregates (one-row reads are shared: compute.cache.queries) ---------------------
    def counts(self) -> pd.DataFrame:
        """Rows per table (the `rtx status` and overview page summary)."""
        if self.con is None:
            return pd.DataFrame({"table": list(TABLES), "rows": [0] * len(TABLES)})
        sql = " UNION ALL ".join(f"SELECT '{t}' AS table, count(*) AS rows FROM {LIVE_RUNS if t == 'runs' else t}"
                                 for t in TABLES)
        return self._query(sql)

    def source_models(self) -> pd.DataFrame:
        """One row per source (a replicated source's replicas, compute.replicas, are counted in `replicas`, not
        listed: runs are recorded under the family's name, so every page joins on it)."""
        return self._query(
            f"SELECT * EXCLUDE (meta), meta::VARCHAR AS meta, (SELECT count(*) FROM source_models r WHERE "
            f"split_part(r.name, '{REPLICA_MARK}', 1) = s.name) AS replicas FROM source_models s "
            f"WHERE s.name NOT LIKE '%{REPLICA_MARK}%' ORDER BY name")

    def runs(self, status: str | None = None) -> pd.DataFrame:
        where = "WHERE status = ?" if status else ""
        return self._query(
            f"SELECT * EXCLUDE (config, subset_indices), config::VARCHAR AS config FROM {LIVE_RUNS} AS runs {where} "
            "ORDER BY created",
            [status] if status else [],
        )

    def failed_runs(self) -> pd.DataFrame:
        """Failed runs no later run superseded, oldest first, with the first line of each error (`rtx status --failed`)."""
        return self._query(FAILED_RUNS_SQL)

    def targets(self) -> list[str]:
        frame = self._query("SELECT DISTINCT target FROM runs WHERE status = 'done' ORDER BY target")
        return [] if frame.empty else frame["target"].tolist()

    def learning_curve(self, run_key: str) -> pd.DataFrame:
        return self._query("SELECT epoch, test_acc, train_loss FROM epoch_metrics WHERE run_key = ? ORDER BY epoch",
                          [run_key])

    def robustness(self) -> pd.DataFrame:
        return self._query("SELECT * FROM robustness ORDER BY source, norm, eps, steps")

    def source_roles(self) -> SourceRoles:
        """Which source is natural, the paper analogue and each Table 7 column: as the sources stage recorded
        them, or derived once from an older cache's columns (compute.roles.read_roles)."""
        frame = self._query("SELECT name, kind, norm, eps, steps, meta::VARCHAR AS meta FROM source_models "
                            "ORDER BY name")
        return read_roles([SourceFacts(str(r.name), None if pd.isna(r.kind) else str(r.kind),
                                       None if pd.isna(r.norm) else str(r.norm), None if pd.isna(r.eps) else float(r.eps),
                                       0 if pd.isna(r.steps) else int(r.steps), parse_json(r.meta))
                           for r in frame.itertuples()])

    def influence_results(self) -> pd.DataFrame:
        """Every influence result with its run's subset and its part in the comparison (`role`: 'natural', 'paper
        analogue', 'best budget', ...; `role_note`: why; NULL when the stage recorded none)."""
        return self._query(
            "SELECT i.key, i.run_key, i.method, i.cutoff, i.n_train, i.n_test, i.seconds, i.label_match, "
            "r.source, json_extract_string(r.config, '$.source') AS model, r.target, r.n_train AS subset_size, r.seed, "
            "r.blocks, i.matrix_path, i.query_path, "
            "json_extract_string(i.meta, '$.role') AS role, json_extract_string(i.meta, '$.role_note') AS role_note "
            "FROM influence i JOIN runs r ON r.key = i.run_key ORDER BY r.target, r.source"
        )

    def influence_topk(self, key: str, k: int | None = None) -> pd.DataFrame:
        limit = "AND rank < ?" if k else ""
        return self._query(
            f"SELECT test_pos, rank, train_pos, score FROM influence_topk WHERE influence_key = ? {limit} "
            "ORDER BY test_pos, rank",
            [key, k] if k else [key],
        )

    def featviz(self) -> pd.DataFrame:
        return self._query("SELECT * FROM featviz ORDER BY seed_image, unit, model")

    def thumbnails(self, dataset: str | None = None, split: str = "train") -> pd.DataFrame:
        if dataset is None:
            return self._query("SELECT * FROM thumbnails ORDER BY dataset, split, idx")
        return self._query("SELECT * FROM thumbnails WHERE dataset = ? AND split = ? ORDER BY idx", [dataset, split])

    def artefact(self, relative: str) -> Path:
        """Absolute path of an artefact stored under the cache directory."""
        return self.root / relative

    # --- explorer reads (aggregated here so pages stay fast on a 14,400-run cache) ----------------
    def run_counts(self) -> pd.DataFrame:
        """Runs per (source, target, status): seeds, sizes and blocks covered (the overview's table)."""
        return self._query(
            "SELECT source, target, status, count(*) AS runs, count(DISTINCT seed) AS seeds, "
            "min(n_train) AS min_n_train, max(n_train) AS max_n_train, "
            "string_agg(DISTINCT blocks::VARCHAR, ',' ORDER BY blocks::VARCHAR) AS blocks "
            f"FROM {LIVE_RUNS} AS runs GROUP BY source, target, status ORDER BY source, target, status"
        )

    def thumbnail_summary(self) -> pd.DataFrame:
        """Images stored per (dataset, split) and how many labels they cover."""
        return self._query("SELECT dataset, split, count(*) AS images, count(DISTINCT label) AS labels "
                          "FROM thumbnails GROUP BY dataset, split ORDER BY dataset, split")

    def thumbnail_samples(self, split: str = "test", per_label: int = 1) -> pd.DataFrame:
        """The first `per_label` thumbnails of every label of every dataset in `split` (dataset, idx, label, png)."""
        return self._query(
            "SELECT dataset, idx, label, png FROM thumbnails WHERE split = ? "
            "QUALIFY row_number() OVER (PARTITION BY dataset, label ORDER BY idx) <= ? ORDER BY dataset, label, idx",
            [split, per_label],
        )

    def thumbnail_pngs(self, dataset: str, split: str, indices: Sequence[int]) -> pd.DataFrame:
        """Thumbnails of the given dataset indices only (idx, label, png): the influence page shows a page at a time."""
        if self.con is None or not len(indices):
            return pd.DataFrame(columns=["idx", "label", "png"])
        return self._query(
            "SELECT idx, label, png FROM thumbnails WHERE dataset = ? AND split = ? AND list_contains(?, idx) ORDER BY idx",
            [dataset, split, [int(i) for i in indices]],
        )


__all__ = ["FAILED_RUNS_SQL", "LIVE_RUNS", "CacheReader", "CacheVersion"]
