"""The only package that speaks SQL: the DuckDB cache, split by job.

- `schema`: the tables, the append-only migrations, where the database and its snapshot are.
- `rows`: records (compute.records) to SQL values and rows back to records; the only JSON codec of dict columns.
- `statistics`: mean and 95% interval of accuracies and seed-paired differences (`PairedDeltas`).
- `queries`: the reads writer and reader share (`CacheQueries`): one-row reads return records, not dicts.
- `writer`: `CacheWriter`, the single writer: connection, one transaction per job, snapshot publishing.
- `reader`: `CacheReader`, read-only on the latest snapshot: the listings and aggregates the pages show.

Large arrays (influence matrices, model weights) live beside the database under the cache directory,
addressed by job key through `compute.paths.artefact_path`; the database stores their relative paths.
"""

from __future__ import annotations

from compute.cache.queries import CacheQueries
from compute.cache.reader import FAILED_RUNS_SQL, LIVE_RUNS, CacheReader, CacheVersion
from compute.cache.schema import MIGRATIONS, OLD_SCHEMA, SCHEMA_VERSION, TABLES, db_path, snapshot_path
from compute.cache.writer import CacheWriter

__all__ = ["FAILED_RUNS_SQL", "LIVE_RUNS", "MIGRATIONS", "OLD_SCHEMA", "SCHEMA_VERSION", "TABLES", "CacheQueries",
           "CacheReader", "CacheVersion", "CacheWriter", "db_path", "snapshot_path"]
