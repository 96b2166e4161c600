"""The one training loop and the one evaluation, as torchvision's references/classification has them.

`train_one_epoch` runs SGD steps over batches of (inputs, labels) and returns the epoch's mean loss and
accuracy; `evaluate` returns top-1 accuracy, optionally after perturbing each batch (robust accuracy). Source
training (compute.train_source), fine-tuning (compute.finetune) and robustness evaluation (compute.robustness)
all use them, so a change to how a step or an evaluation is done is made once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]  # inputs (B, ...), labels (B,)
Perturb = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) -> x'


@dataclass(frozen=True)
class EpochStats:
    """Mean training loss and training accuracy over the epoch's examples (before each step's update)."""

    loss: float
    accuracy: float


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator,
                     fetch: Callable[[torch.Tensor], Batch]) -> Iterator[Batch]:
    """One epoch of batches in a random order drawn from `generator`: fetch(indices (B,)) -> (inputs, labels)."""
    order = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        yield fetch(order[i:i + batch_size])


def train_step(model: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, perturb: Perturb | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One cross-entropy SGD step on batch x (B, ...) with labels y (B,), perturbed first when `perturb` is given;
    returns (loss, logits (B, C)), detached."""
    if perturb is not None:
        x = perturb(x, y)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


def train_one_epoch(model: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
                    batches: Iterable[Batch], perturb: Perturb | None = None,
                    before_step: Callable[[int], None] | None = None) -> EpochStats:
    """One pass of cross-entropy SGD steps; the caller puts the model in train mode (and frozen parts in eval).

    `perturb(x, y)` replaces each batch (adversarial or noise training) before the step; `before_step(i)` runs
    before step i (a per-step learning rate). The loss is summed in float64 on the device: no host sync per step.
    """
    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    count = 0
    for step, (x, y) in enumerate(batches):
        if before_step is not None:
            before_step(step)
        loss, logits = train_step(model, optimizer, x, y, perturb)  # (), (B, C)
        batch_loss = loss.double() * len(y)
        batch_correct = (logits.argmax(1) == y).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        count += len(y)
    if count == 0:
        return EpochStats(float("nan"), float("nan"))
    return EpochStats(float(loss_sum) / count, float(correct) / count)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None, perturb: Perturb | None = None) -> float:
    """Top-1 accuracy (correct / N) of `model` on images (N, ...) with labels (N,), in eval mode (restored after).

    Batches go to the model's device; `perturb(x, y)` attacks each batch first (it may need gradients, so only
    the scoring forward pass runs without them); `transform` maps a batch to the model's input (e.g. resizing).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for i in range(0, len(labels), batch_size):
            x, y = images[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)
            if perturb is not None:
                x = perturb(x, y)
            with torch.no_grad():
                logits = model(x if transform is None else transform(x))
            correct += int((logits.argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return correct / max(len(labels), 1)
