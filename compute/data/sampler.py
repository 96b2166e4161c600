"""The random training subsets of a fine-tune, fixed by a seed: two samplers, one per source of truth.

- `authors` (the `paper` preset's default): what produced Table 7. The authors' `train.py` calls robustness'
  `make_loaders(subset=n, subset_seed=seed)`, which draws `np.random.RandomState(seed).choice(range(N), n,
  replace=False)` (robustness 1.2.1 `loaders.py`): no label is guaranteed an image, and the order is the draw's
  (kept here: the batch order permutes positions in the subset, so a sorted subset would train on other batches).
  On a 100-class target the expected number of labels left out is 100 * (1 - 1/100)^n: 37 at n = 100, 13 at
  200, 2 at 400. The run still has all classes (the FC is sized by the target, evaluation is over the whole
  test split).
- `per-label` (the paper's text, A.4: "every label at least one image"; the `tiny` and `demo` presets): one image
  per label first, then the rest without replacement, returned sorted.
`n = None` (the whole training split) is every image in the dataset's order for both, as robustness' loader
does with `subset=None`.
"""

from __future__ import annotations

import numpy as np
import torch

from compute.errors import RtxError
from compute.replicas import PAPER_SEED_BASE, PAPER_SEED_STEP  # S_k's numbers (defined torch-free there)

SAMPLERS = ("per-label", "authors")  # FinetuneConfig.sampler: the paper's text / the authors' code


def paper_seeds(count: int) -> list[int]:
    """S_k = {20000000 + 100000 * i : i = 0 .. k-1}."""
    return [PAPER_SEED_BASE + PAPER_SEED_STEP * i for i in range(count)]


def sample_subset(labels: torch.Tensor | np.ndarray, n: int | None, seed: int,
                  sampler: str = "per-label") -> np.ndarray:
    """int64 indices of n distinct training images by `sampler` (see module docstring); the same (labels, n,
    seed, sampler) gives the same subset on every machine (integer draws only)."""
    labels = np.asarray(labels)
    if sampler not in SAMPLERS:
        raise RtxError(f"unknown sampler {sampler!r}; valid choices: {', '.join(SAMPLERS)}")
    if n is None:
        return np.arange(len(labels), dtype=np.int64)
    if n > len(labels):
        raise RtxError(f"subset size {n} exceeds the dataset's {len(labels)} images; use n <= {len(labels)}")
    if sampler == "authors":
        return authors_subset(len(labels), n, seed)
    return _per_label_subset(labels, n, seed)


def authors_subset(n_images: int, n: int, seed: int) -> np.ndarray:
    """robustness' `make_loaders(subset=n, subset_seed=seed)`: RandomState(seed).choice(N, n, replace=False).

    `choice(range(N))` as they write it and `choice(N)` draw the same permutation (numpy indexes the population
    by `permutation(N)[:n]` either way). RandomState is numpy's frozen legacy generator: the stream is
    guaranteed stable across numpy versions and platforms.
    """
    if not 0 <= seed < 2**32:
        raise RtxError(f"seed {seed} is outside numpy RandomState's 0 .. 2**32 - 1; use a smaller seed")
    return np.random.RandomState(seed).choice(n_images, n, replace=False).astype(np.int64)


def _per_label_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of n distinct images covering every label (the paper's text, A.4)."""
    classes = np.unique(labels)
    if n < len(classes):
        raise RtxError(f"subset size {n} is smaller than the {len(classes)} labels; use n >= {len(classes)} "
                       "(or the authors' sampler, which guarantees no label)")
    rng = np.random.default_rng(seed)
    one_per_label = np.array([rng.choice(np.flatnonzero(labels == c)) for c in classes])
    rest = np.setdiff1d(np.arange(len(labels)), one_per_label, assume_unique=False)
    extra = rng.choice(rest, size=n - len(classes), replace=False)
    return np.sort(np.concatenate([one_per_label, extra]))
