"""Feature visualization (the paper's Figure 1b, A.1): activation maximization of penultimate-layer units,
starting from photos far from the training data (assets/seeds: scikit-image's CC0 / public-domain photos).

Which models: the preset's source models themselves. The paper visualises models fine-tuned FC-only on the
target; fine-tuning only the FC layer (the frozen part in eval mode) leaves every layer below it unchanged,
so the penultimate units, and the images that maximise them, are exactly the source model's.

Optimisation: x_0 = the seed photo, centre-cropped to a square and resized to the model's input size (RGB;
models trained on grey images still take 3 channels), then `steps` steps of normalised gradient ascent on
one unit's activation in [0, 1] pixel space:
    x <- clip(x + step_size * grad / rms(grad), 0, 1)
so `step_size` is the RMS change per pixel per step whatever the model's scale. Each unit is one image of a
batch (the model is in eval mode, so images do not interact). A unit that is zero everywhere on the seed
(ReLU inactive at every position) has zero gradient and stays at the seed: pick another unit or seed. Robust models are expected to turn the seed
into recognisable shapes, natural ones into high-frequency patterns (Figure 1b).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from compute.errors import RtxError, unknown_name
from compute.models import Classifier
from compute.paths import job_key
from compute.presets import FeatvizSpec

CODE_VERSION = "featviz-1"  # part of every featviz key: bump when results change
SEEDS_DIR = Path(__file__).resolve().parent.parent / "assets" / "seeds"
SEED_SUFFIXES = (".png", ".jpg", ".jpeg")
PNG_SIZE = 112  # stored PNGs are upscaled (nearest) to at least this many pixels


@dataclass(frozen=True)
class Visualization:
    """One seed's result for a batch of units."""

    seed: torch.Tensor  # (3, S, S) the starting image
    images: torch.Tensor  # (U, 3, S, S) the optimised images, one per unit
    start: np.ndarray  # (U,) each unit's activation on the seed
    final: np.ndarray  # (U,) and on its optimised image


def seed_names(folder: Path = SEEDS_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*") if p.suffix.lower() in SEED_SUFFIXES)


def load_seed(name: str, size: int, folder: Path = SEEDS_DIR) -> torch.Tensor:
    """A shipped photo as (3, size, size) float in [0, 1]: centre square crop, bicubic resize."""
    paths = [p for p in folder.glob(f"{name}.*") if p.suffix.lower() in SEED_SUFFIXES]
    if not paths:
        raise unknown_name("seed image", name, seed_names(folder))
    image = Image.open(paths[0]).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def maximize(model: Classifier, seed: torch.Tensor, units: tuple[int, ...], steps: int, step_size: float,
             device: torch.device | str | None = None) -> Visualization:
    """Gradient ascent on each unit's penultimate activation from the same seed; returns the images."""
    if not units:
        raise RtxError("featviz needs at least one unit")
    bad = [u for u in units if not 0 <= u < model.num_features]
    if bad:
        raise RtxError(f"units {bad} do not exist: the {model.arch} penultimate layer has {model.num_features} "
                       f"(use 0..{model.num_features - 1})")
    if steps < 0 or step_size <= 0:
        raise RtxError(f"need steps >= 0 and step_size > 0, got {steps} and {step_size}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval().requires_grad_(False)
    index = torch.arange(len(units), device=device)
    unit_t = torch.tensor(units, device=device)
    x = seed.to(device)[None].repeat(len(units), 1, 1, 1)  # (U, 3, S, S)
    with torch.no_grad():
        start = model.features(x)[index, unit_t].cpu().numpy()
    for _ in range(steps):
        x.requires_grad_(True)
        activation = model.features(x)[index, unit_t]  # (U,)
        (grad,) = torch.autograd.grad(activation.sum(), x)
        rms = grad.square().mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        x = (x.detach() + step_size * grad / rms).clamp(0, 1)
    with torch.no_grad():
        final = model.features(x)[index, unit_t].cpu().numpy()
    return Visualization(seed.cpu(), x.detach().cpu(), start, final)


def featviz_key(source: str, checksum: str, seed_image: str, spec: FeatvizSpec) -> str:
    return job_key("featviz", {"model": source, "checksum": checksum, "seed_image": seed_image,
                               "units": list(spec.units), "steps": spec.steps, "step_size": spec.step_size,
                               "code": CODE_VERSION})
