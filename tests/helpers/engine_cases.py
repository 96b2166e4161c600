"""Shared by tests/test_engine.py and tests/test_engine_gpu.py: small engine configs, an offline colour target,
and float64 as the default dtype (where two computation paths are compared: see STYLE.md "Numbers in tests").

Imports only torch and compute modules that import only torch (no duckdb): tests/test_engine_gpu.py runs on the
GPU machine with `--noconftest`, where duckdb is absent."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from compute.data.registry import DATASETS, DatasetInfo, register
from compute.finetune import FinetuneConfig
from compute.models import build_model

SEEDS = (20_000_000, 20_100_000, 20_200_000)


def _colour_loader(split: str, root, download: bool, skip_bad_images: bool = False):
    """A small offline colour target: random 12x12 RGB images whose label is the brightest channel."""
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = 120 if split == "train" else 60
    images = torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=gen)
    labels = images.float().mean(dim=(2, 3)).argmax(1)
    return images.float() / 255, labels, "synthetic"


def register_colour_target(name: str = "rgb3") -> str:
    if name not in DATASETS:
        register(DatasetInfo(name, ("red", "green", "blue"), 120, 60, 3, 12, True, _colour_loader))
    return name


def engine_cfg(**kw) -> FinetuneConfig:
    base = dict(source="s", source_checksum="x", target="digits", n_train=40, seed=20_000_000, blocks=1, epochs=3,
                test_every=2, batch_size=16, augment="none", test_limit=50)
    return FinetuneConfig(**{**base, **kw})


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """float64 as the default dtype: models built and FC layers re-initialised inside are float64, and the engine
    and the reference compute in the model's dtype (the images and their augmentation stay float32, identical in
    both paths). Rounding is then ~1e-16 per operation, so a few epochs of chaotic SGD amplify it to ~1e-14
    (measured), while a logic error stays as large as in float32."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


# The engine's test modules make these their module-scoped fixtures (`small_source`, `source64`).
def small_source_model() -> torch.nn.Module:
    return build_model("small_resnet", 7, seed=3).eval()


def source64_model() -> torch.nn.Module:
    """The same architecture in float64 (its own initialisation: float64 draws)."""
    with float64():
        return small_source_model()
