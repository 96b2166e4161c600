"""The only module that speaks SQL: schema, migrations, writes and typed reads of the DuckDB cache.

One process writes `rtx.duckdb` (the `CacheWriter`); DuckDB refuses a second process while it holds the
file, so after each recorded job the writer publishes a snapshot `rtx.snapshot.duckdb` (checkpoint, copy,
atomic rename). Readers (`CacheReader`, the explorer, the demo) open the snapshot read-only and see new
results when they reopen. A job is written in one transaction: kill -9 mid-write leaves a cache that
opens (DuckDB replays or drops its WAL) and holds every job recorded before.

Large arrays (influence matrices, model weights) live beside the database under the cache directory,
addressed by job key through `compute.paths.artefact_path`; the database stores their relative paths.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from compute import paths
from compute import records as rec
from compute.cache_diagnosis import open_error, snapshot_error
from compute.errors import RtxError
from compute.intervals import source_spread, summarise
from compute.paths import DB_NAME, cache_dir
from compute.records import constraint_columns, target_columns
from compute.replicas import REPLICA_MARK
from compute.roles import SourceFacts, SourceRoles, read_roles

SCHEMA_VERSION = 2
# What a reader says about a snapshot written before the newest migration (it opens read-only, so cannot migrate).
OLD_SCHEMA = ("the cache in {root} was written by an older rtx (schema v{version}, this one reads v{current}); run "
              "any rtx command that writes to it, e.g. `rtx --cache {root} precompute --stages thumbnails`, to migrate it")


def _migration_2(con: duckdb.DuckDBPyConnection) -> None:
    """Parsed columns: a source's kind, norm, eps, steps and a run's base dataset and variant, filled for the rows
    already there from their constraint text and target spec (by the parsers in compute.records)."""
    for column, sql_type in (("kind", "VARCHAR"), ("norm", "VARCHAR"), ("eps", "DOUBLE"), ("steps", "INTEGER")):
        con.execute(f"ALTER TABLE source_models ADD COLUMN {column} {sql_type}")
    con.execute("ALTER TABLE runs ADD COLUMN base_dataset VARCHAR")
    con.execute("ALTER TABLE runs ADD COLUMN variant VARCHAR")
    for name, constraint, steps in con.execute("SELECT name, constraint_, attack_steps FROM source_models").fetchall():
        try:
            cols = constraint_columns(constraint or "none", steps or 0)
        except RtxError:  # a constraint this program cannot read stays unclassified (NULL)
            continue
        con.execute("UPDATE source_models SET kind = ?, norm = ?, eps = ?, steps = ? WHERE name = ?",
                    [cols["kind"], cols["norm"], cols["eps"], cols["steps"], name])
    for (target,) in con.execute("SELECT DISTINCT target FROM runs WHERE target IS NOT NULL").fetchall():
        cols = target_columns(target)
        con.execute("UPDATE runs SET base_dataset = ?, variant = ? WHERE target = ?",
                    [cols["base_dataset"], cols["variant"], target])


# Each entry migrates the schema from version i to i + 1 (SQL text, or a function for what SQL cannot parse);
# append, never edit.
MIGRATIONS: list[str | Callable[[duckdb.DuckDBPyConnection], None]] = [
    """
    CREATE TABLE IF NOT EXISTS source_models (
        name VARCHAR PRIMARY KEY, arch VARCHAR, constraint_ VARCHAR, attack_steps INTEGER,
        source_dataset VARCHAR, checksum VARCHAR, path VARCHAR, clean_acc DOUBLE,
        train_seconds DOUBLE, meta JSON, created TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE IF NOT EXISTS runs (
        key VARCHAR PRIMARY KEY, status VARCHAR, source VARCHAR, target VARCHAR, n_train INTEGER,
        seed BIGINT, blocks INTEGER, epochs INTEGER, config JSON, subset_indices INTEGER[],
        final_test_acc DOUBLE, final_train_loss DOUBLE, wall_seconds DOUBLE, device VARCHAR,
        error VARCHAR, model_path VARCHAR, created TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE IF NOT EXISTS epoch_metrics (
        run_key VARCHAR, epoch INTEGER, test_acc DOUBLE, train_loss DOUBLE, PRIMARY KEY (run_key, epoch));
    CREATE TABLE IF NOT EXISTS robustness (
        source VARCHAR, dataset VARCHAR, norm VARCHAR, eps DOUBLE, steps INTEGER, accuracy DOUBLE,
        n_images INTEGER, created TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (source, dataset, norm, eps, steps));
    CREATE TABLE IF NOT EXISTS influence (
        key VARCHAR PRIMARY KEY, run_key VARCHAR, method VARCHAR, cutoff DOUBLE, n_train INTEGER,
        n_test INTEGER, matrix_path VARCHAR, query_path VARCHAR, train_indices INTEGER[],
        test_indices INTEGER[], train_labels INTEGER[], test_labels INTEGER[], test_pred INTEGER[],
        label_match DOUBLE[], seconds DOUBLE, meta JSON, created TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE IF NOT EXISTS influence_topk (
        influence_key VARCHAR, test_pos INTEGER, rank INTEGER, train_pos INTEGER, score DOUBLE,
        PRIMARY KEY (influence_key, test_pos, rank));
    CREATE TABLE IF NOT EXISTS featviz (
        key VARCHAR, model VARCHAR, seed_image VARCHAR, unit INTEGER, steps INTEGER, step_size DOUBLE,
        png BLOB, seed_png BLOB, created TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (key, model, seed_image, unit));
    CREATE TABLE IF NOT EXISTS thumbnails (
        dataset VARCHAR, split VARCHAR, idx INTEGER, label INTEGER, png BLOB,
        PRIMARY KEY (dataset, split, idx));
    """,
    _migration_2,
]

# Done fine-tunes of one cell (the influence stage's input); the newest first when a cell was re-run.
INFLUENCE_RUNS_SQL = (
    "SELECT key, source, target, n_train, seed, blocks, subset_indices, model_path, config::VARCHAR AS config "
    "FROM runs WHERE status = 'done' AND target = ? AND n_train = ? AND seed = ? AND blocks = ? "
    "ORDER BY source, created DESC"
)
DONE_RUN_SQL = (
    "SELECT key, source, target, n_train, seed, blocks, subset_indices, model_path, config::VARCHAR AS config "
    "FROM runs WHERE status = 'done' AND key = ?"
)

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

TABLES = ("source_models", "runs", "epoch_metrics", "robustness", "influence", "influence_topk", "featviz", "thumbnails")


def db_path(root: Path | None = None) -> Path:
    return (root or cache_dir()) / DB_NAME


def snapshot_path(root: Path | None = None) -> Path:
    return paths.snapshot_path(root or cache_dir())


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    current = row[0] or 0
    if current > SCHEMA_VERSION:
        raise RtxError(f"cache schema v{current} is newer than this program (v{SCHEMA_VERSION}); upgrade rtx")
    for version in range(current, SCHEMA_VERSION):
        step = MIGRATIONS[version]
        con.execute("BEGIN")
        if callable(step):
            step(con)
        else:
            con.execute(step)
        con.execute("INSERT INTO schema_version VALUES (?)", [version + 1])
        con.execute("COMMIT")


def _per_seed_rows(which: str) -> tuple[str, str]:
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


class _PairedDeltas:
    """Mean and 95% interval over seeds (and source retraining, compute.intervals.summarise) of accuracies and of
    seed-paired accuracy differences, for the reader (the explorer's pages) and the writer (the influence stage
    picks the budget that transferred best from them). Needs `self.con`."""

    con: duckdb.DuckDBPyConnection | None

    def delta_summary(self, natural: str, which: str = "final") -> pd.DataFrame:
        """Robust-minus-natural accuracy per cell, paired by seed (same seed = same subset), with 95% interval.

        One row per (source, target, n_train, blocks[, epoch]) for every source other than `natural`.
        """
        return self._paired_delta(which, ["target", "n_train", "blocks"], "source",
                                  "b.source = ? AND a.source <> ?", [natural, natural])

    def _per_seed(self, which: str) -> tuple[pd.DataFrame, list[str]]:
        """One row per run (and epoch): source, model, target, n_train, blocks, seed[, epoch], acc; and the cell."""
        rows, epoch = _per_seed_rows(which)
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
        rows, epoch = _per_seed_rows(which)
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


class CacheWriter(_PairedDeltas):
    """The single writer. Use as a context manager; every `record_*` is one transaction."""

    def __init__(self, root: Path | None = None, publish_every: float = 1.0):
        self.root = root or cache_dir()
        self.publish_every = publish_every
        self._last_publish = 0.0
        self.root.mkdir(parents=True, exist_ok=True)
        self.con = None
        try:  # a lock held by another process, or a file DuckDB cannot read: compute.cache_diagnosis tells which
            self.con = duckdb.connect(str(db_path(self.root)))
            _migrate(self.con)
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
        cols = list(row)
        values = [json.dumps(v) if isinstance(v, dict) else v for v in row.values()]
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
        frame = pd.DataFrame([{k: json.dumps(v) if isinstance(v, dict) else v for k, v in run.columns().items()}
                              for run in runs])
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
                        [json.dumps({"role": None, "table7": None})])
            for name, patch in roles.meta().items():
                con.execute("UPDATE source_models SET meta = json_merge_patch(coalesce(meta, '{}'), ?) WHERE name = ?",
                            [json.dumps(patch), name])

    def set_influence_roles(self, run_keys: Sequence[str], method: str, cutoff: float,
                            roles: dict[str, dict[str, Any]]) -> None:
        """Which influence result plays which part in one comparison (`roles`: influence key -> {"role": ...,
        "role_note": ...}): the roles of every other result of those runs, method and cut-off are cleared, so
        the best budget of the latest influence stage is the only one labelled so."""
        cleared = json.dumps({"role": None, "role_note": None, "best_budget": None})
        with self.transaction() as con:
            con.execute("UPDATE influence SET meta = json_merge_patch(coalesce(meta, '{}'), ?) "
                        "WHERE list_contains(?, run_key) AND method = ? AND cutoff = ?",
                        [cleared, list(run_keys), method, cutoff])
            for key, patch in roles.items():
                con.execute("UPDATE influence SET meta = json_merge_patch(coalesce(meta, '{}'), ?) WHERE key = ?",
                            [json.dumps(patch), key])

    def source_row(self, name: str) -> rec.SourceRecord | None:
        """The recorded source `name` (meta parsed), or None."""
        frame = self._query("SELECT * EXCLUDE (meta), meta::VARCHAR AS meta FROM source_models WHERE name = ?", [name])
        return None if frame.empty else _source_record(frame.iloc[0].to_dict())

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

    # --- influence / featviz stage lookups (compute.influence, compute.featviz) ---------------------------------
    def influence_runs(self, target: str, n_train: int, seed: int, blocks: int) -> pd.DataFrame:
        """Done fine-tunes of one (target, subset size, seed, blocks) cell, one row per source."""
        return self._query(INFLUENCE_RUNS_SQL, [target, n_train, seed, blocks])

    def done_run(self, key: str) -> dict[str, Any] | None:
        """One completed run (with subset_indices and model_path), or None."""
        frame = self._query(DONE_RUN_SQL, [key])
        return None if frame.empty else frame.iloc[0].to_dict()

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
        """Keys of the runs of one (source, target, subset size, blocks) cell, by seed."""
        rows = self.con.execute("SELECT key FROM runs WHERE source = ? AND target = ? AND n_train = ? AND blocks = ? "
                                "ORDER BY seed", [source, target, n_train, blocks]).fetchall()
        return [r[0] for r in rows]

    def _query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        return self.con.execute(sql, list(params)).df()


def _curve_frame(runs: Sequence[rec.RunRecord], curves: Sequence[Sequence[rec.CurvePoint]]) -> pd.DataFrame:
    """The epoch_metrics rows of runs (run_key, epoch, test_acc, train_loss)."""
    return pd.DataFrame([(run.key, p.epoch, p.test_acc, p.train_loss) for run, curve in zip(runs, curves, strict=True)
                         for p in curve], columns=["run_key", "epoch", "test_acc", "train_loss"])


def _meta(text: Any) -> dict[str, Any]:
    """A JSON column as a dict: the only place that parses stored JSON."""
    if isinstance(text, dict):
        return text
    if text is None or (isinstance(text, float) and text != text):
        return {}
    return json.loads(text)


def _source_record(row: dict[str, Any]) -> rec.SourceRecord:
    return rec.SourceRecord(name=row["name"], arch=row["arch"], constraint=row["constraint_"],
                        attack_steps=int(row["attack_steps"]), source_dataset=row["source_dataset"],
                        checksum=row["checksum"], path=row["path"],
                        clean_acc=None if pd.isna(row["clean_acc"]) else float(row["clean_acc"]),
                        train_seconds=0.0 if pd.isna(row["train_seconds"]) else float(row["train_seconds"]),
                        meta=_meta(row["meta"]))


@dataclass(frozen=True)
class CacheVersion:
    """Identifies a published snapshot; readers key their memoisation on it."""

    path: str
    mtime_ns: int


class CacheReader(_PairedDeltas):
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

    def _query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        if self.con is None:
            return pd.DataFrame()
        return self.con.execute(sql, list(params)).df()

    # --- typed reads --------------------------------------------------------------------------
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

    def run(self, key: str) -> dict[str, Any] | None:
        frame = self._query("SELECT *, config::VARCHAR AS config_json FROM runs WHERE key = ?", [key])
        return None if frame.empty else frame.iloc[0].to_dict()

    def influence_runs(self, target: str, n_train: int, seed: int, blocks: int) -> pd.DataFrame:
        """Done fine-tunes of one (target, subset size, seed, blocks) cell, one row per source."""
        return self._query(INFLUENCE_RUNS_SQL, [target, n_train, seed, blocks])

    def targets(self) -> list[str]:
        frame = self._query("SELECT DISTINCT target FROM runs WHERE status = 'done' ORDER BY target")
        return [] if frame.empty else frame["target"].tolist()

    def learning_curve(self, run_key: str) -> pd.DataFrame:
        return self._query("SELECT epoch, test_acc, train_loss FROM epoch_metrics WHERE run_key = ? ORDER BY epoch",
                          [run_key])

    def robustness(self) -> pd.DataFrame:
        return self._query("SELECT * FROM robustness ORDER BY source, norm, eps, steps")

    def final_summary(self) -> pd.DataFrame:
        """Mean and 95% interval of final test accuracy per (source, target, n_train, blocks): over seeds, and over
        source retraining where the cache has replicas (compute.intervals.summarise)."""
        return self._summary("final")

    def curve_summary(self) -> pd.DataFrame:
        """As `final_summary`, per evaluated epoch too (source, target, n_train, blocks, epoch)."""
        return self._summary("curve")

    def source_roles(self) -> SourceRoles:
        """Which source is natural, the paper analogue and each Table 7 column: as the sources stage recorded
        them, or derived once from an older cache's columns (compute.roles.read_roles)."""
        frame = self._query("SELECT name, kind, norm, eps, steps, meta::VARCHAR AS meta FROM source_models "
                            "ORDER BY name")
        return read_roles([SourceFacts(str(r.name), None if pd.isna(r.kind) else str(r.kind),
                                       None if pd.isna(r.norm) else str(r.norm), None if pd.isna(r.eps) else float(r.eps),
                                       0 if pd.isna(r.steps) else int(r.steps), _meta(r.meta))
                           for r in frame.itertuples()])

    def influence_results(self) -> pd.DataFrame:
        """Every influence result with its run's cell and its part in the comparison (`role`: 'natural', 'paper
        analogue', 'best budget', ...; `role_note`: why; NULL when the stage recorded none)."""
        return self._query(
            "SELECT i.key, i.run_key, i.method, i.cutoff, i.n_train, i.n_test, i.seconds, i.label_match, "
            "r.source, json_extract_string(r.config, '$.source') AS model, r.target, r.n_train AS subset_size, r.seed, "
            "r.blocks, i.matrix_path, i.query_path, "
            "json_extract_string(i.meta, '$.role') AS role, json_extract_string(i.meta, '$.role_note') AS role_note "
            "FROM influence i JOIN runs r ON r.key = i.run_key ORDER BY r.target, r.source"
        )

    def influence(self, key: str) -> dict[str, Any] | None:
        frame = self._query("SELECT * EXCLUDE (meta), meta::VARCHAR AS meta FROM influence WHERE key = ?", [key])
        return None if frame.empty else {**frame.iloc[0].to_dict(), "meta": _meta(frame["meta"].iloc[0])}

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

    def blocks_delta_summary(self, high: int, low: int, which: str = "final") -> pd.DataFrame:
        """Accuracy with `high` fine-tuned blocks minus with `low` (the paper's Fig. 4b: 3 minus 1), paired by seed.

        One row per (source, target, n_train[, epoch]) with n_seeds, mean, sd and the 95% t-interval lo, hi.
        """
        return self._paired_delta(which, ["source", "target", "n_train"], None, "a.blocks = ? AND b.blocks = ?",
                                  [high, low], across_sources=False)

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
