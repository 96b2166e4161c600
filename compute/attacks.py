"""Perturbations of inputs in [0, 1] pixel space: PGD (L2 and Linf), PGD(1), Gaussian noise, none.

Used for adversarial training of source models (`compute.train_source`) and for robustness evaluation
(`compute.robustness`). A constraint is written as text everywhere the user sees it: `none`, `l2:3`,
`linf:4/255`, `linf:0.1`, `gaussian:0.054`; `parse_constraint` turns it into an `AttackConfig`.

PGD follows the paper's A.2 (and the MadryLab `robustness` library it used): k steps of gradient ascent on
the cross-entropy loss, step size alpha = c * eps / k (c = `step_mult`, default 2.5, the paper's 1.5 < c < 4);
an L2 step moves along the per-image normalised gradient, an Linf step along its sign; after every step the
perturbation is projected onto the eps-ball and the image clipped back to [0, 1]. PGD(1) is PGD with k = 1:
with zero init its single step is longer than eps and is projected onto the ball's surface, so it equals the
paper's Section 7 model (step size 6 for eps 3) for any c >= 1.

Implementations, from reference to fast: `pgd_reference` (one image at a time, plain Python loop; the
test oracle) and `perturb` (batched; what training and evaluation use). Attack kinds and norms live in
registries (`ATTACKS`, `NORMS`), so the CLI, the tests and the explorer list the same names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from compute.data.transforms import to_model_input
from compute.errors import RtxError, lookup

__all__ = [
    "ATTACKS",
    "NORMS",
    "AttackConfig",
    "OnPixels",
    "attack_names",
    "parse_constraint",
    "perturb",
    "pgd_reference",
]

CONSTRAINT_FORMS = "'none', 'l2:EPS' (e.g. l2:1.5), 'linf:EPS' (e.g. linf:4/255 or linf:0.1), 'gaussian:SIGMA'"


@dataclass(frozen=True)
class AttackConfig:
    """One perturbation model. `eps` is the ball radius for PGD and the noise sigma for `gaussian`."""

    kind: str  # 'none' | 'pgd' | 'gaussian' (a key of ATTACKS)
    norm: str | None  # 'l2' | 'linf' for pgd, None otherwise
    eps: float
    steps: int
    step_mult: float = 2.5  # the paper's c in alpha = c * eps / k
    random_start: bool = False

    @property
    def alpha(self) -> float:
        """PGD step size c * eps / k."""
        return self.step_mult * self.eps / max(self.steps, 1)

    @property
    def label(self) -> str:
        """The constraint text this config was parsed from (up to the eps formatting)."""
        if self.kind == "none":
            return "none"
        return f"{self.norm if self.kind == 'pgd' else self.kind}:{self.eps:g}"

    @property
    def norm_name(self) -> str:
        """The `norm` column of the robustness table: 'none', 'l2', 'linf' or 'gaussian'."""
        return self.norm if self.kind == "pgd" and self.norm else self.kind


def _parse_number(text: str) -> float:
    """'0.1', '3', '4/255', '0.5/255' -> float; raises ValueError otherwise."""
    top, slash, bottom = text.strip().partition("/")
    value = float(Fraction(top) / Fraction(bottom)) if slash else float(text)
    if not value == value or value < 0 or value == float("inf"):  # NaN, negative, inf
        raise ValueError(text)
    return value


def parse_constraint(text: str, steps: int) -> AttackConfig:
    """'l2:1.5' + k -> PGD(k) in the L2 ball of radius 1.5; 'gaussian:0.054' -> noise; 'none' -> no perturbation."""
    raw = text.strip().lower()
    if raw in ("none", "natural", ""):
        return AttackConfig("none", None, 0.0, 0)
    kind, sep, number = raw.partition(":")
    try:
        eps = _parse_number(number)
    except (ValueError, ZeroDivisionError):
        eps = None
    if not sep or eps is None or kind not in (*NORMS, "gaussian"):
        raise RtxError(f"cannot read constraint {text!r}; use one of {CONSTRAINT_FORMS}")
    if kind == "gaussian":
        return AttackConfig("gaussian", None, eps, 0)
    if steps < 1:
        raise RtxError(f"constraint {text!r} needs PGD steps >= 1 (got {steps}); pass --steps K")
    return AttackConfig("pgd", kind, eps, int(steps))


class OnPixels(nn.Module):
    """A Classifier that takes images as the dataset stores them: (N, c, h, w) in [0, 1] -> logits.

    Attacks perturb these pixels, so an eps means the same thing whatever the model's input size: the demo's
    L2 eps 1.5 is a budget on Fashion-MNIST's 784 grey pixels, not on the 3-channel copy the model sees
    (grey -> 3 channels and resizing are part of the differentiable forward). Inputs go channels_last,
    about 1.3x faster for the small ResNet on CPU.
    """

    def __init__(self, model: nn.Module, input_size: int):
        super().__init__()
        self.model = model
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(to_model_input(x, self.input_size).contiguous(memory_format=torch.channels_last))


# --- norms: the geometry PGD needs ---------------------------------------------------------------------
@dataclass(frozen=True)
class Norm:
    """Steepest-ascent direction, projection onto the eps-ball and a uniform-ish random start for one norm."""

    name: str
    direction: Callable[[torch.Tensor], torch.Tensor]  # gradient (N, ...) -> unit step (N, ...)
    project: Callable[[torch.Tensor, float], torch.Tensor]  # delta (N, ...), eps -> delta inside the ball
    random: Callable[[torch.Tensor, float, torch.Generator | None], torch.Tensor]  # like, eps, gen -> delta


def _per_image_l2(t: torch.Tensor) -> torch.Tensor:
    """(N, ...) -> (N, 1, ..., 1) L2 norms, broadcastable against t."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _l2_direction(grad: torch.Tensor) -> torch.Tensor:
    return grad / _per_image_l2(grad).clamp_min(1e-12)


def _l2_project(delta: torch.Tensor, eps: float) -> torch.Tensor:
    return delta * (eps / _per_image_l2(delta).clamp_min(1e-12)).clamp(max=1.0)


def _l2_random(like: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """A random direction scaled to a random radius in [0, eps] (as MadryLab's L2Step.random_perturb)."""
    noise = torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    radius = torch.rand(like.shape[0], generator=generator, device=like.device, dtype=like.dtype)
    return _l2_direction(noise) * radius.view(-1, *([1] * (like.dim() - 1))) * eps


def _linf_random(like: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    noise = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    return (noise * 2 - 1) * eps


NORMS: dict[str, Norm] = {
    "l2": Norm("l2", _l2_direction, _l2_project, _l2_random),
    "linf": Norm("linf", torch.sign, lambda d, eps: d.clamp(-eps, eps), _linf_random),
}


# --- attacks ---------------------------------------------------------------------------------------------
AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, AttackConfig, torch.Generator | None], torch.Tensor]
ATTACKS: dict[str, AttackFn] = {}


def register_attack(name: str) -> Callable[[AttackFn], AttackFn]:
    """Decorator adding an attack kind to `ATTACKS` (timm's @register_model pattern)."""

    def add(fn: AttackFn) -> AttackFn:
        ATTACKS[name] = fn
        return fn

    return add


def attack_names() -> list[str]:
    return sorted(ATTACKS)


@register_attack("none")
def _no_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: AttackConfig,
               generator: torch.Generator | None) -> torch.Tensor:
    return x.detach().clone()


@register_attack("gaussian")
def _gaussian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: AttackConfig,
              generator: torch.Generator | None) -> torch.Tensor:
    """x + N(0, sigma^2) per pixel, clipped to [0, 1] (the paper's Section 7 Gaussian-noise training)."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x.detach() + cfg.eps * noise).clamp(0, 1)


@register_attack("pgd")
def _pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: AttackConfig,
         generator: torch.Generator | None) -> torch.Tensor:
    """Batched PGD(k); x (N, C, H, W) in [0, 1] -> x' in [0, 1] with ||x' - x|| <= eps per image."""
    norm, x = lookup("PGD norm", NORMS, cfg.norm), x.detach()
    delta = norm.random(x, cfg.eps, generator) if cfg.random_start else torch.zeros_like(x)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(cfg.steps):
        delta.requires_grad_(True)
        # Summed loss: every image's gradient is its own, whatever the batch size (the step is normalised anyway).
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)  # only the input's gradient: no weight gradients computed
        with torch.no_grad():
            delta = norm.project(delta + cfg.alpha * norm.direction(grad), cfg.eps)
            delta = (x + delta).clamp(0, 1) - x  # clipping only shrinks |delta|, so it stays in the ball
    return (x + delta).detach()


def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: AttackConfig,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """x (N, ...) in [0, 1] -> perturbed x' in [0, 1] inside cfg's eps-ball; the model runs in eval mode.

    The model's train/eval mode is restored afterwards, so adversarial training calls this between steps.
    """
    attack = lookup("attack", ATTACKS, cfg.kind)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            return attack(model, x, y, cfg, generator)
    finally:
        model.train(was_training)


def pgd_reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: AttackConfig) -> torch.Tensor:
    """The test oracle: PGD without random start, one image at a time, written out longhand."""
    model_was_training = model.training
    model.eval()
    out = []
    for xi, yi in zip(x.detach(), y, strict=True):
        delta = torch.zeros_like(xi)
        for _ in range(cfg.steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model((xi + delta).unsqueeze(0)), yi.view(1))
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                if cfg.norm == "l2":
                    delta = delta + cfg.alpha * grad / grad.norm().clamp_min(1e-12)
                    delta = delta * min(1.0, cfg.eps / max(float(delta.norm()), 1e-12))
                else:
                    delta = (delta + cfg.alpha * grad.sign()).clamp(-cfg.eps, cfg.eps)
                delta = (xi + delta).clamp(0, 1) - xi
        out.append((xi + delta).detach())
    model.train(model_was_training)
    return torch.stack(out)
