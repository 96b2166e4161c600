"""Shared fixtures. Each area adds its own below; keep them small and seeded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compute.cache import CacheWriter
from compute.models import build_model, save_checkpoint
from compute.paths import artefact_path, file_checksum

torch.set_num_threads(2)


def record_random_source(writer: CacheWriter, name: str, seed: int, constraint: str = "none") -> None:
    """A randomly initialised small_resnet recorded as a source model (fast stand-in for a trained one)."""
    model = build_model("small_resnet", 10, seed=seed).eval()
    path = save_checkpoint(model, artefact_path(writer.root, "sources", f"test-{name}", "safetensors"), {"name": name})
    writer.record_source_model({
        "name": name, "arch": "small_resnet", "constraint_": constraint, "attack_steps": 0,
        "source_dataset": "random", "checksum": file_checksum(path), "path": str(path.relative_to(writer.root)),
        "clean_acc": None, "train_seconds": 0.0, "meta": {"test": True},
    })


@pytest.fixture
def source_cache(tmp_path: Path) -> Path:
    """A cache holding two random small_resnet sources named like the tiny preset's ('natural', 'l2_1.5')."""
    with CacheWriter(tmp_path) as writer:
        record_random_source(writer, "natural", 0)
        record_random_source(writer, "l2_1.5", 1, "l2:1.5")
    return tmp_path


@pytest.fixture
def tiny_cache(tmp_path: Path) -> Path:
    """A schema-true synthetic cache for the explorer (see tests/helpers/explorer_cache.py)."""
    from tests.helpers.explorer_cache import write_explorer_cache

    return write_explorer_cache(tmp_path / "cache")
