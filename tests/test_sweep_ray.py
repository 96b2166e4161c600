"""The Ray executor on a local Ray: same results as the in-process executor, recorded by the driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute.cache import CacheReader, CacheWriter
from compute.presets import get_preset
from compute.sweep import SourceLoader, SweepOptions, finetune_stage, plan

ray = pytest.importorskip("ray", reason="the Ray executor needs the [cluster] extra (installed by make test)")


@pytest.mark.slow
def test_ray_executor_matches_local(source_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAY_DISABLE_USAGE_STATS", "1")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    preset = get_preset("tiny").with_overrides(sizes=(20,), seeds=(5, 6))
    try:
        with CacheWriter(source_cache) as writer:
            counts = finetune_stage(preset, writer, SweepOptions(executor="ray", progress=False))
            configs = plan(preset, writer.source_checksums())
            loader = SourceLoader(writer)
            from compute.finetune import finetune

            local = {c.key: finetune(loader(c.source), c).final_test_acc for c in configs}
    finally:
        ray.shutdown()
    assert counts["done"] == len(configs) == 4 and counts["failed"] == 0
    runs = CacheReader(source_cache).runs().set_index("key")
    for key, acc in local.items():
        assert runs.loc[key, "final_test_acc"] == pytest.approx(acc, abs=1e-6)
