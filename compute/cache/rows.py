"""Records to SQL values and SQL rows back to records (compute.records): the only place that encodes or parses
the JSON stored in dict columns (`config`, `meta`), so every read hands back parsed values.

Rows are read with `fetchall` (DuckDB gives Python values: NULL is None, lists are lists), not through a pandas
frame, whose NaN for a missing number every caller would otherwise test for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from compute import records as rec

# The columns a `KeptRun` is read from (CacheWriter.done_run, influence_runs).
KEPT_RUN_COLUMNS = "key, source, target, n_train, seed, blocks, subset_indices, model_path"


def to_json(value: Any) -> str:
    """A dict column's value as stored (a record's `meta` or `config`, or a patch merged into one)."""
    return json.dumps(value)


def sql_values(columns: Mapping[str, Any]) -> dict[str, Any]:
    """A record's columns (`record.columns()`) with each dict encoded as its JSON column expects."""
    return {name: to_json(v) if isinstance(v, dict) else v for name, v in columns.items()}


def parse_json(text: Any) -> dict[str, Any]:
    """A JSON column as a dict ({} for NULL or a missing value)."""
    if isinstance(text, dict):
        return text
    if text is None or (isinstance(text, float) and text != text):
        return {}
    return json.loads(text)


def fetch_rows(con: duckdb.DuckDBPyConnection | None, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """The rows of a query as dicts of Python values (none on an empty cache, `con` None)."""
    if con is None:
        return []
    result = con.execute(sql, list(params))
    names = [d[0] for d in result.description]
    return [dict(zip(names, values, strict=True)) for values in result.fetchall()]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def source_record(row: Mapping[str, Any]) -> rec.SourceRecord:
    return rec.SourceRecord(name=row["name"], arch=row["arch"], constraint=row["constraint_"],
                            attack_steps=int(row["attack_steps"]), source_dataset=row["source_dataset"],
                            checksum=row["checksum"], path=row["path"], clean_acc=_float(row["clean_acc"]),
                            train_seconds=_float(row["train_seconds"]) or 0.0, meta=parse_json(row["meta"]))


def run_record(row: Mapping[str, Any]) -> rec.RunRecord:
    """A `runs` row as the record it was written from (`source` is the family: `RunRecord.columns`)."""
    subset = row["subset_indices"]
    return rec.RunRecord(
        key=row["key"], status=row["status"], source=row["source"], target=row["target"], n_train=_int(row["n_train"]),
        seed=int(row["seed"]), blocks=int(row["blocks"]), epochs=int(row["epochs"]), config=parse_json(row["config"]),
        subset_indices=None if subset is None else tuple(int(i) for i in subset),
        final_test_acc=_float(row["final_test_acc"]), final_train_loss=_float(row["final_train_loss"]),
        wall_seconds=_float(row["wall_seconds"]), device=row["device"], error=row["error"],
        model_path=row["model_path"])


def kept_run(row: Mapping[str, Any]) -> rec.KeptRun:
    """A done run's `KEPT_RUN_COLUMNS`."""
    return rec.KeptRun(str(row["key"]), str(row["source"]), str(row["target"]), _int(row["n_train"]),
                       int(row["seed"]), int(row["blocks"]), tuple(int(i) for i in row["subset_indices"] or ()),
                       None if row["model_path"] is None else str(row["model_path"]))


def influence_record(row: Mapping[str, Any]) -> rec.InfluenceRecord:
    """An `influence` row as the record it was written from (meta parsed)."""
    def ints(name: str) -> list[int]:
        return [int(v) for v in row[name] or ()]
    return rec.InfluenceRecord(
        key=row["key"], run_key=row["run_key"], method=row["method"], cutoff=float(row["cutoff"]),
        n_train=int(row["n_train"]), n_test=int(row["n_test"]), matrix_path=row["matrix_path"],
        query_path=row["query_path"], train_indices=ints("train_indices"), test_indices=ints("test_indices"),
        train_labels=ints("train_labels"), test_labels=ints("test_labels"), test_pred=ints("test_pred"),
        label_match=[float(v) for v in row["label_match"] or ()], seconds=float(row["seconds"]),
        meta=parse_json(row["meta"]))


__all__ = ["KEPT_RUN_COLUMNS", "fetch_rows", "influence_record", "kept_run", "parse_json", "run_record",
           "source_record", "sql_values", "to_json"]
