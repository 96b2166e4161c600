"""The paper's random subsets (A.4): n images without replacement, every label at least once, fixed by a seed."""

from __future__ import annotations

import numpy as np
import torch

from compute.errors import RtxError

PAPER_SEED_BASE = 20_000_000
PAPER_SEED_STEP = 100_000


def paper_seeds(count: int) -> list[int]:
    """S_k = {20000000 + 100000 * i : i = 0 .. k-1}."""
    return [PAPER_SEED_BASE + PAPER_SEED_STEP * i for i in range(count)]


def sample_subset(labels: torch.Tensor | np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of n distinct images covering every label; the same (labels, n, seed) gives the same subset."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if n < len(classes):
        raise RtxError(f"subset size {n} is smaller than the {len(classes)} labels; use n >= {len(classes)}")
    if n > len(labels):
        raise RtxError(f"subset size {n} exceeds the dataset's {len(labels)} images; use n <= {len(labels)}")
    rng = np.random.default_rng(seed)
    one_per_label = np.array([rng.choice(np.flatnonzero(labels == c)) for c in classes])
    rest = np.setdiff1d(np.arange(len(labels)), one_per_label, assume_unique=False)
    extra = rng.choice(rest, size=n - len(classes), replace=False)
    return np.sort(np.concatenate([one_per_label, extra]))
