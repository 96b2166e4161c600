"""Small torchvision-layout dataset folders written offline (IDX files), for data-root tests without a download."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format: magic (0, 0, 0x08 = uint8, ndim), big-endian sizes, then the bytes."""
    path.write_bytes(bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """`root/<folder>/raw/` with the four IDX files torchvision's MNIST-like classes read: random 28x28 uint8
    images whose label is the image's brightest row band (learnable), ten classes, every class present."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 100, size=(n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label + 4:2 * label + 6] = 255
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root
