"""The dataset registry's value types and the data root, in a module of their own so that the registry and the
loaders it registers (compute.data.folder, compute.data.caltech) import them without importing each other."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class ImageSet:
    """A split of a dataset held in memory."""

    name: str
    split: str
    images: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]
    source: str  # where it was found, for `rtx status` and the explorer

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])


# A dataset's loader: (split, data root, download, skip_bad_images) -> (images, labels, where it was found); the last
# two are the user's permissions (--download, --skip-bad-images), used by the loaders they concern.
Loader = Callable[[str, Path | None, bool, bool], tuple[torch.Tensor, torch.Tensor, str]]


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows about a dataset before loading it (the paper's Table 6 for targets)."""

    name: str
    classes: tuple[str, ...]
    train_size: int
    test_size: int
    channels: int
    image_size: int
    offline: bool
    loader: Loader
    split_rule: str = "the dataset's own train/test split"
    where: str = ""  # for datasets found at a path of their own (folder:PATH)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Root for torchvision datasets: the one given (`Settings.data_root`, whose default is $RTX_DATA), else
    <cache>/data."""
    if root:
        return Path(root).expanduser()
    from compute.paths import cache_dir

    return cache_dir() / "data"
