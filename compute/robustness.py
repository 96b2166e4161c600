"""Robustness of source models: clean accuracy and PGD(k) accuracy at several eps (the paper's Table 1b).

`evaluate_robustness` measures one (model, constraint) pair on a batch of images in dataset pixel space, and
`constraint_row` makes its record; the stage that runs them over a preset's sources is compute.stages.robustness.
"""

from __future__ import annotations

import torch

from compute.attacks import AttackConfig, OnPixels, perturb
from compute.models import Classifier
from compute.records import RobustnessRecord
from compute.training import evaluate

__all__ = ["DEMO_N_IMAGES", "EVAL_SEED", "constraint_row", "evaluate_robustness"]

DEMO_N_IMAGES = 1_000  # first N test images: PGD(3) on 1,000 28x28 images takes about a second on 2 cores
EVAL_SEED = 0  # generator for random starts / Gaussian noise during evaluation


def evaluate_robustness(model: Classifier, images: torch.Tensor, labels: torch.Tensor, cfg: AttackConfig,
                        batch_size: int = 256, generator: torch.Generator | None = None) -> float:
    """Top-1 accuracy (a fraction) on images (N, c, h, w) in [0, 1] after perturbing each batch with cfg.

    Runs on the model's device in eval mode; the model's mode is restored afterwards.
    """
    pixels = OnPixels(model, model.input_size)
    attack = None if cfg.kind == "none" else (lambda x, y: perturb(pixels, x, y, cfg, generator))
    return evaluate(pixels, images, labels, batch_size, perturb=attack)


def constraint_row(source: str, dataset: str, cfg: AttackConfig, accuracy: float, n_images: int) -> RobustnessRecord:
    """One `robustness` record; clean accuracy is norm 'none', eps 0, steps 0."""
    return RobustnessRecord(source, dataset, cfg.norm_name, float(cfg.eps), int(cfg.steps), float(accuracy),
                            int(n_images))
