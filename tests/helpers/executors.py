"""Check that an executor records the same numbers as fine-tuning each run in this process."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute.cache import CacheReader, CacheWriter
from compute.finetune import finetune
from compute.presets import Preset
from compute.settings import Settings
from compute.stages.finetune import finetune_stage
from compute.sweep import SourceLoader, plan


def assert_executor_matches_in_process(cache: Path, preset: Preset, options: Settings, acc_tol: float = 1e-6) -> None:
    """Runs recorded by `options.executor` equal `finetune` in this process: same keys, epochs, and accuracies
    within `acc_tol` (1e-6 for executors that run `finetune` itself; one test image for the engine)."""
    with CacheWriter(cache) as writer:
        counts = finetune_stage(preset, writer, options)
    assert counts["done"] == counts["planned"] and counts["failed"] == 0
    assert_recorded_runs_match_in_process(cache, preset, acc_tol)


def assert_recorded_runs_match_in_process(cache: Path, preset: Preset, acc_tol: float = 1e-6) -> None:
    """Every planned run of `preset` is recorded, with `finetune`'s curve (whichever executors recorded them)."""
    with CacheWriter(cache) as writer:
        configs = plan(preset, writer.source_checksums())
        loader = SourceLoader(writer)
        expected = {c.key: finetune(loader(c.source), c) for c in configs}
    reader = CacheReader(cache)
    runs = reader.runs().set_index("key")
    assert set(runs.index) == set(expected) and set(runs.status) == {"done"}
    for key, result in expected.items():
        assert runs.loc[key, "final_test_acc"] == pytest.approx(result.final_test_acc, abs=acc_tol)
        curve = reader.learning_curve(key)
        assert list(curve.epoch) == [p.epoch for p in result.curve]
        assert list(curve.test_acc) == pytest.approx([p.test_acc for p in result.curve], abs=acc_tol)
