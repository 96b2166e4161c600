"""Per-model input preparation: bilinear upscaling, grey to 3 channels, the paper's augmentation.

Normalisation (mean/std) is owned by the model (compute.models), so everything here stays in [0, 1]
pixel space where attacks operate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def to_model_input(images: torch.Tensor, input_size: int) -> torch.Tensor:
    """(N, 1|3, h, w) in [0, 1] -> (N, 3, S, S) with bilinear resizing (the paper's A.3)."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-1] != input_size or images.shape[-2] != input_size:
        images = F.interpolate(images, size=(input_size, input_size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1).contiguous()


def augment_batch(images: torch.Tensor, generator: torch.Generator, max_degrees: float = 15.0,
                  max_shift: float = 0.125) -> torch.Tensor:
    """Random crop (as a shift of up to 12.5%) and rotation (up to 15 degrees), drawn per image.

    Done as one affine warp per batch so it costs little next to the forward pass; (N, C, H, W) -> same.
    """
    n = images.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * max_shift * 2  # grid units span [-1, 1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
