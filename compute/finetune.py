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

Recipe options (each in the run's key; at the defaults below they are left out of it, so keys recorded before
they existed still match): `augment` ('legacy' this project's first augmentation, 'none', 'paper' the authors'
per-target transforms: compute.data.augment), `fc_init` ('uniform' | 'normal': N(0, 1) weight, zero bias, the
authors'), `lr_schedule` ('thirds' | 'step': StepLR(epochs // 3, 0.1), the authors'), `precision` ('fp32' |
'bf16' autocast), `input_size` (None = the architecture's), `sampler` ('per-label' the paper's text | 'authors'
numpy RandomState choice: compute.data.sampler), `normalisation` ('source' | 'authors': the target's statistics
for a source whose file stored none: compute.normalisation). compute.departures says which the `paper` preset
uses and what each choice changes.

Implementations, from reference to fast (the many-runs-at-once engine is compute.engine):
- `feature_cache=False`: every step runs the whole model on the (augmented) images: the naive loop.
- `feature_cache=True`: the frozen prefix (stem + first blocks) is run once per image and its activations
  reused every epoch and across runs that share (source, target, blocks). Same numbers as the naive loop up to
  float rounding when there is no augmentation and `bn_mode='frozen'` (a test checks this); refused otherwise,
  because augmentation changes the prefix's input every epoch. In the key (float32 rounding differs; the demo's
  runs are recorded with it); the engine ignores it and caches whenever the prefix is static (`finetune` says more).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from compute.data import load_dataset, sample_subset, to_model_input
from compute.data.augment import BOOL_POLICIES, train_input
from compute.data.sampler import SAMPLERS
from compute.errors import RtxError
from compute.lru import LruStore
from compute.models import Classifier
from compute.normalisation import NORMALISATIONS, apply_normalisation
from compute.paths import job_key
from compute.records import CurvePoint, RunRecord
from compute.settings import resolve_device
from compute.training import evaluate, shuffled_batches, train_one_epoch

# Bump when a change to this module changes results: it is part of every fine-tune's key.
CODE_VERSION = "finetune-1"
BN_MODES = ("frozen", "train")
FC_INITS = ("uniform", "normal")
LR_SCHEDULES = ("thirds", "step")
PRECISIONS = ("fp32", "bf16")
RECORDED_POLICIES = {name: flag for flag, name in BOOL_POLICIES.items()}  # 'legacy' -> True, 'none' -> False
# Recipe fields added after keys were first recorded: they enter the key only when they differ from these
# defaults, so every run recorded before them keeps its key (and the tiny/demo results stay as they are).
RECIPE_DEFAULTS = {"fc_init": "uniform", "lr_schedule": "thirds", "precision": "fp32", "input_size": None,
                   "sampler": "per-label", "normalisation": "source"}
# Images per forward pass without gradients (evaluation, prefix activations), one run here and a group in
# compute.engine. 256: the engine evaluates a group's R runs on shared batches, so R x 256 images' activations are
# alive at once; without gradients only about one layer's are, well under a training step's batch of 128 with
# every layer's kept for the backward, so the per-run memory peak that sizes groups stays the training step's
# (compute.engine.memory_probe measures both). One run shares the value (it had 512): an evaluation's batch
# size changes only float rounding, not what is computed.
EVAL_BATCH = 256
EVAL_BATCH_FEATURES = 1024  # cached prefix activations per forward pass of the trainable suffix (one run)


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
    augment: str = "legacy"  # a compute.data.augment.POLICIES name (a preset's True/False is converted by FinetuneGrid)
    bn_mode: str = "frozen"
    feature_cache: bool = False  # one run's implementation (see `finetune`); the engine ignores it; in the key
    test_limit: int | None = None
    fc_init: str = "uniform"  # 'uniform' (nn.Linear's bound, seeded) | 'normal' (N(0, 1) weight, 0 bias: the authors')
    lr_schedule: str = "thirds"  # 'thirds' (lr / 10 at 1/3 and 2/3) | 'step' (StepLR(epochs // 3, 0.1): the authors')
    precision: str = "fp32"  # 'fp32' | 'bf16' (autocast; the engine's CUDA default for the paper preset)
    input_size: int | None = None  # None = the architecture's (224 for ResNet-50); smaller only for CPU smoke tests
    sampler: str = "per-label"  # 'per-label' (one image per label first: the paper's text) | 'authors' (RandomState)
    normalisation: str = "source"  # 'source' (its own statistics) | 'authors' (target's when its file stored none)

    def __post_init__(self) -> None:
        if not isinstance(self.augment, str):  # one meaning: a policy name (a bool would make the key of 'legacy')
            from compute.data.augment import POLICIES

            raise RtxError(f"augment is a policy name ({', '.join(POLICIES)}), not {self.augment!r} "
                           "(True was 'legacy', False 'none')")

    @property
    def key(self) -> str:
        return job_key("finetune", {**key_fields(self), "code": CODE_VERSION})

    def eval_epochs(self) -> list[int]:
        """1, 1 + t, 1 + 2t, ... and the last epoch ("test every 20" = 1, 21, 41, 61, 81, 100)."""
        return sorted({*range(1, self.epochs + 1, self.test_every), self.epochs})

    def validate(self, num_blocks: int) -> None:
        from compute.data.augment import POLICIES

        for name, value, valid in (("augment", self.augment, POLICIES), ("bn_mode", self.bn_mode, BN_MODES),
                                   ("fc_init", self.fc_init, FC_INITS), ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
                                   ("precision", self.precision, PRECISIONS), ("sampler", self.sampler, SAMPLERS),
                                   ("normalisation", self.normalisation, NORMALISATIONS)):
            if value not in valid:
                raise RtxError(f"unknown {name} {value!r}; valid choices: {', '.join(valid)}")
        if not 0 <= self.blocks <= num_blocks:
            raise RtxError(f"cannot fine-tune {self.blocks} blocks: the architecture has {num_blocks} (use 0..{num_blocks})")
        if self.input_size is not None and self.input_size < 8:
            raise RtxError(f"input_size {self.input_size} is too small; use 8 or more (or leave it unset)")
        if self.feature_cache and (self.augment != "none" or self.bn_mode != "frozen"):
            raise RtxError("feature_cache needs augment='none' and bn_mode='frozen' (otherwise the frozen part's "
                           "output changes every epoch); set feature_cache=False, or augment='none' and "
                           "bn_mode='frozen'")


def key_fields(cfg: FinetuneConfig) -> dict[str, Any]:
    """The fields that make a run's key, in the form keys were first recorded in.

    `augment` 'legacy'/'none' are written as the booleans they were (compute.data.augment.BOOL_POLICIES); 'paper'
    as its name. Recipe fields at their `RECIPE_DEFAULTS` are left out, so adding a recipe option never changes an
    existing run's key. `feature_cache` stays in: it picks one run's float32 arithmetic (see `finetune`), and the
    demo's recorded runs carry it.
    """
    fields = asdict(cfg)
    fields["augment"] = RECORDED_POLICIES.get(cfg.augment, cfg.augment)
    for name, default in RECIPE_DEFAULTS.items():
        if fields[name] == default:
            del fields[name]
    return fields


@dataclass(frozen=True)
class FinetuneResult:
    """One run's outcome, ready for `CacheWriter.record_run`."""

    config: FinetuneConfig
    subset_indices: np.ndarray
    curve: list[CurvePoint]
    final_test_acc: float
    final_train_loss: float
    wall_seconds: float
    device: str
    model: Classifier | None

    def run_record(self, model_path: str | None = None) -> RunRecord:
        cfg = self.config
        return RunRecord(cfg.key, "done", cfg.source, cfg.target, len(self.subset_indices), cfg.seed, cfg.blocks,
                         cfg.epochs, {**asdict(cfg), "code": CODE_VERSION}, tuple(self.subset_indices.tolist()),
                         self.final_test_acc, self.final_train_loss, self.wall_seconds, self.device, None, model_path)


class FinetuneJob(NamedTuple):
    """One run an executor is asked for (compute.sweep.EXECUTORS): its config, and whether to return its
    fine-tuned model (for the influence stage or `--keep-models`). A plain `(config, keep_model)` pair unpacks alike."""

    config: FinetuneConfig
    keep_model: bool = False


Outcome = tuple[FinetuneConfig, FinetuneResult | BaseException]  # a run and its result, or the error that failed it


def split_model(model: Classifier, blocks: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(frozen prefix, trainable suffix): prefix = normaliser + stem + all but the last `blocks` blocks."""
    all_blocks = [b for _, b in model.blocks()]
    cut = len(all_blocks) - blocks
    prefix = nn.Sequential(model.normalize, model.stem(), *all_blocks[:cut])
    suffix = nn.Sequential(*all_blocks[cut:], model.net.avgpool, nn.Flatten(1), model.net.fc)
    return prefix, suffix


class Fp32Linear(nn.Linear):
    """nn.Linear that computes in its weights' dtype under autocast (issue 20, item 6): the authors' N(0, 1) FC
    gives logits of +-30-100, where bf16's spacing is 0.125-0.5. Same as nn.Linear without autocast, and the
    same state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return nn.functional.linear(x.to(self.weight.dtype), self.weight, self.bias)


def new_fc(model: Classifier, cfg: FinetuneConfig, num_classes: int) -> None:
    """Replace `model`'s FC layer for the target, initialised per `cfg.fc_init` from a generator seeded by the run.

    'uniform': nn.Linear's default bound 1/sqrt(features) for weight and bias (what this project did first);
    'normal': weight ~ N(0, 1), bias 0, as the authors' code does (`nn.init.normal_`, standard deviation 1).
    The layer is an `Fp32Linear`: it stays in fp32 under bf16 autocast.
    """
    generator = torch.Generator().manual_seed(cfg.seed)
    model.reset_fc(num_classes, generator if cfg.fc_init == "uniform" else None)
    model.net.fc.__class__ = Fp32Linear  # fp32 under bf16 autocast; nothing else changes
    if cfg.fc_init == "uniform":
        return
    with torch.no_grad():
        weight = torch.empty(model.fc.weight.shape).normal_(0.0, 1.0, generator=generator)
        model.fc.weight.copy_(weight)
        model.fc.bias.zero_()


def make_scheduler(cfg: FinetuneConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """'thirds': lr / 10 after 1/3 and 2/3 of the epochs (the paper's text); 'step': StepLR(epochs // 3, 0.1),
    the authors' code (robustness' `step_lr`), which also decays once more after epoch 3 * (epochs // 3)."""
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, max(1, cfg.epochs // 3), 0.1)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, [cfg.epochs // 3, 2 * cfg.epochs // 3], 0.1)


def autocast(cfg: FinetuneConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for `precision='bf16'` on the run's device; a no-op context for fp32."""
    if cfg.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_subset(cfg: FinetuneConfig, labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """The run's training subset: `cfg.n_train` images of the split with these labels by `cfg.sampler`, seeded by
    `cfg.seed` (every image for n_train None). The order is the sampler's, and the batch order indexes it."""
    return sample_subset(labels, cfg.n_train, cfg.seed, cfg.sampler)


def prepare_model(source: Classifier, cfg: FinetuneConfig, num_classes: int, device: torch.device) -> Classifier:
    """Copy the source, set its input statistics per `cfg.normalisation`, re-initialise FC (seeded, per
    `cfg.fc_init`), freeze all but FC and the last `cfg.blocks` blocks."""
    model = copy.deepcopy(source).to(device)
    cfg.validate(len(model.blocks()))
    apply_normalisation(model, cfg.target, cfg.normalisation)
    if cfg.input_size is not None:
        model.input_size = cfg.input_size
    new_fc(model, cfg, num_classes)
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


class PrefixCache(LruStore[torch.Tensor]):
    """Frozen-prefix activations per (source checksum, target, blocks, input size, device, normalisation, split),
    kept in memory (least recently used dropped first).

    Owned by whoever runs the jobs (an executor, a worker process): pass the same cache to consecutive
    `finetune` calls that share (source, target, blocks) to compute each prefix once.
    """


@torch.no_grad()
def _run_batched(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, size: int,
                 device: torch.device, batch: int = EVAL_BATCH) -> torch.Tensor:
    """fn over model inputs made from `images` in batches; (N, C, h, w) -> (N, ...) on `device`."""
    outs = [fn(to_model_input(images[i:i + batch].to(device), size)) for i in range(0, len(images), batch)]
    return torch.cat(outs)


@dataclass(frozen=True)
class _StepInputs:
    """What one run's steps and evaluations run on (the `feature_cache` choice, made once per run)."""

    train: torch.Tensor  # the subset's stored images (N, C, h, w), or their prefix activations (N, ...) on the device
    images: bool  # True: `train` holds images, made into model input (and augmented) per batch
    step: Callable[[torch.Tensor], torch.Tensor]  # what a training step calls: the model, or its trainable suffix
    evaluate: Callable[[], float]  # the test accuracy now


def _image_inputs(model: Classifier, train: torch.Tensor, test_images: torch.Tensor,
                  test_labels: torch.Tensor) -> _StepInputs:
    """The naive loop (`feature_cache=False`): every step and evaluation runs the whole model on images."""
    def test() -> float:
        return evaluate(model, test_images, test_labels, EVAL_BATCH,
                        transform=lambda x: to_model_input(x, model.input_size))
    return _StepInputs(train, True, model, test)


def _prefix_inputs(model: Classifier, cfg: FinetuneConfig, train_images: torch.Tensor, subset: np.ndarray,
                   test_images: torch.Tensor, test_labels: torch.Tensor, dev: torch.device,
                   prefix_cache: PrefixCache) -> _StepInputs:
    """`feature_cache=True`: the frozen prefix's activations of the whole training split and of the test images,
    taken from (or put in) `prefix_cache`; steps and evaluations run only the trainable suffix on them."""
    model.to(memory_format=torch.channels_last)  # the trainable blocks' small convolutions ~1.4x faster on a CPU
    prefix, suffix = split_model(model, cfg.blocks)
    cache_id = (cfg.source_checksum, cfg.target, cfg.blocks, model.input_size, str(dev), cfg.normalisation)

    def activations(images: torch.Tensor) -> torch.Tensor:
        return _channels_last(_run_batched(prefix, images, model.input_size, dev))

    train = prefix_cache.get((*cache_id, "train"), lambda: activations(train_images))
    test = prefix_cache.get((*cache_id, "test", cfg.test_limit), lambda: activations(test_images))
    return _StepInputs(train[torch.as_tensor(subset, device=dev)], False, suffix,
                       lambda: evaluate(suffix, test, test_labels, EVAL_BATCH_FEATURES))


def _train_epochs(model: Classifier, cfg: FinetuneConfig, optimizer: torch.optim.Optimizer, inputs: _StepInputs,
                  labels: torch.Tensor, dev: torch.device,
                  on_epoch: Callable[[int, int], None] | None) -> tuple[list[CurvePoint], float]:
    """SGD over the subset for `cfg.epochs` epochs (batch order and augmentation drawn from the run's generator,
    the learning rate per `cfg.lr_schedule`), tested after each of `cfg.eval_epochs()`; (curve, last epoch's loss)."""
    scheduler = make_scheduler(cfg, optimizer)
    generator = torch.Generator().manual_seed(cfg.seed)

    def fetch(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = inputs.train[idx.to(inputs.train.device)]
        if inputs.images:
            batch = train_input(batch.to(dev), cfg.augment, model.input_size, generator)
        return batch, labels[idx.to(dev)]

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(cfg, dev):  # bf16 for precision='bf16'; the loss is taken on fp32 logits
            return inputs.step(x).float()

    curve: list[CurvePoint] = []
    eval_at = set(cfg.eval_epochs())
    epoch_loss = float("nan")
    for epoch in range(1, cfg.epochs + 1):
        set_train_mode(model, cfg)
        stats = train_one_epoch(forward, optimizer, shuffled_batches(len(labels), cfg.batch_size, generator, fetch))
        scheduler.step()
        epoch_loss = stats.loss
        if epoch in eval_at:
            curve.append(CurvePoint(epoch, inputs.evaluate(), epoch_loss))
        if on_epoch is not None:
            on_epoch(epoch, cfg.epochs)
    return curve, epoch_loss


def finetune(source: Classifier, cfg: FinetuneConfig, keep_model: bool = False,
             device: str | None = None, on_epoch: Callable[[int, int], None] | None = None,
             data_root: str | None = None, prefix_cache: PrefixCache | None = None,
             skip_bad_images: bool = False) -> FinetuneResult:
    """Run one fine-tune and return its learning curve and final numbers (the model only if `keep_model`).

    `data_root`: the folder of torchvision targets (`Settings.data_root`); `skip_bad_images`: a folder: target's
    unreadable files left out instead of refused (`Settings.skip_bad_images`); `prefix_cache`: frozen-prefix
    activations shared with other runs (`feature_cache=True`; None: computed for this run only).

    `feature_cache=True` (which needs augment 'none' and bn_mode 'frozen') changes how, not what: the model in
    channels_last, the frozen prefix run once over the whole training split and the test images (kept in
    `prefix_cache` for the runs that share source, target, blocks, input size, device and normalisation), then
    only the trainable suffix per step and per evaluation (1,024 activations a batch). The numbers equal the naive
    loop's up to float rounding (tests/test_finetune.py, in float64); in float32 that rounding differs, so it stays
    in the run's key. The engine ignores the flag: it keeps prefix activations whenever the prefix is static."""
    start = time.perf_counter()
    dev = resolve_device(device)
    train = load_dataset(cfg.target, "train", data_root, skip_bad_images=skip_bad_images)
    test = load_dataset(cfg.target, "test", data_root, skip_bad_images=skip_bad_images)
    limit = cfg.test_limit or None
    test_images, test_labels = test.images[:limit], test.labels[:limit]
    subset = run_subset(cfg, train.labels)
    model = prepare_model(source, cfg, len(train.classes), dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    rows = torch.as_tensor(subset)
    if cfg.feature_cache:
        inputs = _prefix_inputs(model, cfg, train.images, subset, test_images, test_labels, dev,
                                prefix_cache if prefix_cache is not None else PrefixCache())
    else:
        inputs = _image_inputs(model, train.images[rows], test_images, test_labels)
    curve, epoch_loss = _train_epochs(model, cfg, optimizer, inputs, train.labels[rows].to(dev), dev, on_epoch)
    model.eval()
    return FinetuneResult(cfg, subset, curve, curve[-1].test_acc, epoch_loss, time.perf_counter() - start,
                          str(dev), model.cpu() if keep_model else None)


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.ndim == 4 else tensor
