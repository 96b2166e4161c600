"""Which input statistics (mean, std) a fine-tuned model normalises with: the source's, or the authors' rule.

The Classifier owns its normaliser (compute.models.architectures.Normalize), so inputs live in [0, 1] pixel space
and only these constants change. Two policies, `FinetuneConfig.normalisation` (in the run's key):
- `source` (the paper's text, which names no other; the `tiny` and `demo` presets): every source keeps the
  statistics it came with: ImageNet's for the paper's ResNet-50s, 0.5 / 0.25 for this project's small ResNets.
- `authors` (the `paper` and `zoo` presets): robustness' `make_and_restore_model(arch, dataset, resume_path)`
  builds every model with the *target dataset's* mean and std, and loading a checkpoint then overwrites them with
  the ones it stores. The paper's robust sources are MadryLab files (statistics stored: ImageNet's); its natural
  source is torchvision's weights (`pytorch_pretrained=True`, no file, nothing stored), so in Table 7 the natural
  baseline saw the target's statistics. Here: a source whose weights file stored no statistics
  (`Classifier.statistics_origin == 'architecture'`, e.g. a torchvision state dict) takes the target's
  (`AUTHORS_TARGET_STATISTICS`; a target they never used gets its training split's own mean and std, the rule
  their MNIST pair follows); every other source keeps its own, exactly as in their code.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from compute.data import load_dataset
from compute.data.variants import split_dataset_spec
from compute.errors import RtxError
from compute.models import Classifier

NORMALISATIONS = ("source", "authors")


class Statistics(NamedTuple):
    """Per-channel input mean and std (3 values each: grey targets are made 3-channel before the model)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


def _grey(mean: float, std: float) -> Statistics:
    return Statistics((mean,) * 3, (std,) * 3)


_CIFAR = Statistics((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
_IMAGENET = Statistics((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# utrerf/robust_transfer_learning tools/custom_datasets.py `name_to_dataset` (HEAD ff18fca), verbatim. Their
# Fashion-MNIST and KMNIST share one pair (a "TODO: Get mean and std for fmnist" sits above it); CIFAR-100 uses
# CIFAR-10's; Caltech101 uses ImageNet's. `mnist5k` is 5,000 of MNIST's digits: MNIST's pair.
AUTHORS_TARGET_STATISTICS: dict[str, Statistics] = {
    "mnist": _grey(0.1307, 0.3081),
    "mnist5k": _grey(0.1307, 0.3081),
    "fmnist": _grey(0.1801, 0.3421),
    "kmnist": _grey(0.1801, 0.3421),
    "cifar10": _CIFAR,
    "cifar100": _CIFAR,
    "svhn": Statistics((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "caltech101": _IMAGENET,
}


def target_statistics(target: str) -> Statistics:
    """The authors' constants for `target` (a variant such as `cifar10+lowres(8)` uses its base's, as their
    downscaled datasets did); for a target their code never saw (digits, `folder:`), its training split's own
    per-channel mean and std, the rule behind their MNIST pair (`split_statistics`)."""
    base, _ = split_dataset_spec(target)
    if base in AUTHORS_TARGET_STATISTICS:
        return AUTHORS_TARGET_STATISTICS[base]
    return split_statistics(base)


@functools.lru_cache(maxsize=8)
def split_statistics(target: str) -> Statistics:
    """Mean and standard deviation of every pixel value of the training split, per channel (grey: repeated on 3).

    Offline targets only: every torchvision target has the authors' constants, so none is read from a data root.
    """
    images = load_dataset(target, "train").images  # (N, C, H, W) in [0, 1]
    flat = images.transpose(0, 1).reshape(images.shape[1], -1).double()  # (C, N H W)
    mean, std = flat.mean(1).tolist(), flat.std(1, unbiased=False).tolist()
    if len(mean) == 1:
        return _grey(mean[0], std[0])
    return Statistics(tuple(mean), tuple(std))


def takes_target_statistics(model: Classifier, policy: str) -> bool:
    """True when `policy` gives this source the target's statistics (see module docstring)."""
    if policy not in NORMALISATIONS:
        raise RtxError(f"unknown normalisation {policy!r}; valid choices: {', '.join(NORMALISATIONS)}")
    return policy == "authors" and model.statistics_origin == "architecture"


def apply_normalisation(model: Classifier, target: str, policy: str) -> Statistics:
    """Set `model`'s normaliser per `policy` (in place, on its device); returns the statistics it now uses."""
    if takes_target_statistics(model, policy):
        stats = target_statistics(target)
        norm = model.normalize
        with torch.no_grad():
            norm.mean.copy_(torch.tensor(stats.mean, dtype=norm.mean.dtype).view_as(norm.mean))
            norm.std.copy_(torch.tensor(stats.std, dtype=norm.std.dtype).view_as(norm.std))
    flat = model.normalize
    return Statistics(tuple(flat.mean.flatten().tolist()), tuple(flat.std.flatten().tolist()))
