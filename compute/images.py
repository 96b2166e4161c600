"""Small PNG helpers shared by stages that store pictures in the cache (thumbnails, feature visualisations)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def to_png(image: torch.Tensor | np.ndarray, min_size: int = 56) -> bytes:
    """(C, H, W) or (H, W) float in [0, 1] -> PNG bytes, upscaled (nearest) to at least `min_size` pixels."""
    array = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    pil = Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))
    if min(pil.size) < min_size:
        factor = -(-min_size // min(pil.size))
        pil = pil.resize((pil.size[0] * factor, pil.size[1] * factor), Image.NEAREST)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def from_png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))
