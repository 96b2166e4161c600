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
from compute.records import CurvePoint, InfluenceRecord, KeptRun, RunRecord, SourceRecord

WRITER = [sys.executable, "-m", "tests.helpers.slow_writer"]
REPO = Path(__file__).resolve().parents[1]


def _run(key: str, source: str = "natural", seed: int = 0, acc: float = 0.5, target: str = "t") -> RunRecord:
    return RunRecord(key, "done", source, target, 10, seed, 1, 2, {}, (1, 2), final_test_acc=acc)


def test_empty_cache_reads_as_empty(tmp_path: Path) -> None:
    reader = CacheReader(tmp_path)
    assert reader.empty
    assert reader.counts()["rows"].sum() == 0
    assert reader.final_summary().empty and reader.runs().empty


def test_schema_is_versioned(tmp_path: Path) -> None:
    with CacheWriter(tmp_path) as writer:
        assert writer.schema_versions() == list(range(1, SCHEMA_VERSION + 1))
    with CacheWriter(tmp_path) as writer:  # re-opening does not re-run migrations
        assert writer.schema_versions() == list(range(1, SCHEMA_VERSION + 1))


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
        writer.record_source_model(SourceRecord("g", "a", "linf:0.1", 5, "d", "c", "p"))
        writer.record_run(_run("x", target="fmnist+lowpass(64)"), [])
        writer.record_runs([_run("y", target="digits")], [[]])
    reader = CacheReader(tmp_path)
    row = reader.source_models().iloc[0]
    assert (row["kind"], row["norm"], row["eps"], row["steps"]) == ("pgd", "linf", 0.1, 5)
    runs = reader.runs().set_index("key")
    assert runs.loc["x", "base_dataset"] == "fmnist" and runs.loc["x", "variant"] == "lowpass(64)"
    assert runs.loc["y", "base_dataset"] == "digits" and pd.isna(runs.loc["y", "variant"])


def test_reads_return_the_records_the_writes_took(tmp_path: Path) -> None:
    """Issue 21, item 1: one-row reads hand back records (JSON parsed, NULL as None), on both sides of the cache."""
    run = RunRecord("r1", "done", "l2_1#s1", "digits", None, 3, 1, 2, {"source": "l2_1#s1", "lr": 0.1}, (4, 0, 2),
                    final_test_acc=0.75, final_train_loss=0.5, wall_seconds=1.5, device="cpu", model_path="models/r1")
    bare = RunRecord("r2", "done", "natural", "digits", None, 3, 1, 2, {}, (4, 0, 2), final_test_acc=0.5)
    failed = RunRecord("r3", "failed", "natural", "digits", 10, 0, 1, 2, {"source": "natural"}, error="boom")
    result = InfluenceRecord("i1", "r1", "fast", 0.05, 3, 2, "influence/i1.npy", None, [4, 0, 2], [0, 1], [1, 0, 1],
                             [0, 1], [0, 0], [0.5, 0.25], 1.25, {"role": "natural", "classes": ["a", "b"]})
    source = SourceRecord("natural", "tiny", "none", 0, "digits", "abc", "sources/natural", meta={"role": "natural"})
    with CacheWriter(tmp_path) as writer:
        writer.record_source_model(source)
        for r in (run, bare, failed):
            writer.record_run(r, [])
        writer.record_influence(result, pd.DataFrame(columns=["influence_key", "test_pos", "rank", "train_pos", "score"]))
        assert writer.source_row("natural") == source
        kept = KeptRun("r1", "l2_1", "digits", None, 3, 1, (4, 0, 2), "models/r1")  # the family, as pages name it
        assert writer.done_run("r1") == kept and writer.done_run("r3") is None
        # a cell re-run: the newest done run with weights per source is what influence scores
        older = RunRecord("r4", "done", "l2_1", "digits", 10, 3, 1, 2, {}, (1,), model_path="models/r4")
        newer = RunRecord("r5", "done", "l2_1", "digits", 10, 3, 1, 2, {}, (2,), model_path="models/r5")
        unkept = RunRecord("r6", "done", "natural", "digits", 10, 3, 1, 2, {}, (2,))
        for r in (older, newer, unkept):
            time.sleep(0.01)  # `created` orders re-runs
            writer.record_run(r, [])
        assert [r.key for r in writer.influence_runs("digits", 10, 3, 1)] == ["r5", "r4", "r6"]
        assert {s: r.key for s, r in writer.kept_by_source("digits", 10, 3, 1).items()} == {"l2_1": "r5"}
        assert writer.influence("i1") == result
    reader = CacheReader(tmp_path)
    try:
        assert reader.run("r1") == RunRecord(**{**run.__dict__, "source": "l2_1"})  # stored under its family
        assert reader.run("r3") == failed and reader.run("nope") is None
        assert reader.influence("i1") == result and reader.influence("nope") is None
        assert [r.key for r in reader.runs_with_weights()] == ["r1", "r4", "r5"]
    finally:
        reader.close()


def test_a_job_is_recorded_whole_or_not_at_all(tmp_path: Path) -> None:
    with CacheWriter(tmp_path) as writer:
        bad_curve = [CurvePoint(1, 0.1, 1.0), CurvePoint(1, 0.2, 1.0)]
        with pytest.raises(Exception, match="(?i)constraint|duplicate"):
            writer.record_run(_run("a"), bad_curve)  # duplicate epoch violates the primary key
        writer.record_run(_run("b"), [CurvePoint(1, 0.1, 1.0)])
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
        runs = writer.done_keys()
        points = writer.curve_lengths()
    assert len(runs) >= recorded + 1  # every job acknowledged before the kill is there
    assert set(points) == runs and set(points.values()) == {3}  # and each is whole


def test_summaries_match_scipy_t_interval(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    natural = rng.uniform(0.4, 0.6, 7)
    robust = natural + rng.normal(0.05, 0.02, 7)
    with CacheWriter(tmp_path) as writer:
        for seed, (a, b) in enumerate(zip(natural, robust, strict=True)):
            writer.record_run(_run(f"n{seed}", "natural", seed, float(a)), [CurvePoint(1, float(a), 1.0),
                                                                            CurvePoint(2, float(a) / 2, 0.5)])
            writer.record_run(_run(f"r{seed}", "robust", seed, float(b)), [CurvePoint(1, float(b), 1.0),
                                                                           CurvePoint(2, float(b) / 2, 0.5)])
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
    curves = reader.curve_summary().set_index(["source", "epoch"])
    for name, values in (("natural", natural), ("robust", robust)):
        for epoch, scale in ((1, 1.0), (2, 0.5)):
            lo, hi = stats.t.interval(0.95, len(values) - 1, loc=scale * values.mean(), scale=scale * stats.sem(values))
            row = curves.loc[(name, epoch)]
            assert row["n_seeds"] == 7 and row["mean"] == pytest.approx(scale * values.mean())
            assert row["lo"] == pytest.approx(lo) and row["hi"] == pytest.approx(hi)
