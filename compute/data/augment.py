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
# Before `paper` existed `augment` was a bool: presets may still write True/False, and run keys still record these
# two policies so (compute.finetune.key_fields), so runs recorded then keep their keys.
BOOL_POLICIES = {True: "legacy", False: "none"}
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


def policy_name(augment: bool | str) -> str:
    """A preset's `augment` as the policy name that every other place uses: True/False are 'legacy'/'none'."""
    return BOOL_POLICIES[augment] if isinstance(augment, bool) else augment


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor onto `device` without blocking the host: through pinned memory on CUDA (a plain copy from
    pageable memory waits for the copy, a host synchronisation inside the training step)."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def draw_paper_params(n: int, generator: torch.Generator) -> PaperParams:
    """Draw a batch's parameters from `generator`, always in the same order (crop, flip, jitter, order, angle);
    explicit dtypes, so the draws do not depend on torch's default dtype (float64 in the engine's tests)."""
    crop = torch.randint(0, 2 * PAD + 1, (n, 2), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    factors = 1 - JITTER + 2 * JITTER * torch.rand(n, 3, generator=generator, dtype=torch.float32)
    order = torch.rand(n, 3, generator=generator, dtype=torch.float32).argsort(dim=1)
    angle = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * MAX_DEGREES
    return PaperParams(crop, flip, factors, order, angle)


def as_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (0..255) or float (0..1) images -> `dtype` (float32 unless a float64 model asks) in [0, 1]."""
    return images.to(dtype).div_(255) if images.dtype == torch.uint8 else images.to(dtype)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma with torchvision's weights."""
    r, g, b = x.unbind(1)
    return r.mul(GREY_WEIGHTS[0]).add_(g, alpha=GREY_WEIGHTS[1]).add_(b, alpha=GREY_WEIGHTS[2]).unsqueeze(1)


def _jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation in each image's own order; (N, 3, H, W) -> same.

    Each of the three is torchvision's `_blend(x, other, f) = clamp(f * x + (1 - f) * other, 0, 1)` with its own
    `other`: 0 (brightness), the image's mean grey (contrast), its per-pixel grey (saturation). So a step is ONE
    blend per image, with `other` chosen by that image's operation at this step: 3 blends per image, where
    computing all three operations at every step and selecting took 9 (issue 20, item 9)."""
    f = factors.to(x.device).view(-1, 3, 1, 1, 1)  # (N, 3 ops, 1, 1, 1)
    op = order.to(x.device).view(-1, 3, 1, 1, 1)  # (N, 3 steps, 1, 1, 1)
    for step in range(3):
        this = op[:, step]  # (N, 1, 1, 1)
        ratio = f.gather(1, op[:, step:step + 1]).squeeze(1)  # (N, 1, 1, 1): the factor of this step's operation
        grey = _grey(x)  # (N, 1, H, W)
        other = torch.where(this == 2, grey, grey.mean(dim=(1, 2, 3), keepdim=True) * (this == 1))
        x = (x * ratio + other * (1.0 - ratio)).clamp_(0, 1)
    return x


@dataclass(frozen=True)
class _Geometry:
    """Per-size constants of the sampling grids, built once per (size, device) so that a training step makes no
    tensor from Python values on the device (each such tensor is a blocking host-to-device copy)."""

    span: torch.Tensor  # (S,) int64: 0 .. S - 1
    flipped: torch.Tensor  # (S,) int64: S - 1 .. 0
    base: torch.Tensor  # (1, S * S, 3): torchvision's `_affine_grid` base (pixel centres, homogeneous)
    scale: torch.Tensor  # (2,): S / 2, from pixels to grid_sample's [-1, 1]


_GEOMETRY: dict[tuple[int, str], _Geometry] = {}


def _geometry(size: int, device: torch.device) -> _Geometry:
    key = (size, str(device))
    if key not in _GEOMETRY:
        line = torch.linspace((1.0 - size) * 0.5, (size - 1.0) * 0.5, steps=size, dtype=torch.float32)
        base = torch.empty(1, size, size, 3, dtype=torch.float32)
        base[..., 0].copy_(line)
        base[..., 1].copy_(line.unsqueeze(-1))
        base[..., 2].fill_(1)
        span = torch.arange(size)
        _GEOMETRY[key] = _Geometry(span.to(device), span.flip(0).to(device), base.view(1, size * size, 3).to(device),
                                   torch.full((2,), 0.5 * size, dtype=torch.float32).to(device))
    return _GEOMETRY[key]


def _rotation_grid(angle: torch.Tensor, geometry: _Geometry) -> torch.Tensor:
    """Sampling grid (N, S, S, 2) of torchvision's rotate (centre, no expand), built as its `_affine_grid` does;
    `angle` (N,) on the device."""
    size = len(geometry.span)
    rot = torch.deg2rad(-angle)  # torchvision passes -angle to its inverse affine matrix
    cos, sin = torch.cos(rot), torch.sin(rot)
    zero = torch.zeros_like(cos)
    theta = torch.stack([cos, sin, zero, -sin, cos, zero], 1).view(-1, 2, 3).float()  # (N, 2, 3)
    rescaled = theta.transpose(1, 2) / geometry.scale  # (N, 3, 2)
    return geometry.base.expand(len(angle), -1, -1).bmm(rescaled).view(-1, size, size, 2)


def apply_paper(images: torch.Tensor, params: PaperParams, size: int) -> torch.Tensor:
    """The authors' colour-target transforms on a batch; (N, 3, h, w) uint8 or float -> (N, 3, S, S) float32.

    Crop and flip are one gather (each output column reads column `left + j`, or `left + S - 1 - j` when flipped,
    of the zero-padded image); the rotation is a second, nearest-neighbour sample after the jitter. It cannot join
    the first: ColorJitter's contrast blends with the mean grey of the whole cropped image (after the operations
    before it, whose clamps are not linear), which the rotated image no longer holds, and the rotation's zero fill
    must stay zero through the jitter."""
    x = to_model_input(as_float(images), size)  # Resize(S), bilinear
    n, dev = x.shape[0], x.device
    params = params.to(dev)
    geometry = _geometry(size, dev)
    padded = F.pad(x, (PAD, PAD, PAD, PAD))  # (N, 3, S + 8, S + 8), zero fill
    rows = (params.crop[:, 0:1] + geometry.span).view(n, size, 1)  # (N, S, 1)
    cols = params.crop[:, 1:2] + torch.where(params.flip.view(n, 1), geometry.flipped, geometry.span)  # (N, S)
    x = padded[torch.arange(n, device=dev).view(n, 1, 1), :, rows, cols.view(n, 1, size)].permute(0, 3, 1, 2)
    x = _jitter(x, params.factors, params.order)  # (N, 3, S, S)
    grid = _rotation_grid(params.angle, geometry)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False).contiguous()


def train_input(images: torch.Tensor, policy: str, size: int, generator: torch.Generator) -> torch.Tensor:
    """One run's training batch -> model input (N, 3, S, S) in [0, 1], drawing from `generator` as the policy needs."""
    if policy == "paper" and images.shape[1] == 3:
        return apply_paper(images, draw_paper_params(images.shape[0], generator), size)
    x = as_float(images)
    if policy == "legacy":
        x = augment_batch(x, generator)
    return to_model_input(x, size)
