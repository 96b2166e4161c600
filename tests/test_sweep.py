"""Sweeps: planning, resume after kill -9 runs exactly the remaining jobs, failures recorded, CLI errors."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import compute.sweep as sweep
from compute.cache import CacheReader, CacheWriter
from compute.cli import main
from compute.presets import get_preset
from compute.replicas import family_of
from compute.settings import Settings
from compute.stages.finetune import finetune_stage
from compute.sweep import plan
from tests.helpers.executors import assert_executor_matches_in_process

REPO = Path(__file__).resolve().parents[1]
GRID = ["--sizes", "20,40,60,80,100,120", "--seeds", "1,2,3,4", "--epochs", "6", "--test-every", "2"]


def test_plan_covers_the_grid_once() -> None:
    preset = get_preset("demo")
    configs = plan(preset, {s.name: "x" for s in preset.trained_sources()})
    assert len(configs) == len({c.key for c in configs})
    names = tuple(s.name for s in preset.sources)
    cells = {(s, t, n, seed, b) for g in preset.grids for s in (g.sources or names) for t in g.targets
             for n in g.sizes for seed in g.seeds for b in g.blocks}  # grids may overlap: a cell runs once
    # A replicated source's run starts from the replica its seed picks (compute.replicas): the cell is the family's.
    assert {(family_of(c.source), c.target, c.n_train, c.seed, c.blocks) for c in configs} == cells
    assert all(c.source == preset.source_for(family_of(c.source), c.seed) for c in configs)
    assert len(configs) == 468  # the demo's plan (compute/presets.py, LADDER_SEEDS); README and the make-demo timing assume it


def test_paper_plan_uses_table_4() -> None:
    preset = get_preset("paper")
    configs = plan(preset, {s.name: "x" for s in preset.sources})
    per_cell = 5 * 20 + 2 * 10 + 2 * 5 + 1  # Table 4's seeds per subset size
    assert len(configs) == 4 * 4 * 6 * per_cell
    small = next(c for c in configs if c.n_train == 100)
    assert (small.epochs, small.test_every, small.augment) == (100, 20, "paper")
    assert (small.bn_mode, small.fc_init, small.lr_schedule) == ("train", "normal", "step")  # the authors' code
    full = next(c for c in configs if c.n_train is None)
    assert (full.epochs, full.test_every) == (150, 10)


def test_a_changed_source_checksum_changes_every_key() -> None:
    preset = get_preset("tiny")
    a = plan(preset, {"natural": "a", "l2_1.5": "b"})
    b = plan(preset, {"natural": "a2", "l2_1.5": "b"})
    changed = {c.key for c in a} ^ {c.key for c in b}
    assert len(changed) == 2 * sum(c.source == "natural" for c in a)


def test_resume_after_kill_runs_exactly_the_remaining_jobs(source_cache: Path, monkeypatch) -> None:
    cmd = [sys.executable, "-m", "compute.cli", "--cache", str(source_cache), "finetune", "--preset", "tiny",
           "--no-progress", *GRID]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reader = CacheReader(source_cache)
    deadline = time.time() + 120
    while time.time() < deadline:
        reader.reopen()
        if len(reader.runs()) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    preset = get_preset("tiny").with_overrides(sizes=(20, 40, 60, 80, 100, 120), seeds=(1, 2, 3, 4), epochs=6,
                                               test_every=2)
    with CacheWriter(source_cache) as writer:
        done_before = writer.done_keys()
        all_keys = {c.key for c in plan(preset, writer.source_checksums())}
        assert 5 <= len(done_before) < len(all_keys), "the kill should land mid-sweep"
        executed = []
        real = sweep.finetune
        monkeypatch.setattr(sweep, "finetune", lambda src, cfg, **kw: executed.append(cfg.key) or real(src, cfg, **kw))
        counts = finetune_stage(preset, writer, Settings(progress=False))
        assert set(executed) == all_keys - done_before and len(executed) == len(set(executed))
        assert counts["done"] == len(executed) and counts["cached"] == len(done_before)
        assert writer.done_keys() == all_keys
        executed.clear()
        assert finetune_stage(preset, writer, Settings(progress=False))["done"] == 0 and not executed


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(source_cache: Path) -> None:
    preset = get_preset("tiny").with_overrides(targets=("digits+lowres(100)", "digits"), sizes=(20,), seeds=(1,))
    with CacheWriter(source_cache) as writer:
        counts = finetune_stage(preset, writer, Settings(progress=False))
    assert (counts.planned, counts.cached, counts.done, counts.failed) == (4, 0, 2, 2)
    assert "2 x RtxError: lowres(100) needs" in counts.line()  # the summary says why
    runs = CacheReader(source_cache).runs()
    failed = runs[runs.status == "failed"]
    assert set(failed.target) == {"digits+lowres(100)"}
    assert failed.error.str.contains("lowres\\(100\\) needs").all()


def test_worker_processes_record_the_same_numbers_as_one_process(source_cache: Path) -> None:
    preset = get_preset("tiny").with_overrides(sizes=(20, 40), seeds=(5,))
    assert_executor_matches_in_process(source_cache, preset, Settings(workers=2, progress=False))


def test_interrupting_worker_processes_keeps_finished_runs_and_stops_the_workers(source_cache: Path) -> None:
    """Ctrl-C (KeyboardInterrupt in the driver) mid-sweep: finished runs are recorded, no worker survives."""
    preset = get_preset("tiny").with_overrides(sizes=(20, 40, 60, 80), seeds=(1, 2, 3), epochs=6, test_every=2)
    with CacheWriter(source_cache) as writer:
        jobs = [(c, False) for c in plan(preset, writer.source_checksums())]
        outcomes = sweep.run_local(jobs, sweep.SourceLoader(writer), Settings(workers=2, progress=False))
        first = next(outcomes)
        workers = multiprocessing.active_children()
        assert len(workers) == 2
        with pytest.raises(KeyboardInterrupt):
            outcomes.throw(KeyboardInterrupt)
    for worker in workers:
        worker.join(timeout=10)
        assert not worker.is_alive()
    cfg, result = first  # the run that finished before Ctrl-C is whole: the numbers this process computes for it
    assert not isinstance(result, BaseException)
    with CacheWriter(source_cache) as writer:
        expected = sweep.finetune(sweep.SourceLoader(writer)(cfg.source), cfg)
    assert [p.epoch for p in result.curve] == [p.epoch for p in expected.curve]
    assert result.final_test_acc == pytest.approx(expected.final_test_acc, abs=1e-6)
    assert result.final_train_loss == pytest.approx(expected.final_train_loss, rel=1e-6)


def test_influence_runs_keep_their_weights(source_cache: Path) -> None:
    preset = get_preset("tiny")
    with CacheWriter(source_cache) as writer:
        finetune_stage(preset, writer, Settings(progress=False))
    runs = CacheReader(source_cache).runs()
    spec = preset.influence
    kept = runs[runs.model_path.notna()]
    assert set(kept.source) == set(spec.sources) and (kept.n_train == spec.n_train).all()
    assert all((source_cache / p).exists() for p in kept.model_path)


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["--cache", str(tmp_path), "precompute", "--preset", "huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "valid choices: demo, paper, tiny" in err
    assert main(["--cache", str(tmp_path), "finetune", "--preset", "tiny"]) == 2
    assert "source models missing" in capsys.readouterr().err


def test_status_on_an_empty_cache(tmp_path: Path, capsys) -> None:
    assert main(["--cache", str(tmp_path), "status"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "rtx precompute --preset demo" in out


