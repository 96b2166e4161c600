"""Architectures, their residual blocks, and safe checkpoint loading."""

from compute.models.architectures import ARCHITECTURES, Classifier, arch_names, build_model
from compute.models.checkpoints import CheckpointInfo, load_checkpoint, save_checkpoint

__all__ = [
    "ARCHITECTURES",
    "CheckpointInfo",
    "Classifier",
    "arch_names",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
]
