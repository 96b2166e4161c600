"""Fine-tuning a source model on a target subset (the paper's A.3-A.4): the heart of the transfer experiment.

Copy the source, re-initialise the FC layer for the target's classes, freeze everything but the FC layer and
the last k residual blocks, then SGD (lr 0.1, batch 128, momentum 0.9, weight decay 5e-4, lr / 10 at 1/3 and
2/3 of the epochs), testing after epochs 1, 1 + t, 1 + 2t, ... and the last (Table 4).

Frozen BatchNorm (`bn_mode`):
- `frozen` (default): frozen blocks run in eval mode, so their running statistics stay the source's. The
  frozen part is then a fixed function of the input, which is what "frozen" means to most users and what
  makes the feature cache below exact.
- `train`: the whole model is in train mode as plain `model.train()` leaves it, so frozen blocks' BN
  statistics drift towards the target (and their batch statistics are used during training).

Implementations, from reference to fast:
- `feature_cache=False`: every step runs the whole model on the (augmented) images: the naive loop.
- `feature_cache=True`: the frozen prefix (stem + first blocks) is run once per image and its activations
  reused every epoch and across runs that share (source, target, blocks). Same numbers as the naive loop
  when there is no augmentation and `bn_mode='frozen'` (a test checks this); refused otherwise, because
  augmentation changes the prefix's input every epoch.
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from compute.data import load_dataset, sample_subset, to_model_input
from compute.data.transforms import augment_batch
from compute.errors import RtxError
from compute.models import Classifier
from compute.paths import job_key

# Bump when a change to this module changes results: it is part of every fine-tune's key.
CODE_VERSION = "finetune-1"
BN_MODES = ("frozen", "train")


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that determines one fine-tuned model's result."""

    source: str
    source_checksum: str
    target: str
    n_train: int | None  # None = the whole training split
    seed: int
    blocks: int
    epochs: int
    test_every: int
    lr: float = 0.1
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    bn_mode: str = "frozen"
    feature_cache: bool = False
    test_limit: int | None = None

    @property
    def key(self) -> str:
        return job_key("finetune", {**asdict(self), "code": CODE_VERSION})

    def eval_epochs(self) -> list[int]:
        """1, 1 + t, 1 + 2t, ... and the last epoch ("test every 20" = 1, 21, 41, 61, 81, 100)."""
        return sorted({*range(1, self.epochs + 1, self.test_every), self.epochs})

    def validate(self, num_blocks: int) -> None:
        if self.bn_mode not in BN_MODES:
            raise RtxError(f"unknown bn_mode {self.bn_mode!r}; valid choices: {', '.join(BN_MODES)}")
        if not 0 <= self.blocks <= num_blocks:
            raise RtxError(f"cannot fine-tune {self.blocks} blocks: the architecture has {num_blocks} (use 0..{num_blocks})")
        if self.feature_cache and (self.augment or self.bn_mode != "frozen"):
            raise RtxError("feature_cache needs augment=False and bn_mode='frozen' (otherwise the frozen part's "
                           "output changes every epoch); drop --feature-cache or pass --no-augment")


@dataclass(frozen=True)
class FinetuneResult:
    """One run's outcome, ready for `CacheWriter.record_run`."""

    config: FinetuneConfig
    subset_indices: np.ndarray
    curve: list[dict[str, float]]  # [{epoch, test_acc, train_loss}]
    final_test_acc: float
    final_train_loss: float
    wall_seconds: float
    device: str
    model: Classifier | None

    def run_row(self, model_path: str | None = None) -> dict[str, Any]:
        cfg = self.config
        return {
            "key": cfg.key, "status": "done", "source": cfg.source, "target": cfg.target, "n_train": len(self.subset_indices),
            "seed": cfg.seed, "blocks": cfg.blocks, "epochs": cfg.epochs, "config": {**asdict(cfg), "code": CODE_VERSION},
            "subset_indices": self.subset_indices.tolist(), "final_test_acc": self.final_test_acc,
            "final_train_loss": self.final_train_loss, "wall_seconds": self.wall_seconds, "device": self.device,
            "error": None, "model_path": model_path,
        }


def default_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def split_model(model: Classifier, blocks: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(frozen prefix, trainable suffix): prefix = normaliser + stem + all but the last `blocks` blocks."""
    all_blocks = [b for _, b in model.blocks()]
    cut = len(all_blocks) - blocks
    prefix = nn.Sequential(model.normalize, model.stem(), *all_blocks[:cut])
    suffix = nn.Sequential(*all_blocks[cut:], model.net.avgpool, nn.Flatten(1), model.net.fc)
    return prefix, suffix


def prepare_model(source: Classifier, cfg: FinetuneConfig, num_classes: int, device: torch.device) -> Classifier:
    """Copy the source, re-initialise FC (seeded), freeze all but FC and the last `cfg.blocks` blocks."""
    model = copy.deepcopy(source).to(device)
    cfg.validate(len(model.blocks()))
    model.reset_fc(num_classes, torch.Generator().manual_seed(cfg.seed))
    model.requires_grad_(False)
    trainable = [b for _, b in model.blocks()][len(model.blocks()) - cfg.blocks:]
    for module in [*trainable, model.net.fc]:
        module.requires_grad_(True)
    return model


def set_train_mode(model: Classifier, cfg: FinetuneConfig) -> None:
    """Train mode for trainable blocks; frozen blocks per `bn_mode` (see module docstring)."""
    model.train()
    if cfg.bn_mode == "frozen":
        prefix, _ = split_model(model, cfg.blocks)
        prefix.eval()


class PrefixCache:
    """Frozen-prefix activations per (source checksum, target, split, blocks, input size), kept in memory (LRU)."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._store: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(self, key: tuple, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key in self._store:
            self._store.move_to_end(key)
            return self._store[key]
        value = compute()
        self._store[key] = value
        while len(self._store) > self.capacity:
            self._store.popitem(last=False)
        return value


PREFIX_CACHE = PrefixCache()


@torch.no_grad()
def _run_batched(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, size: int,
                 device: torch.device, batch: int = 512) -> torch.Tensor:
    """fn over model inputs made from `images` in batches; (N, C, h, w) -> (N, ...) on `device`."""
    outs = [fn(to_model_input(images[i:i + batch].to(device), size)) for i in range(0, len(images), batch)]
    return torch.cat(outs)


def evaluate(model: Classifier, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    """Top-1 accuracy of the whole model, in eval mode; returns a fraction."""
    was_training = model.training
    model.eval()
    logits = _run_batched(model, images, model.input_size, device)
    model.train(was_training)
    return float((logits.argmax(1).cpu() == labels).float().mean())


def finetune(source: Classifier, cfg: FinetuneConfig, keep_model: bool = False,
             device: str | None = None, on_epoch: Callable[[int, int], None] | None = None,
             data_root: str | None = None) -> FinetuneResult:
    """Run one fine-tune and return its learning curve and final numbers (the model only if `keep_model`).

    `data_root`: the folder of torchvision targets (`Settings.data_root`)."""
    start = time.perf_counter()
    dev = default_device(device)
    train = load_dataset(cfg.target, "train", data_root)
    test = load_dataset(cfg.target, "test", data_root)
    test_images, test_labels = test.images, test.labels
    if cfg.test_limit:
        test_images, test_labels = test_images[: cfg.test_limit], test_labels[: cfg.test_limit]
    subset = sample_subset(train.labels, cfg.n_train or len(train), cfg.seed)
    model = prepare_model(source, cfg, len(train.classes), dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [cfg.epochs // 3, 2 * cfg.epochs // 3], 0.1)
    generator = torch.Generator().manual_seed(cfg.seed)
    prefix, suffix = split_model(model, cfg.blocks)
    x_train = train.images[torch.as_tensor(subset)]
    y_train = train.labels[torch.as_tensor(subset)].to(dev)

    if cfg.feature_cache:
        # channels_last makes the small convolutions of the trainable blocks ~1.4x faster on CPU
        model.to(memory_format=torch.channels_last)
        cache_id = (cfg.source_checksum, cfg.target, cfg.blocks, model.input_size, str(dev))
        full_train = PREFIX_CACHE.get((*cache_id, "train"), lambda: _channels_last(
            _run_batched(prefix, train.images, model.input_size, dev)))
        inputs = full_train[torch.as_tensor(subset, device=dev)]
        test_feats = PREFIX_CACHE.get((*cache_id, "test", cfg.test_limit),
                                      lambda: _channels_last(_run_batched(prefix, test_images, model.input_size, dev)))
        step_fn, eval_fn = suffix, lambda: _accuracy(suffix, test_feats, test_labels)
    else:
        inputs = x_train
        step_fn = model
        eval_fn = lambda: evaluate(model, test_images, test_labels, dev)  # noqa: E731

    curve: list[dict[str, float]] = []
    eval_at = set(cfg.eval_epochs())
    loss_fn = nn.CrossEntropyLoss()
    epoch_loss = float("nan")
    for epoch in range(1, cfg.epochs + 1):
        set_train_mode(model, cfg)
        order = torch.randperm(len(subset), generator=generator)
        total, count = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            batch = inputs[idx.to(inputs.device)]
            if not cfg.feature_cache:
                batch = batch.to(dev)
                if cfg.augment:
                    batch = augment_batch(batch, generator)
                batch = to_model_input(batch, model.input_size)
            loss = loss_fn(step_fn(batch), y_train[idx.to(dev)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()) * len(idx), count + len(idx)
        scheduler.step()
        epoch_loss = total / count
        if epoch in eval_at:
            curve.append({"epoch": epoch, "test_acc": eval_fn(), "train_loss": epoch_loss})
        if on_epoch is not None:
            on_epoch(epoch, cfg.epochs)
    model.eval()
    return FinetuneResult(cfg, subset, curve, curve[-1]["test_acc"], epoch_loss, time.perf_counter() - start,
                          str(dev), model.cpu() if keep_model else None)


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.ndim == 4 else tensor


@torch.inference_mode()
def _accuracy(suffix: nn.Sequential, feats: torch.Tensor, labels: torch.Tensor, batch: int = 1024) -> float:
    was_training = suffix.training
    suffix.eval()
    preds = torch.cat([suffix(feats[i:i + batch]).argmax(1) for i in range(0, len(feats), batch)])
    suffix.train(was_training)
    return float((preds.cpu() == labels).float().mean())
