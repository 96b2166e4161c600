"""The DuckDB cache: migrations, atomic jobs, readers beside a live writer (two real processes), kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from compute.cache import SCHEMA_VERSION, CacheReader, CacheWriter
from compute.errors import RtxError

WRITER = [sys.executable, "-m", "tests.helpers.slow_writer"]
REPO = Path(__file__).resolve().parents[1]


def _run(key: str, source: str = "natural", seed: int = 0, acc: float = 0.5, **extra) -> dict:
    return {"key": key, "status": "done", "source": source, "target": "t", "n_train": 10, "seed": seed, "blocks": 1,
            "epochs": 2, "config": {}, "subset_indices": [1, 2], "final_test_acc": acc} | extra


def test_empty_cache_reads_as_empty(tmp_path: Path) -> None:
    reader = CacheReader(tmp_path)
    assert reader.empty
    assert reader.counts()["rows"].sum() == 0
    assert reader.final_summary().empty and reader.runs().empty


def test_schema_is_versioned(tmp_path: Path) -> None:
    with CacheWriter(tmp_path) as writer:
        assert writer.query("SELECT max(version) AS v FROM schema_version")["v"][0] == SCHEMA_VERSION
    with CacheWriter(tmp_path) as writer:  # re-opening does not re-run migrations
        assert writer.query("SELECT count(*) AS n FROM schema_version")["n"][0] == SCHEMA_VERSION


def _v1_cache(root: Path) -> None:
    """A cache as schema v1 wrote it (migration 1's SQL, version 1), with sources and runs of every kind."""
    import duckdb

    from compute.cache import MIGRATIONS
    from compute.paths import DB_NAME

    con = duckdb.connect(str(root / DB_NAME))
    con.execute(MIGRATIONS[0])
    con.execute("CREATE TABLE schema_version (version INTEGER); INSERT INTO schema_version VALUES (1)")
    sources = [("natural", "none", 0), ("l2_1.5", "l2:1.5", 3), ("linf_8", "linf:8/255", 7),
               ("gaussian_0.054", "gaussian:0.054", 0), ("imported", "l2:3", 0), ("odd", "what:ever", 0)]
    for name, constraint, steps in sources:
        con.execute("INSERT INTO source_models (name, arch, constraint_, attack_steps, meta) VALUES (?, 'a', ?, ?, '{}')",
                    [name, constraint, steps])
    for key, target in (("a", "mnist5k"), ("b", "mnist5k+lowres(10)"), ("c", "digits+lowpass(400)"), ("d", "t")):
        con.execute("INSERT INTO runs (key, status, source, target, n_train, seed, blocks, config) "
                    "VALUES (?, 'done', 'natural', ?, 10, 0, 1, '{}')", [key, target])
    con.close()


def test_migration_2_fills_parsed_columns_in_place(tmp_path: Path) -> None:
    _v1_cache(tmp_path)
    CacheWriter(tmp_path).close()
    reader = CacheReader(tmp_path)
    sources = reader.source_models().set_index("name")
    got = {name: tuple(None if pd.isna(v) else v for v in (row["kind"], row["norm"], row["eps"], row["steps"]))
           for name, row in sources.iterrows()}
    assert got["natural"] == ("natural", None, None, 0)
    assert got["l2_1.5"] == ("pgd", "l2", 1.5, 3)
    assert got["linf_8"] == ("pgd", "linf", pytest.approx(8 / 255), 7)
    assert got["gaussian_0.054"] == ("gaussian", None, 0.054, 0)
    assert got["imported"] == ("pgd", "l2", 3.0, 0)  # PGD with unknown steps
    assert got["odd"] == (None, None, None, None)  # unreadable constraint: left unclassified
    runs = reader.runs().set_index("key")
    assert runs["base_dataset"].to_dict() == {"a": "mnist5k", "b": "mnist5k", "c": "digits", "d": "t"}
    assert runs["variant"].fillna("-").to_dict() == {
        "a": "-", "b": "lowres(10)", "c": "lowpass(400)", "d": "-"}


def test_new_rows_carry_parsed_columns(tmp_path: Path) -> None:
    with CacheWriter(tmp_path) as writer:
        writer.record_source_model({"name": "g", "arch": "a", "constraint_": "linf:0.1", "attack_steps": 5, "meta": {}})
        writer.record_run(_run("x", target="fmnist+lowpass(64)"), [])
        writer.record_runs([_run("y", target="digits")], [[]])
    reader = CacheReader(tmp_path)
    row = reader.source_models().iloc[0]
    assert (row["kind"], row["norm"], row["eps"], row["steps"]) == ("pgd", "linf", 0.1, 5)
    runs = reader.runs().set_index("key")
    assert runs.loc["x", "base_dataset"] == "fmnist" and runs.loc["x", "variant"] == "lowpass(64)"
    assert runs.loc["y", "base_dataset"] == "digits" and pd.isna(runs.loc["y", "variant"])


def test_a_job_is_recorded_whole_or_not_at_all(tmp_path: Path) -> None:
    with CacheWriter(tmp_path) as writer:
        bad_curve = [{"epoch": 1, "test_acc": 0.1, "train_loss": 1.0}, {"epoch": 1, "test_acc": 0.2, "train_loss": 1.0}]
        with pytest.raises(Exception, match="(?i)constraint|duplicate"):
            writer.record_run(_run("a"), bad_curve)  # duplicate epoch violates the primary key
        writer.record_run(_run("b"), [{"epoch": 1, "test_acc": 0.1, "train_loss": 1.0}])
    reader = CacheReader(tmp_path)
    assert reader.runs()["key"].tolist() == ["b"]
    assert reader.learning_curve("a").empty


def test_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.Popen([*WRITER, str(tmp_path), "50", "0.1"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        with pytest.raises(RtxError, match="another `rtx` command is writing"):
            CacheWriter(tmp_path)
    finally:
        proc.kill()
        proc.wait()


def test_reader_in_another_process_while_writer_is_active(tmp_path: Path) -> None:
    proc = subprocess.Popen([*WRITER, str(tmp_path), "30", "0.05"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    seen = []
    try:
        proc.stdout.readline()
        reader = CacheReader(tmp_path)
        while proc.poll() is None:
            reader.reopen()
            seen.append(len(reader.runs()))
            curves = reader.curve_summary()
            assert (curves.groupby("epoch").size() >= 1).all()
            time.sleep(0.02)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == 0
    reader.reopen()
    assert len(reader.runs()) == 30
    assert seen == sorted(seen) and seen[0] < 30 and len(set(seen)) > 3  # saw the cache grow, never shrink


def test_kill_9_keeps_every_completed_job(tmp_path: Path) -> None:
    proc = subprocess.Popen([*WRITER, str(tmp_path), "10000", "0.0"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    recorded = -1
    for line in proc.stdout:
        recorded = int(line.split()[1])
        if recorded >= 40:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with CacheWriter(tmp_path) as writer:  # the cache opens
        runs = writer.query("SELECT key FROM runs")
        points = writer.query("SELECT run_key, count(*) AS n FROM epoch_metrics GROUP BY run_key")
    assert len(runs) >= recorded + 1  # every job acknowledged before the kill is there
    assert set(points["run_key"]) == set(runs["key"]) and (points["n"] == 3).all()  # and each is whole


def test_summaries_match_scipy_t_interval(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    natural = rng.uniform(0.4, 0.6, 7)
    robust = natural + rng.normal(0.05, 0.02, 7)
    with CacheWriter(tmp_path) as writer:
        for seed, (a, b) in enumerate(zip(natural, robust, strict=True)):
            writer.record_run(_run(f"n{seed}", "natural", seed, float(a)), [{"epoch": 1, "test_acc": float(a), "train_loss": 1}])
            writer.record_run(_run(f"r{seed}", "robust", seed, float(b)), [{"epoch": 1, "test_acc": float(b), "train_loss": 1}])
    reader = CacheReader(tmp_path)
    summary = reader.final_summary().set_index("source")
    for name, values in (("natural", natural), ("robust", robust)):
        lo, hi = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
        assert summary.loc[name, "mean"] == pytest.approx(values.mean())
        assert summary.loc[name, "lo"] == pytest.approx(lo) and summary.loc[name, "hi"] == pytest.approx(hi)
    delta = reader.delta_summary("natural").iloc[0]
    diff = robust - natural
    lo, hi = stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=stats.sem(diff))
    assert delta["source"] == "robust" and delta["n_seeds"] == 7
    assert delta["mean"] == pytest.approx(diff.mean()) and delta["lo"] == pytest.approx(lo)
    assert delta["hi"] == pytest.approx(hi)
    curve = reader.delta_summary("natural", which="curve")
    assert curve["mean"].iloc[0] == pytest.approx(diff.mean())
    assert isinstance(reader.curve_summary(), pd.DataFrame)
