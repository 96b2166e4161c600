"""The cache's schema: its tables, the append-only migrations that build them, and where the files are.

A writer migrates on open (`migrate`); a reader opens the snapshot read-only, so it cannot, and says so with
`OLD_SCHEMA` when the snapshot was written before the newest migration.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from compute import paths
from compute.errors import RtxError
from compute.paths import DB_NAME, cache_dir
from compute.records import constraint_columns, target_columns

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

TABLES = ("source_models", "runs", "epoch_metrics", "robustness", "influence", "influence_topk", "featviz", "thumbnails")


def db_path(root: Path | None = None) -> Path:
    return (root or cache_dir()) / DB_NAME


def snapshot_path(root: Path | None = None) -> Path:
    return paths.snapshot_path(root or cache_dir())


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring the database to `SCHEMA_VERSION`, one transaction per migration; refuse a newer one."""
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


__all__ = ["MIGRATIONS", "OLD_SCHEMA", "SCHEMA_VERSION", "TABLES", "db_path", "migrate", "snapshot_path"]
