"""The Ray executor on a local Ray: same results as the in-process executor, recorded by the driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute.presets import get_preset
from compute.settings import Settings
from tests.helpers.executors import assert_executor_matches_in_process

ray = pytest.importorskip("ray", reason="the Ray executor needs the [cluster] extra (installed by make test)")


@pytest.mark.slow
def test_ray_executor_matches_local(source_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAY_DISABLE_USAGE_STATS", "1")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    preset = get_preset("tiny").with_overrides(sizes=(20,), seeds=(5, 6))
    try:
        assert_executor_matches_in_process(source_cache, preset, Settings(executor="ray", progress=False))
    finally:
        ray.shutdown()
