"""Checkpoints made elsewhere: torchvision state dicts and MadryLab `robustness` files (filled in by the models issue)."""

from __future__ import annotations

from pathlib import Path

from compute.errors import RtxError


def load_foreign(path: Path, arch: str | None, num_classes: int | None, trust_pickle: bool):
    raise RtxError(f"{path}: unsupported checkpoint format; use a .safetensors file with its JSON sidecar")
