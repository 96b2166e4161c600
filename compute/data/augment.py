"""Training-time augmentation policies, batched on the device, with every random choice from the run's generator.

Policies (`FinetuneConfig.augment`):
- `none`: bilinear upscaling to the model's input size only (grey -> 3 channels).
- `legacy`: this project's first augmentation (rotation up to 15 degrees, shift up to 12.5%, every target),
  kept as the `tiny`/`demo` default so their recorded results do not change (compute.data.transforms).
- `paper`: the authors' per-target transforms (github utrerf/robust_transfer_learning, `tools/transforms.py`).
  Colour targets (3 channels): Resize(S) -> RandomCrop(S, padding=4) -> RandomHorizontalFlip ->
  ColorJitter(0.25, 0.25, 0.25) -> RandomRotation(2). Grey targets (1 channel: MNIST, KMNIST, Fashion-MNIST):
  Resize(S) -> 3 channels and nothing else.

Why batched and split into draw / apply: the engine (compute.engine) trains several runs in one model call.
Each run draws its images' parameters from its own generator (`draw_paper_params`, on the CPU, where the
run's generator lives; no device work), the parameters of all runs are concatenated, and one `apply_paper`
transforms the whole batch on the device. A single run (compute.finetune) does the same with one run, so the
two see identical parameters in the same generator order.

Faithfulness: each step equals torchvision.transforms.v2's functional op on a float image with the same
parameters (tests/test_engine.py checks it image by image), including ColorJitter's random order of its three
adjustments per image and RandomRotation's nearest-neighbour sampling with zero fill. One difference stays:
the authors ran the transforms on PIL images, which round to uint8 after every step; here the image stays
float from the upscaling on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from compute.data.transforms import augment_batch, to_model_input

POLICIES = ("none", "legacy", "paper")
PAD = 4  # RandomCrop(S, padding=4)
JITTER = 0.25  # ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25): factors in [0.75, 1.25]
MAX_DEGREES = 2.0  # RandomRotation(2)
GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class PaperParams:
    """Per-image parameters of the `paper` policy for a batch of n colour images (CPU tensors)."""

    crop: torch.Tensor  # (n, 2) int64: top, left offsets into the padded image, in [0, 2 * PAD]
    flip: torch.Tensor  # (n,) bool
    factors: torch.Tensor  # (n, 3) float32: brightness, contrast, saturation factors
    order: torch.Tensor  # (n, 3) int64: a permutation of (0 brightness, 1 contrast, 2 saturation)
    angle: torch.Tensor  # (n,) float64 degrees in [-MAX_DEGREES, MAX_DEGREES]

    @staticmethod
    def cat(parts: list[PaperParams]) -> PaperParams:
        return PaperParams(*(torch.cat([getattr(p, f) for p in parts]) for f in PaperParams.__dataclass_fields__))

    def to(self, device: torch.device) -> PaperParams:
        return PaperParams(*(to_device(getattr(self, f), device) for f in PaperParams.__dataclass_fields__))


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor onto `device` without blocking the host: through pinned memory on CUDA (a plain copy from
    pageable memory waits for the copy, a host synchronisation inside the training step)."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def draw_paper_params(n: int, generator: torch.Generator) -> PaperParams:
    """Draw a batch's parameters from `generator`, always in the same order (crop, flip, jitter, order, angle)."""
    crop = torch.randint(0, 2 * PAD + 1, (n, 2), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    factors = 1 - JITTER + 2 * JITTER * torch.rand(n, 3, generator=generator)
    order = torch.rand(n, 3, generator=generator).argsort(dim=1)
    angle = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * MAX_DEGREES
    return PaperParams(crop, flip, factors, order, angle)


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (0..255) or float (0..1) images -> float32 in [0, 1]."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma with torchvision's weights."""
    r, g, b = x.unbind(1)
    return r.mul(GREY_WEIGHTS[0]).add_(g, alpha=GREY_WEIGHTS[1]).add_(b, alpha=GREY_WEIGHTS[2]).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's _blend with a per-image ratio (N, 1, 1, 1): ratio * x + (1 - ratio) * other, clamped."""
    return (x * ratio + other * (1.0 - ratio)).clamp_(0, 1)


def _jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation in each image's own order; (N, 3, H, W) -> same."""
    f = factors.to(x.device).view(-1, 3, 1, 1, 1)  # (N, 3 ops, 1, 1, 1)
    order = order.to(x.device)
    for step in range(3):
        op = order[:, step].view(-1, 1, 1, 1)
        brightness = (x * f[:, 0]).clamp(0, 1)
        contrast = _blend(x, _grey(x).mean(dim=(1, 2, 3), keepdim=True), f[:, 1])
        saturation = _blend(x, _grey(x), f[:, 2])
        x = torch.where(op == 0, brightness, torch.where(op == 1, contrast, saturation))
    return x


def _rotation_grid(angle: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """Sampling grid (N, S, S, 2) of torchvision's rotate (centre, no expand), built as its `_affine_grid` does."""
    rot = torch.deg2rad(-angle)  # torchvision passes -angle to its inverse affine matrix
    cos, sin = torch.cos(rot), torch.sin(rot)
    zero = torch.zeros_like(cos)
    theta = torch.stack([cos, sin, zero, -sin, cos, zero], 1).view(-1, 2, 3).float().to(device)  # (N, 2, 3)
    base = torch.empty(1, size, size, 3, device=device)
    base[..., 0].copy_(torch.linspace((1.0 - size) * 0.5, (size - 1.0) * 0.5, steps=size, device=device))
    base[..., 1].copy_(torch.linspace((1.0 - size) * 0.5, (size - 1.0) * 0.5, steps=size, device=device).unsqueeze(-1))
    base[..., 2].fill_(1)
    scale = torch.tensor([0.5 * size, 0.5 * size], device=device)
    rescaled = theta.transpose(1, 2) / scale  # (N, 3, 2)
    return base.view(1, size * size, 3).expand(len(angle), -1, -1).bmm(rescaled).view(-1, size, size, 2)


def apply_paper(images: torch.Tensor, params: PaperParams, size: int) -> torch.Tensor:
    """The authors' colour-target transforms on a batch; (N, 3, h, w) uint8 or float -> (N, 3, S, S) float."""
    x = to_model_input(as_float(images), size)  # Resize(S), bilinear
    n, dev = x.shape[0], x.device
    params = params.to(dev)
    padded = F.pad(x, (PAD, PAD, PAD, PAD))  # (N, 3, S + 8, S + 8), zero fill
    span = torch.arange(size, device=dev)
    crop = params.crop
    rows = (crop[:, 0:1] + span).view(n, size, 1)  # (N, S, 1)
    cols = (crop[:, 1:2] + span).view(n, 1, size)  # (N, 1, S)
    x = padded[torch.arange(n, device=dev).view(n, 1, 1), :, rows, cols].permute(0, 3, 1, 2)  # (N, 3, S, S)
    x = torch.where(params.flip.view(n, 1, 1, 1), x.flip(-1), x)
    x = _jitter(x, params.factors, params.order)
    grid = _rotation_grid(params.angle, size, dev)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False).contiguous()


def train_input(images: torch.Tensor, policy: str, size: int, generator: torch.Generator) -> torch.Tensor:
    """One run's training batch -> model input (N, 3, S, S) in [0, 1], drawing from `generator` as the policy needs."""
    if policy == "paper" and images.shape[1] == 3:
        return apply_paper(images, draw_paper_params(images.shape[0], generator), size)
    x = as_float(images)
    if policy == "legacy":
        x = augment_batch(x, generator)
    return to_model_input(x, size)
