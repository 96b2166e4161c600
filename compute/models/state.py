"""What loading a checkpoint of any format needs: what a checkpoint says about itself, and a checked
`load_state_dict` (shared by our own format, compute.models.checkpoints, and foreign ones, compute.models.foreign)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from compute.errors import RtxError
from compute.models.architectures import Classifier


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself (the JSON sidecar, or what the loader inferred)."""

    arch: str
    num_classes: int
    input_size: int
    format: str
    meta: dict[str, Any] = field(default_factory=dict)


def load_state(model: Classifier, state: dict[str, torch.Tensor], path: Path) -> None:
    """load_state_dict with one-line errors naming the file and the first offending keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise RtxError(
            f"{path}: keys do not match architecture {model.arch!r} "
            f"(missing {len(missing)}: {missing[:3]}; unexpected {len(extra)}: {extra[:3]}); check --arch"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise RtxError(
                f"{path}: shape mismatch at {key}: file {tuple(tensor.shape)} vs {model.arch} {tuple(expected[key].shape)}; "
                "check --arch and --num-classes"
            )
    model.load_state_dict(state)
