"""The cache's single writer: the connection and why it did not open, one transaction per recorded job, and
publishing the snapshot readers open.

One process writes `rtx.duckdb`; DuckDB refuses a second process while it holds the file, so after each recorded
job the writer publishes a snapshot `rtx.snapshot.duckdb` (checkpoint, copy, atomic rename). A job is written in one
transaction: kill -9 mid-write leaves a cache that opens (DuckDB replays or drops its WAL) and holds every job
recorded before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from compute import records as rec
from compute.cache.queries import CacheQueries
from compute.cache.rows import sql_values, to_json
from compute.cache.schema import db_path, migrate, snapshot_path
from compute.cache_diagnosis import open_error
from compute.errors import RtxError
from compute.paths import cache_dir
from compute.roles import SourceRoles


class CacheWriter(CacheQueries):
    """The single writer. Use as a context manager; every `record_*` is one transaction, published after."""

    def __init__(self, root: Path | None = None, publish_every: float = 1.0):
        self.root = root or cache_dir()
        self.publish_every = publish_every
        self._last_publish = 0.0
        self.root.mkdir(parents=True, exist_ok=True)
        self.con = None
        try:  # a lock held by another process, or a file DuckDB cannot read: compute.cache_diagnosis tells which
            self.con = duckdb.connect(str(db_path(self.root)))
            migrate(self.con)
        except duckdb.Error as err:
            if self.con is not None:
                self.con.close()
            raise open_error(self.root, err) from err
        self.publish(force=True)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.con is not None:
            self.publish(force=True)
            self.con.close()
            self.con = None

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")
        self.publish()

    def publish(self, force: bool = False) -> None:
        """Copy the database to the snapshot readers open; throttled to one copy per `publish_every` s.

        The copy is made by DuckDB itself (COPY FROM DATABASE into a fresh file, then an atomic rename): opening
        the live file from Python and closing it again would drop DuckDB's POSIX lock on it.
        """
        now = time.monotonic()
        if not force and now - self._last_publish < self.publish_every:
            return
        target = snapshot_path(self.root)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        tmp.unlink(missing_ok=True)
        db_name = self.con.execute("SELECT current_database()").fetchone()[0]
        self.con.execute(f"ATTACH '{tmp}' AS snapshot_out")
        try:
            self.con.execute(f"COPY FROM DATABASE {db_name} TO snapshot_out")
        finally:
            self.con.execute("DETACH snapshot_out")
        os.replace(tmp, target)
        self._last_publish = now

    # --- writes -------------------------------------------------------------------------------
    def _insert(self, con: duckdb.DuckDBPyConnection, table: str, row: dict[str, Any]) -> None:
        row = sql_values(row)
        cols, values = list(row), list(row.values())
        con.execute(
            f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values
        )

    def record_source_model(self, record: rec.SourceRecord) -> None:
        with self.transaction() as con:
            self._insert(con, "source_models", record.columns())

    def record_run(self, run: rec.RunRecord, curve: Sequence[rec.CurvePoint]) -> None:
        """One fine-tune: its `runs` row and its learning curve, together or not at all."""
        with self.transaction() as con:
            con.execute("DELETE FROM epoch_metrics WHERE run_key = ?", [run.key])
            self._insert(con, "runs", run.columns())
            if curve:
                con.register("curve_frame", _curve_frame([run], [curve]))
                con.execute("INSERT INTO epoch_metrics SELECT run_key, epoch, test_acc, train_loss FROM curve_frame")
                con.unregister("curve_frame")

    def record_runs(self, runs: Sequence[rec.RunRecord], curves: Sequence[Sequence[rec.CurvePoint]]) -> None:
        """Many fine-tunes in one transaction (imports and synthetic benchmark caches); same rows as `record_run`."""
        if len(runs) != len(curves):
            raise RtxError(f"record_runs got {len(runs)} runs but {len(curves)} curves; pass one curve per run")
        if not runs:
            return
        frame = pd.DataFrame([sql_values(run.columns()) for run in runs])
        points = _curve_frame(runs, curves)
        cols = ", ".join(frame.columns)
        with self.transaction() as con:
            con.register("runs_frame", frame)
            con.register("points_frame", points)
            con.execute("DELETE FROM epoch_metrics WHERE run_key IN (SELECT key FROM runs_frame)")
            con.execute(f"INSERT OR REPLACE INTO runs ({cols}) SELECT {cols} FROM runs_frame")
            con.execute("INSERT INTO epoch_metrics SELECT run_key, epoch, test_acc, train_loss FROM points_frame")
            con.unregister("runs_frame")
            con.unregister("points_frame")

    def record_robustness(self, rows: Sequence[rec.RobustnessRecord]) -> None:
        with self.transaction() as con:
            for row in rows:
                self._insert(con, "robustness", row.columns())

    def record_influence(self, row: rec.InfluenceRecord, topk: pd.DataFrame) -> None:
        """An influence result and its per-test top-k table (influence_key, test_pos, rank, train_pos, score)."""
        with self.transaction() as con:
            con.execute("DELETE FROM influence_topk WHERE influence_key = ?", [row.key])
            self._insert(con, "influence", row.columns())
            con.register("topk_frame", topk)
            con.execute(
                "INSERT INTO influence_topk SELECT influence_key, test_pos, rank, train_pos, score FROM topk_frame"
            )
            con.unregister("topk_frame")

    def record_featviz(self, rows: Sequence[rec.FeatvizRecord]) -> None:
        with self.transaction() as con:
            for row in rows:
                self._insert(con, "featviz", row.columns())

    def record_thumbnails(self, rows: Sequence[rec.ThumbnailRecord]) -> None:
        """Many thumbnails in one bulk statement (a paper-sized influence run stores ~13,000)."""
        if not rows:
            return
        frame = pd.DataFrame([r.columns() for r in rows], columns=["dataset", "split", "idx", "label", "png"])
        with self.transaction() as con:
            con.register("thumbs_frame", frame)
            con.execute("INSERT OR REPLACE INTO thumbnails SELECT dataset, split, idx, label, png FROM thumbs_frame")
            con.unregister("thumbs_frame")

    def set_source_roles(self, roles: SourceRoles) -> None:
        """Record which source plays which part (compute.roles: `role` and `table7` in each source's meta),
        clearing every earlier record: the preset of the latest sources stage decides (`source_roles` reads it)."""
        with self.transaction() as con:
            con.execute("UPDATE source_models SET meta = json_merge_patch(coalesce(meta, '{}'), ?)",
                        [to_json({"role": None, "table7": None})])
            for name, patch in roles.meta().items():
                con.execute("UPDATE source_models SET meta = json_merge_patch(coalesce(meta, '{}'), ?) WHERE name = ?",
                            [to_json(patch), name])

    def set_influence_roles(self, run_keys: Sequence[str], method: str, cutoff: float,
                            roles: dict[str, dict[str, Any]]) -> None:
        """Which influence result plays which part in one comparison (`roles`: influence key -> {"role": ...,
        "role_note": ...}): the roles of every other result of those runs, method and cut-off are cleared, so
        the best budget of the latest influence stage is the only one labelled so."""
        cleared = to_json({"role": None, "role_note": None, "best_budget": None})
        with self.transaction() as con:
            con.execute("UPDATE influence SET meta = json_merge_patch(coalesce(meta, '{}'), ?) "
                        "WHERE list_contains(?, run_key) AND method = ? AND cutoff = ?",
                        [cleared, list(run_keys), method, cutoff])
            for key, patch in roles.items():
                con.execute("UPDATE influence SET meta = json_merge_patch(coalesce(meta, '{}'), ?) WHERE key = ?",
                            [to_json(patch), key])

    def schema_versions(self) -> list[int]:
        """Every schema version this cache was migrated through, oldest first."""
        return [r[0] for r in self.con.execute("SELECT version FROM schema_version ORDER BY version").fetchall()]

    def source_checksums(self) -> dict[str, str]:
        return dict(self.con.execute("SELECT name, checksum FROM source_models").fetchall())

    def robustness_done(self) -> dict[tuple[str, str, str, float, int], int]:
        """(source, dataset, norm, eps, steps) -> n_images of every robustness row already recorded."""
        rows = self.con.execute("SELECT source, dataset, norm, eps, steps, n_images FROM robustness").fetchall()
        return {(s, d, n, float(e), int(k)): int(m) for s, d, n, e, k, m in rows}

    def forget_robustness(self, source: str) -> None:
        """Drop a source's robustness rows: its weights changed, so they no longer describe it."""
        with self.transaction() as con:
            con.execute("DELETE FROM robustness WHERE source = ?", [source])

    def has_thumbnails(self, dataset: str, split: str) -> bool:
        row = self.con.execute("SELECT count(*) FROM thumbnails WHERE dataset = ? AND split = ?", [dataset, split])
        return row.fetchone()[0] > 0

    def clear_failed(self) -> int:
        """Delete every failed run (they are retried by the next sweep either way); returns how many there were."""
        with self.transaction() as con:
            failed = con.execute("SELECT count(*) FROM runs WHERE status = 'failed'").fetchone()[0]
            con.execute("DELETE FROM epoch_metrics WHERE run_key IN (SELECT key FROM runs WHERE status = 'failed')")
            con.execute("DELETE FROM runs WHERE status = 'failed'")
        return int(failed)

    def done_keys(self) -> set[str]:
        """Keys of runs that completed (failed runs are retried)."""
        return {r[0] for r in self.con.execute("SELECT key FROM runs WHERE status = 'done'").fetchall()}

    # --- stage look-ups (compute.stages.influence, compute.stages.featviz) ------------------------------------
    def has_influence(self, key: str) -> bool:
        return self.con.execute("SELECT count(*) FROM influence WHERE key = ?", [key]).fetchone()[0] > 0

    def has_featviz(self, key: str) -> bool:
        return self.con.execute("SELECT count(*) FROM featviz WHERE key = ?", [key]).fetchone()[0] > 0

    def thumbnail_indices(self, dataset: str, split: str) -> set[int]:
        rows = self.con.execute("SELECT idx FROM thumbnails WHERE dataset = ? AND split = ?", [dataset, split])
        return {r[0] for r in rows.fetchall()}

    def curve_lengths(self) -> dict[str, int]:
        """Run key -> number of learning-curve points recorded for it."""
        rows = self.con.execute("SELECT run_key, count(*) FROM epoch_metrics GROUP BY run_key").fetchall()
        return {key: int(n) for key, n in rows}

    def run_keys(self, source: str, target: str, n_train: int, blocks: int) -> list[str]:
        """Keys of the runs of one source on one (target, subset size, blocks), by seed."""
        rows = self.con.execute("SELECT key FROM runs WHERE source = ? AND target = ? AND n_train = ? AND blocks = ? "
                                "ORDER BY seed", [source, target, n_train, blocks]).fetchall()
        return [r[0] for r in rows]


def _curve_frame(runs: Sequence[rec.RunRecord], curves: Sequence[Sequence[rec.CurvePoint]]) -> pd.DataFrame:
    """The epoch_metrics rows of runs (run_key, epoch, test_acc, train_loss)."""
    return pd.DataFrame([(run.key, p.epoch, p.test_acc, p.train_loss) for run, curve in zip(runs, curves, strict=True)
                         for p in curve], columns=["run_key", "epoch", "test_acc", "train_loss"])


__all__ = ["CacheWriter"]
