"""Check that an executor records the same numbers as fine-tuning each run in this process."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute.cache import CacheReader, CacheWriter
from compute.finetune import finetune
from compute.presets import Preset
from compute.settings import Settings
from compute.sweep import SourceLoader, finetune_stage, plan


def assert_executor_matches_in_process(cache: Path, preset: Preset, options: Settings) -> None:
    with CacheWriter(cache) as writer:
        counts = finetune_stage(preset, writer, options)
        configs = plan(preset, writer.source_checksums())
        loader = SourceLoader(writer)
        expected = {c.key: finetune(loader(c.source), c) for c in configs}
    assert counts["done"] == len(configs) and counts["failed"] == 0
    reader = CacheReader(cache)
    runs = reader.runs().set_index("key")
    for key, result in expected.items():
        assert runs.loc[key, "final_test_acc"] == pytest.approx(result.final_test_acc, abs=1e-6)
        curve = reader.learning_curve(key)
        assert list(curve.epoch) == [p["epoch"] for p in result.curve]
        assert list(curve.test_acc) == pytest.approx([p["test_acc"] for p in result.curve], abs=1e-6)
