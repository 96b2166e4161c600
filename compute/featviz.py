"""Feature visualization (the paper's Figure 1b, A.1): activation maximization of penultimate-layer units,
starting from photos far from the training data (assets/seeds: scikit-image's CC0 / public-domain photos).

Which models: the preset's source models themselves. The paper visualises models fine-tuned FC-only on the
target; fine-tuning only the FC layer (the frozen part in eval mode) leaves every layer below it unchanged,
so the penultimate units, and the images that maximise them, are exactly the source model's.

Optimisation, as Engstrom et al. (2019), whose method the paper used: projected gradient ascent on one unit's
activation inside an L2 ball around the seed, in the model's own input space.
- Input space: the pixels the source was trained on (one grey channel for Fashion-MNIST sources, three for
  colour ones) at the model's input size; the seed photo is converted to that (`load_seed`). Moving three
  colour channels of a grey model independently only paints colour noise the model never saw.
- Step rule: `compute.attacks`' L2 PGD (normalised-gradient steps of alpha = step_mult * eps / steps, then
  projection onto the ball and onto [0, 1]); the ball's radius is `eps_rms` per value, eps = eps_rms *
  sqrt(C * S * S), so the same spec means the same per-pixel freedom at any resolution. Without the ball,
  64 steps drive every pixel to 0 or 1 and every model, robust or natural, paints saturated noise.
- Units: by default the `top_units` penultimate channels the seed activates most (a unit that is zero
  everywhere on the seed has zero gradient and would leave the seed unchanged); explicit `units` override.
  Each unit is one image of a batch (the model is in eval mode, so images do not interact).
Robust models are expected to turn the seed into recognisable shapes, natural ones into high-frequency
patterns (Figure 1b); `compute.spectrum.high_frequency_share` measures which one happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from compute.attacks import NORMS
from compute.data import DATASETS
from compute.data.transforms import to_model_input
from compute.errors import RtxError, unknown_name
from compute.models import Classifier
from compute.paths import job_key
from compute.presets import FeatvizSpec
from compute.settings import resolve_device

CODE_VERSION = "featviz-2"  # part of every featviz key: bump when results change
SEEDS_DIR = Path(__file__).resolve().parent.parent / "assets" / "seeds"
SEED_SUFFIXES = (".png", ".jpg", ".jpeg")
PNG_SIZE = 112  # stored PNGs are upscaled (nearest) to at least this many pixels


@dataclass(frozen=True)
class Visualization:
    """One seed's result for a batch of units."""

    seed: torch.Tensor  # (C, S, S) the starting image, C = the model's input channels (1 grey, 3 colour)
    images: torch.Tensor  # (U, C, S, S) the optimised images, one per unit
    units: tuple[int, ...]  # (U,) which penultimate channels
    start: np.ndarray  # (U,) each unit's activation on the seed
    final: np.ndarray  # (U,) and on its optimised image
    eps: float  # the L2 radius of the ball around the seed
    step_size: float  # the L2 length of one step


def seed_names(folder: Path = SEEDS_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*") if p.suffix.lower() in SEED_SUFFIXES)


def load_seed(name: str, size: int, channels: int = 3, folder: Path = SEEDS_DIR) -> torch.Tensor:
    """A shipped photo as (channels, size, size) float in [0, 1]: centre square crop, grey if channels == 1,
    bicubic resize."""
    if channels not in (1, 3):
        raise RtxError(f"seed images have 1 (grey) or 3 (colour) channels, not {channels}")
    paths = [p for p in folder.glob(f"{name}.*") if p.suffix.lower() in SEED_SUFFIXES]
    if not paths:
        raise unknown_name("seed image", name, seed_names(folder))
    image = Image.open(paths[0]).convert("L" if channels == 1 else "RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255.0  # (S, S) grey or (S, S, 3)
    return torch.from_numpy(array[None] if channels == 1 else array.transpose(2, 0, 1).copy()).contiguous()


def input_channels(dataset: str | None) -> int:
    """Channels of the pixels a source was trained on: 1 for a grey dataset, else 3 (unknown datasets: 3)."""
    info = DATASETS.get(dataset) if dataset else None
    return 1 if info is not None and info.channels == 1 else 3


def _unit_features(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """(N, C, S, S) pixels in the source's own space -> (N, F) penultimate features (grey is repeated to RGB)."""
    return model.features(to_model_input(x, model.input_size))


def top_units(model: Classifier, seed: torch.Tensor, k: int) -> tuple[int, ...]:
    """The k penultimate units the seed activates most, strongest first (ties: lower index first)."""
    if not 1 <= k <= model.num_features:
        raise RtxError(f"top_units must be 1..{model.num_features} for {model.arch}, got {k}")
    with torch.no_grad():
        act = _unit_features(model.eval(), seed[None].to(next(model.parameters()).device))[0].cpu()  # (F,)
    order = np.argsort(-act.numpy(), kind="stable")
    return tuple(int(u) for u in order[:k])


def maximize(model: Classifier, seed: torch.Tensor, units: tuple[int, ...], steps: int, eps: float,
             step_mult: float = 2.5, step_size: float | None = None,
             device: torch.device | str | None = None) -> Visualization:
    """Projected gradient ascent on each unit's penultimate activation inside the L2 ball of radius `eps` around
    the seed (and [0, 1]); step length `step_size`, by default the attacks' rule step_mult * eps / steps."""
    if not units:
        raise RtxError("featviz needs at least one unit")
    bad = [u for u in units if not 0 <= u < model.num_features]
    if bad:
        raise RtxError(f"units {bad} do not exist: the {model.arch} penultimate layer has {model.num_features} "
                       f"(use 0..{model.num_features - 1})")
    alpha = step_mult * eps / max(steps, 1) if step_size is None else step_size
    if steps < 0 or eps <= 0 or alpha <= 0:
        raise RtxError(f"need steps >= 0, eps > 0 and step_size > 0, got {steps}, {eps} and {alpha}")
    l2 = NORMS["l2"]
    device = resolve_device(device)
    model = model.to(device).eval().requires_grad_(False)
    index = torch.arange(len(units), device=device)
    unit_t = torch.tensor(units, device=device)
    x0 = seed.to(device)[None].repeat(len(units), 1, 1, 1)  # (U, C, S, S)
    delta = torch.zeros_like(x0)
    with torch.no_grad():
        start = _unit_features(model, x0)[index, unit_t].cpu().numpy()
    for _ in range(steps):
        delta.requires_grad_(True)
        activation = _unit_features(model, x0 + delta)[index, unit_t]  # (U,)
        (grad,) = torch.autograd.grad(activation.sum(), delta)
        with torch.no_grad():
            delta = l2.project(delta + alpha * l2.direction(grad), eps)
            delta = (x0 + delta).clamp(0, 1) - x0  # clipping only shrinks |delta|: still inside the ball
    x = (x0 + delta).detach()
    with torch.no_grad():
        final = _unit_features(model, x)[index, unit_t].cpu().numpy()
    return Visualization(seed.cpu(), x.cpu(), tuple(int(u) for u in units), start, final, float(eps), float(alpha))


def visualize(model: Classifier, seed_image: str, spec: FeatvizSpec, channels: int = 3,
              device: torch.device | str | None = None) -> Visualization:
    """One seed photo, in the model's input space, maximised for the spec's units (or the seed's top units)."""
    seed = load_seed(seed_image, model.input_size, channels)
    units = spec.units or top_units(model, seed, spec.top_units)
    eps = spec.eps_rms * float(np.sqrt(seed.numel()))
    return maximize(model, seed, units, spec.steps, eps, spec.step_mult, spec.step_size, device)


def featviz_key(source: str, checksum: str, seed_image: str, spec: FeatvizSpec) -> str:
    return job_key("featviz", {"model": source, "checksum": checksum, "seed_image": seed_image,
                               "units": list(spec.units), "top_units": spec.top_units, "steps": spec.steps,
                               "eps_rms": spec.eps_rms, "step_mult": spec.step_mult, "step_size": spec.step_size,
                               "code": CODE_VERSION})
