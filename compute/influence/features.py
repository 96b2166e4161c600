"""Penultimate-layer features of a fine-tuned model, the inputs of every influence route."""

from __future__ import annotations

import torch

from compute.data import to_model_input
from compute.models import Classifier


@torch.no_grad()
def penultimate(model: Classifier, images: torch.Tensor, device: torch.device | None = None,
                batch: int = 256) -> torch.Tensor:
    """(N, C, h, w) images in [0, 1] -> (N, d) float32 features on `device`, model in eval mode, no augmentation."""
    device = device or next(model.parameters()).device
    model.eval()
    outs = [model.features(to_model_input(images[i:i + batch].to(device), model.input_size))
            for i in range(0, images.shape[0], batch)]
    return torch.cat(outs) if outs else torch.zeros(0, model.num_features, device=device)
