"""The fine-tuning engine: sibling runs train together in one model call, CUDA first, same code on a CPU.

Siblings are runs whose configs differ only in the seed (same source, target, blocks, subset size and
recipe). They share the frozen weights; each run keeps its own trainable weights, SGD momentum buffers,
BatchNorm statistics, subset, batch order and augmentation. One step is one call over all R runs:
`torch.func.functional_call` on a template module with the runs' stacked tensors, `torch.func.vmap` over the
run dimension (`strategy='vmap'`; vmap turns the runs' convolutions into grouped ones), or a Python loop over the
runs' slices of the same stacked tensors (`strategy='loop'`: dense convolutions, R calls; same numbers).
Which is faster depends on the device and the step (bench/gpu_finetune.py times both), so `strategy='auto'` (the
default) times one training step and one evaluation batch of each on the group's first batch, with every piece
of state that a step touches (BatchNorm statistics, the runs' generators, gradients) put back in a `finally`, and
keeps the one whose (steps x step time + evaluation batches x batch time) is smaller for the siblings. A candidate
that runs out of memory drops out (the other is used; both: the group is halved). Timings are remembered per
step shape (`STRATEGY_TIMINGS`: architecture, blocks, BatchNorm mode, batch, input size, precision, augmentation,
channels, R, device; not the target, n or the source, which do not change a step's shape). Why measured and not
guessed: on CUDA, functorch's BatchNorm rule in train mode reshapes (R, B, C, H, W) to (B, R*C, H, W), copying
between channels_last and contiguous at each of ResNet-50's 53 BatchNorm layers, while grouped convolutions save
R - 1 kernel launches per layer; which wins depends on R, the blocks and the GPU.
The optimiser is one SGD over the stacked tensors: momentum and weight decay are elementwise and all runs share
the learning-rate schedule, so it is R independent SGDs. The loss is the sum of the runs' mean losses, whose
gradient with respect to run r's weights is run r's own gradient.

Same numbers as one run at a time (`compute.finetune.finetune`, the reference), up to float rounding
(tests/test_engine.py compares them in float64): each run has its own `torch.Generator` seeded by its seed and
uses it exactly as `finetune` does: one `randperm` per epoch for the batch order, then per batch the
augmentation's draws (compute.data.augment). The FC layer is initialised by `compute.finetune.new_fc` from the
run's seed. The engine computes in the source model's dtype (float32; float64 in the tests).

The parts, each with one job: `GroupData` (the target's images and the runs' subsets on the device),
`StackedRuns` (each run's trainable weights, BatchNorm buffers, generator and the SGD over them, stacked),
`RunGroup` (the template model, the prefix activations kept for the runs, one epoch and one evaluation of every
run), `StrategyTimer` (the `auto` choice between vmap and loop), then `train_group` / `run_siblings` / `run_engine`.

What runs where:
- Data: a target's images go to the device once per process (`device_data`), as uint8 when they are exact
  multiples of 1/255 (every torchvision target), float32 otherwise; upscaling and augmentation per batch on
  the device.
- `bn_mode='frozen'`: the prefix (normaliser, stem, frozen blocks) is in eval mode, a fixed function shared by
  every run: one prefix call on the R runs' batches concatenated, then the vmapped trainable suffix. Without
  random augmentation of the prefix's input (`augment='none'`, or `paper` on a grey target) the prefix's
  training activations are computed once for the union of the runs' subsets and reused every epoch. With 0
  blocks fine-tuned the prefix's output is average-pooled before it is kept (2,048 values per image instead of
  2,048 x 7 x 7; the suffix's pooling of a 1 x 1 map is the identity, so the numbers do not change).
- `bn_mode='train'` (the authors'): the whole model is in train mode, so each run's frozen BatchNorm layers
  use batch statistics and update running statistics of their own: the whole model is vmapped, with frozen
  weights shared and every BatchNorm buffer stacked per run.
- Evaluation (eval mode, never augmented). `frozen`: exact with cached prefix activations: the test images'
  prefix activations are computed once per (source checksum, target, blocks, input size, test_limit,
  precision, device, dtype) and each evaluation runs only the vmapped suffix. Cached activations (test, and training
  ones of a static prefix) are kept only when they fit a quarter of free device memory; otherwise the prefix
  runs per batch (same numbers). Caches are written into one preallocated tensor (no list of batches and a
  concatenation: half the peak). `train`: the frozen blocks' running statistics differ per run and drift every
  step, so a cache would be wrong; the engine evaluates the whole model, vmapped over the runs (each with its
  own running statistics), on shared test batches. Exact; no approximation is made.
- CUDA: bf16 autocast when `precision='bf16'` (recorded in the key) for the convolutions and BatchNorm layers,
  training and evaluation alike; the last Linear (compute.finetune.Fp32Linear) and the loss stay in fp32
  (`BF16_PARTS` says so for the "Paper vs here" page). channels_last; cuDNN autotuning on
  (`torch.backends.cudnn.benchmark`: the siblings' shapes repeat for hundreds of steps); no host synchronisation
  inside a step (per-run losses summed on the device, read once per epoch; augmentation constants built once per
  size). torch.compile of the shared prefix behind `compile_prefix` (`--compile`; used only where the prefix is a
  fixed function, bn_mode 'frozen'; same numbers, tests/test_engine.py); a compilation that fails falls back to
  the eager prefix with one warning. Whether compiling pays on a GPU is what `bench/gpu_finetune.py --compile`
  measures; off by default until it has (a compilation per step shape costs seconds to minutes).
- Group size: on CUDA from free memory (free plus what PyTorch holds reserved but unallocated) less the
  siblings' shared prefix caches, over a per-run peak measured once per step shape (`memory_probe`, with a one-batch
  test set and no caches); on a CPU `CPU_GROUP` (measured by bench/gpu_finetune.py). Out of memory (CUDA's, cuBLAS's
  or cuDNN's allocation failures) splits a group in halves and retries them, after the failed group's memory
  is released; a single run that still does not fit is returned as failed with the reason.
- `FinetuneResult.wall_seconds` of a run trained in a group is the group's wall time divided by its size.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import time
import traceback
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from compute.data import load_dataset, to_model_input
from compute.data.augment import PaperParams, apply_paper, as_float, draw_paper_params, to_device, train_input
from compute.errors import RtxError
from compute.finetune import (
    EVAL_BATCH,
    FinetuneConfig,
    FinetuneJob,
    FinetuneResult,
    Outcome,
    autocast,
    make_scheduler,
    new_fc,
    prepare_model,
    run_subset,
    split_model,
)
from compute.lru import LruStore
from compute.models import Classifier
from compute.records import CurvePoint
from compute.run_label import RunLabel
from compute.settings import BF16_PARTS, ENGINE_STRATEGIES, resolve_device

STRATEGIES = ENGINE_STRATEGIES  # "auto" | "vmap" (one vmapped call over the runs) | "loop" (a loop over them)
CPU_GROUP = 8  # runs per call on a CPU: fastest of R = 1, 2, 4, 8 in `bench/gpu_finetune.py --scan-group 1 2 4 8`
PROBE_TEST_LIMIT = EVAL_BATCH  # the memory probe evaluates one batch: an evaluation's peak is one batch's
# Out-of-memory messages: PyTorch's caching allocator, and cuBLAS / cuDNN failing to allocate their workspaces
# (raised as plain RuntimeErrors that would otherwise fail the whole group).
OOM_MARKERS = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


@dataclass(frozen=True)
class StepTimes:
    """Seconds of one training step (forward + backward of every run) and of one evaluation batch."""

    train: float
    eval: float


@dataclass(frozen=True)
class MemoryProbe:
    """Device bytes of one run (a training step's and an evaluation batch's peak, caches excluded) and of one
    image's cached prefix activation (shared by siblings)."""

    per_run: int
    prefix_image: int


STRATEGY_TIMINGS: dict[tuple, dict[str, StepTimes | None]] = {}  # shape key -> per strategy (None: out of memory)
MEMORY_PROBES: dict[tuple, MemoryProbe] = {}  # probe key (`probe_key`) -> measured, once per process


@dataclass(frozen=True)
class DeviceData:
    """A target's split on the device: images uint8 (exact k/255) or float32, labels int64."""

    images: torch.Tensor  # (N, C, h, w)
    labels: torch.Tensor  # (N,)
    num_classes: int


_DATA: LruStore[DeviceData] = LruStore(4)  # targets' splits on the device
_PREFIX: LruStore[torch.Tensor] = LruStore(2)  # test images' prefix activations (`_test_key`)
_COMPILE_FAILED: list[str] = []  # the first compilation failure of this process (then every prefix runs eagerly)


def to_device_images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """float [0, 1] images -> uint8 on the device when that is lossless (a quarter of the memory), else float32."""
    scaled = images * 255
    if torch.equal(scaled.round(), scaled) or torch.allclose(scaled.round(), scaled, rtol=0, atol=1e-4):
        return scaled.round().to(torch.uint8).to(device)
    return images.float().to(device)


def device_data(target: str, split: str, device: torch.device, limit: int | None = None,
                data_root: str | None = None, skip_bad_images: bool = False) -> DeviceData:
    """A split on the device, once per process (the first `limit` images when given); torchvision targets are
    read from `data_root` (`Settings.data_root`), a folder: target's unreadable files left out with
    `skip_bad_images` (`Settings.skip_bad_images`)."""
    def make() -> DeviceData:
        data = load_dataset(target, split, data_root, skip_bad_images=skip_bad_images)
        images, labels = (data.images[:limit], data.labels[:limit]) if limit else (data.images, data.labels)
        return DeviceData(to_device_images(images, device), labels.to(device), len(data.classes))
    return _DATA.get((target, split, str(device), limit, data_root, skip_bad_images), make)


def sibling_key(cfg: FinetuneConfig) -> tuple:
    """Everything but the seed: runs with the same key are siblings and can train together."""
    return tuple(sorted((k, v) for k, v in asdict(cfg).items() if k != "seed"))


def sibling_sets(configs: Iterable[FinetuneConfig]) -> list[list[FinetuneConfig]]:
    """Configs grouped into sets of siblings (runs that differ only in the seed), in first-seen order."""
    groups: dict[tuple, list[FinetuneConfig]] = {}
    for cfg in configs:
        groups.setdefault(sibling_key(cfg), []).append(cfg)
    return list(groups.values())


def _test_key(cfg: FinetuneConfig, size: int, device: torch.device, dtype: torch.dtype) -> tuple:
    """The test images' cached prefix activations are shared by every group with this key (`_PREFIX`)."""
    return (cfg.source_checksum, cfg.target, cfg.blocks, size, cfg.test_limit, cfg.precision, cfg.normalisation,
            str(device), str(dtype))


def _static_prefix(cfg: FinetuneConfig, channels: int) -> bool:
    """True when the prefix's training input never changes between epochs (no random augmentation)."""
    return cfg.bn_mode == "frozen" and (cfg.augment == "none" or (cfg.augment == "paper" and channels == 1))


def is_oom(err: BaseException) -> bool:
    """Whether `err` says the device ran out of memory (PyTorch's allocator, cuBLAS or cuDNN workspaces)."""
    return isinstance(err, torch.OutOfMemoryError) or any(m in str(err).lower() for m in OOM_MARKERS)


def release_memory(device: torch.device) -> None:
    """Give cached device memory back after an out-of-memory error. Call it after the `except` block: while the
    exception (and its traceback, whose frames hold the failed group's tensors) lives, nothing can be freed."""
    gc.collect()  # frames in reference cycles with the traceback
    if device.type == "cuda":
        torch.cuda.empty_cache()


def free_bytes(device: torch.device) -> int:
    """Device memory a new group can use: the driver's free memory plus what PyTorch's caching allocator holds
    reserved but unallocated (`mem_get_info` counts that as used: after a group that took 60 GB, the next
    siblings would see 15 GB free and get a quarter of the runs); 4 GiB on a CPU (the caches' budget there)."""
    if device.type != "cuda":
        return 4 << 30
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on a CPU. For timings, never inside a training step."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _CompiledOrEager:
    """torch.compile(module), or the module itself once compilation has failed in this process.

    Inductor can fail to compile on some machines (e.g. `BackendCompilerFailed` under
    ATEN_CPU_CAPABILITY=default); the prefix is the same function eagerly, so the runs go on with one warning
    instead of failing with an exception object in place of their results."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.compiled: Callable[[torch.Tensor], torch.Tensor] | None = None
        if not _COMPILE_FAILED:
            try:
                self.compiled = torch.compile(module)
            except Exception as err:  # torch.compile itself refused (e.g. an unsupported Python)
                self._failed(err)

    def _failed(self, err: BaseException) -> None:
        self.compiled = None
        if not _COMPILE_FAILED:  # said once per process
            first_line = (str(err).strip().splitlines() or [""])[0][:300]
            _COMPILE_FAILED.append(f"{type(err).__name__}: {first_line}")
            warnings.warn(f"torch.compile of the engine's prefix failed ({_COMPILE_FAILED[0]}); the prefix runs "
                          "eagerly from now on (same numbers, no compilation speed-up)", RuntimeWarning, stacklevel=2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None and not _COMPILE_FAILED:
            try:
                return self.compiled(x)
            except Exception as err:
                if is_oom(err):
                    raise
                self._failed(err)
        return self.module(x)


@dataclass(frozen=True)
class GroupData:
    """The data a group trains and tests on, on the device: the target's splits (`device_data`, once per process)
    and each run's training subset, drawn by `compute.finetune.run_subset` exactly as one run at a time draws it."""

    train: DeviceData
    test: DeviceData
    subsets: list[np.ndarray]  # per run: (n,) indices into the training split, in the sampler's order (recorded)
    indices: torch.Tensor  # (R, n): the same on the device

    @staticmethod
    def load(configs: list[FinetuneConfig], device: torch.device, data_root: str | None,
             skip_bad_images: bool = False) -> GroupData:
        cfg = configs[0]
        train = device_data(cfg.target, "train", device, None, data_root, skip_bad_images)
        test = device_data(cfg.target, "test", device, cfg.test_limit, data_root, skip_bad_images)
        subsets = [run_subset(c, train.labels.cpu()) for c in configs]
        return GroupData(train, test, subsets, torch.stack([torch.as_tensor(s) for s in subsets]).to(device))

    @property
    def n_train(self) -> int:
        """Images in each run's subset (the same for every sibling)."""
        return self.indices.shape[1]

    def images(self, rows: torch.Tensor) -> torch.Tensor:
        """(R, B) positions in the runs' subsets -> their stored images (R * B, C, h, w), run after run."""
        return self.train.images[self.indices.gather(1, rows)].flatten(0, 1)

    def labels(self, rows: torch.Tensor) -> torch.Tensor:
        """(R, B) positions in the runs' subsets -> their labels (R, B)."""
        return self.train.labels[self.indices.gather(1, rows)]


def _template_model(source: Classifier, cfg: FinetuneConfig, num_classes: int, device: torch.device) -> Classifier:
    """The siblings' model as one run would prepare it (`compute.finetune.prepare_model`); channels_last and cuDNN
    autotuning on CUDA (the siblings' shapes repeat for hundreds of steps: autotune once)."""
    model = prepare_model(source, cfg, num_classes, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model.to(memory_format=torch.channels_last)
    return model


def _run_fcs(model: Classifier, configs: list[FinetuneConfig], num_classes: int) -> list[nn.Module]:
    """Each run's new FC layer from its own seed, exactly as `prepare_model` makes it; the template keeps its own."""
    template, fcs = model.net.fc, []
    for cfg in configs:
        new_fc(model, cfg, num_classes)
        fcs.append(model.net.fc)
    model.net.fc = template
    return fcs


class StackedRuns:
    """The R runs' own state, stacked along a leading run dimension (what `vmap` maps over).

    Trainable weights and BatchNorm buffers (R, ...); one SGD over the stacked weights (momentum and weight decay
    are elementwise and the runs share the learning-rate schedule, so it is R independent SGDs); each run's
    generator (batch order, augmentation draws). `frozen`: the weights every run shares, not stacked."""

    def __init__(self, model: Classifier, module: nn.Module, configs: list[FinetuneConfig], num_classes: int):
        cfg, runs = configs[0], len(configs)
        self.generators = [torch.Generator().manual_seed(c.seed) for c in configs]
        stacked_fc, _ = stack_module_state(_run_fcs(model, configs, num_classes))
        fc_name = next(name for name, m in module.named_modules() if m is model.net.fc) + "."
        params = dict(module.named_parameters())
        self.frozen = {k: v for k, v in params.items() if not v.requires_grad}
        self.params = {k: (stacked_fc[k[len(fc_name):]] if k.startswith(fc_name) else torch.stack([v] * runs))
                       .detach().clone().requires_grad_(True)
                       for k, v in params.items() if v.requires_grad}  # {name: (R, ...)}
        self.buffers = {k: torch.stack([v] * runs).clone() for k, v in module.named_buffers()}
        self.optimizer = torch.optim.SGD(list(self.params.values()), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.scheduler = make_scheduler(cfg, self.optimizer)

    def run(self, r: int) -> dict[str, torch.Tensor]:
        """Run r's slice of every stacked tensor (views: writes land in the stack)."""
        return {k: v[r] for k, v in {**self.params, **self.buffers}.items()}

    @contextlib.contextmanager
    def unchanged(self) -> Iterator[None]:
        """Whatever runs inside (a timing trial) leaves the runs as it found them: BatchNorm statistics, the
        generators' states and gradients are put back in a `finally`, so even a trial that fails leaves nothing."""
        buffers = {k: v.clone() for k, v in self.buffers.items()}
        states = [g.get_state() for g in self.generators]
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in buffers.items():
                    self.buffers[k].copy_(v)
            for g, state in zip(self.generators, states, strict=True):
                g.set_state(state)
            for v in self.params.values():
                v.grad = None


class RunGroup:
    """R sibling runs trained together: the template model, split into the frozen prefix the runs share and
    the module whose tensors are stacked per run (`StackedRuns`); the data on the device (`GroupData`); the
    prefix activations kept for them; one training epoch and one evaluation of every run, with the strategy
    given or chosen by `StrategyTimer`.

    `keep_activations=False` never caches prefix activations (the memory probe: the caches are shared by
    siblings and accounted for separately)."""

    def __init__(self, source: Classifier, configs: list[FinetuneConfig], device: torch.device,
                 compile_prefix: bool = False, strategy: str = "auto", data_root: str | None = None,
                 keep_activations: bool = True, skip_bad_images: bool = False):
        if strategy not in STRATEGIES:
            raise RtxError(f"unknown engine strategy {strategy!r}; valid choices: {', '.join(STRATEGIES)}")
        cfg = configs[0]
        self.configs, self.cfg, self.device, self.keep_activations = configs, cfg, device, keep_activations
        self.data = GroupData.load(configs, device, data_root, skip_bad_images)
        self.model = _template_model(source, cfg, self.data.train.num_classes, device)
        self.dtype = next(self.model.parameters()).dtype  # float32 (float64 in the tests); autocast may lower it
        self.size = self.model.input_size
        prefix, suffix = split_model(self.model, cfg.blocks)
        self.prefix = prefix.eval()
        self.pool = self.model.net.avgpool if cfg.blocks == 0 else None  # 0 blocks: keep pooled activations
        self.prefix_fn: Callable[[torch.Tensor], torch.Tensor] = _CompiledOrEager(prefix) if compile_prefix else prefix
        # the module whose tensors are stacked per run: the suffix, or the whole model when frozen BN drifts
        self.module = suffix if cfg.bn_mode == "frozen" else nn.Sequential(prefix, suffix)
        self.module.train()
        self.runs = StackedRuns(self.model, self.module, configs, self.data.train.num_classes)
        self.static, self.union_feats, self.union_rows = self._training_activations()
        self.strategy = StrategyTimer(self).choose(strategy)
        self.forward, self.forward_shared = self.forwards(self.strategy)

    def forwards(self, strategy: str) -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
        """(training call with per-run inputs, evaluation call with inputs shared by the runs) of a strategy."""
        if strategy == "vmap":
            return vmap(self._call, in_dims=(0, 0, 0)), vmap(self._call, in_dims=(0, 0, None))
        return self._looped(shared=False), self._looped(shared=True)

    # --- the model calls --------------------------------------------------------------------------------------
    def _call(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
              x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, {**self.runs.frozen, **params, **buffers}, (x,))

    def _looped(self, shared: bool) -> Callable[..., torch.Tensor]:
        """The vmapped call's signature and result, one run after another (views of the stacked tensors, so
        gradients and BatchNorm running-statistic updates land in run r's slice)."""
        def run(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return torch.stack([self._call({k: v[r] for k, v in params.items()}, {k: v[r] for k, v in buffers.items()},
                                           x if shared else x[r]) for r in range(len(self.configs))])
        return run

    def logits(self, forward: Callable[..., torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """(R, B, K) logits in the model's dtype: the network under autocast, its last Linear in fp32
        (compute.finetune.Fp32Linear: N(0, 1) FC weights give logits of +-30-100, where bf16's spacing is 0.125-0.5)."""
        with autocast(self.cfg, self.device):
            return forward(self.runs.params, self.runs.buffers, x).to(self.dtype)

    # --- prefix activations -----------------------------------------------------------------------------------
    def _training_activations(self) -> tuple[bool, torch.Tensor | None, torch.Tensor | None]:
        """(static, activations, rows): a static prefix's activations of the union of the runs' subsets, computed
        once, and each run's (R, n) rows into them; (False, None, None) when the prefix's input changes every epoch
        or the activations do not fit (`_cache_fits`)."""
        union, inverse = torch.unique(self.data.indices, return_inverse=True)
        if not (_static_prefix(self.cfg, self.data.train.images.shape[1]) and self._cache_fits(len(union))):
            return False, None, None
        return True, self._prefix_batched(self.data.train.images[union]), inverse

    def _cache_fits(self, images: int) -> bool:
        """Whether prefix activations of `images` images fit a quarter of free device memory (4 GiB on a CPU).

        ResNet-50 with 9 blocks fine-tuned keeps 512 x 28 x 28 values per image: 60,000 images would need 48 GB
        in bf16. When they do not fit, the prefix runs per batch instead (same numbers, more work)."""
        if images == 0:
            return True
        if not self.keep_activations:
            return False
        return self.prefix_image_bytes() * images <= free_bytes(self.device) // 4

    def prefix_image_bytes(self) -> int:
        """Bytes of one image's kept prefix activation (pooled with 0 blocks)."""
        sample = self._prefix_batched(self.data.train.images[:1])
        return sample.numel() * sample.element_size()

    def _prefix_out(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs (B, 3, S, S) -> the prefix's activations as kept (autocast's dtype; pooled in the model's
        dtype with 0 blocks, exactly as the suffix would pool them)."""
        with torch.no_grad(), autocast(self.cfg, self.device):
            out = self.prefix_fn(self._model_input(x))
        return self.pool(out.to(self.dtype)) if self.pool is not None else out

    @torch.no_grad()
    def _prefix_batched(self, images: torch.Tensor) -> torch.Tensor:
        """Prefix activations of stored images (N, C, h, w), written batch by batch into one preallocated tensor
        (a list of batches and a concatenation would hold both: twice the peak)."""
        out: torch.Tensor | None = None
        for i in range(0, len(images), EVAL_BATCH):
            part = self._prefix_out(to_model_input(as_float(images[i:i + EVAL_BATCH]), self.size))
            if out is None:
                layout = torch.channels_last if part.ndim == 4 and self.device.type == "cuda" else torch.contiguous_format
                out = torch.empty((len(images), *part.shape[1:]), dtype=part.dtype, device=part.device,
                                  memory_format=layout)
            out[i:i + len(part)] = part
        assert out is not None, "no images"
        return out

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" and x.ndim == 4 else x

    # --- training and evaluation ------------------------------------------------------------------------------
    def batch_inputs(self, rows: torch.Tensor) -> torch.Tensor:
        """(R, B) subset positions -> model inputs: prefix activations (frozen) or images (train), (R, B, ...)."""
        r, b = rows.shape
        if self.static:
            feats = self.union_feats[self.union_rows.gather(1, rows)].to(self.dtype)  # bf16 under autocast -> fp32
            return feats.view(r, b, *self.union_feats.shape[1:])
        images = self.data.images(rows)  # (R * B, C, h, w)
        generators = self.runs.generators
        if self.cfg.augment == "paper" and images.shape[1] == 3:
            params = PaperParams.cat([draw_paper_params(b, g) for g in generators])
            x = apply_paper(images, params, self.size)
        else:
            x = torch.cat([train_input(images[i * b:(i + 1) * b], self.cfg.augment, self.size, g)
                           for i, g in enumerate(generators)])
        if self.cfg.bn_mode == "frozen":  # the vmapped suffix takes the model's dtype (its convolutions autocast again)
            x = self._prefix_out(x).to(self.dtype)
        else:
            x = self._model_input(x)
        return x.view(r, b, *x.shape[1:])

    def first_batch_step(self, forward: Callable[..., torch.Tensor] | None = None) -> None:
        """Forward and backward of every run on its subset's first batch (no optimiser step): a memory probe or a
        timing. Draws from the runs' generators and updates BatchNorm statistics like a real step."""
        rows = torch.arange(min(self.data.n_train, self.cfg.batch_size), device=self.device)
        rows = rows.expand(len(self.configs), -1)
        logits = self.logits(forward or self.forward, self.batch_inputs(rows))
        F.cross_entropy(logits.flatten(0, 1).float(), self.data.labels(rows).flatten()).backward()

    def train_epoch(self) -> torch.Tensor:
        """One epoch for every run; returns the runs' mean training losses (R,) on the device."""
        n, bs, runs = self.data.n_train, self.cfg.batch_size, self.runs
        orders = to_device(torch.stack([torch.randperm(n, generator=g) for g in runs.generators]), self.device)  # (R, n)
        total = torch.zeros(len(self.configs), device=self.device)
        for i in range(0, n, bs):
            rows = orders[:, i:i + bs]  # (R, B)
            x = self.batch_inputs(rows)
            y = self.data.labels(rows)  # (R, B)
            logits = self.logits(self.forward, x)  # (R, B, K)
            losses = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none").view(y.shape).mean(1)
            runs.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            runs.optimizer.step()
            total += losses.detach() * rows.shape[1]
        runs.scheduler.step()
        return total / n

    def eval_inputs(self, start: int, cached: bool) -> torch.Tensor:
        """Test images [start, start + EVAL_BATCH) as the evaluation call takes them: prefix activations
        (`frozen`; from the cache when `cached`) or model inputs (`train`)."""
        end, test = start + EVAL_BATCH, self.data.test
        if self.cfg.bn_mode == "frozen":
            feats = self._test_cache()[start:end] if cached else self._prefix_batched(test.images[start:end])
            return feats.to(self.dtype)
        return self._model_input(to_model_input(as_float(test.images[start:end]), self.size))

    def _test_cache(self) -> torch.Tensor:
        key = _test_key(self.cfg, self.size, self.device, self.dtype)
        return _PREFIX.get(key, lambda: self._prefix_batched(self.data.test.images))

    def _test_cached(self) -> bool:
        key = _test_key(self.cfg, self.size, self.device, self.dtype)
        return self.cfg.bn_mode == "frozen" and (key in _PREFIX or self._cache_fits(len(self.data.test.labels)))

    @torch.no_grad()
    def evaluate(self) -> torch.Tensor:
        """Test accuracy of every run (R,) on the device, in eval mode (see the module docstring)."""
        self.module.eval()
        try:
            correct = torch.zeros(len(self.configs), device=self.device)
            labels = self.data.test.labels
            cached = self._test_cached()
            for i in range(0, len(labels), EVAL_BATCH):
                logits = self.logits(self.forward_shared, self.eval_inputs(i, cached))  # (R, b, K)
                correct += (logits.argmax(-1) == labels[i:i + EVAL_BATCH]).sum(1)
        finally:
            self.module.train()
        return correct / len(labels)

    def run_model(self, r: int) -> Classifier:
        """Run r's fine-tuned model (a copy on the CPU, eval mode): its tensors copied into the template, copied out."""
        named = {**dict(self.module.named_parameters()), **dict(self.module.named_buffers())}
        stacked = self.runs.run(r)
        saved = {k: v.detach().clone() for k, v in named.items()}
        with torch.no_grad():
            for k, v in named.items():
                if k in stacked:
                    v.copy_(stacked[k])
            model = copy.deepcopy(self.model).cpu().to(memory_format=torch.contiguous_format).eval()
            for k, v in named.items():
                v.copy_(saved[k])
        return model


class StrategyTimer:
    """The `auto` strategy: the cheaper of vmap and loop for a group on its device, measured.

    Times one training step and one evaluation batch of each on the group's first batch, leaving the group as it
    found it (`StackedRuns.unchanged`), and keeps the one whose (steps x step time + evaluation batches x batch
    time) is smaller. Timings are remembered per step shape (`STRATEGY_TIMINGS`, keyed by `shape_key`); a
    candidate that runs out of memory drops out."""

    def __init__(self, group: RunGroup):
        self.group = group

    def choose(self, strategy: str) -> str:
        """`strategy`, or for 'auto' the cheaper of vmap and loop for this group on this device."""
        if strategy != "auto":
            return strategy
        if len(self.group.configs) == 1:
            return "loop"  # one run: a plain call, nothing to vmap over
        key = self.shape_key()
        if key not in STRATEGY_TIMINGS:
            STRATEGY_TIMINGS[key] = {name: self._measure(name) for name in ("vmap", "loop")}
        costs = {name: self.training_seconds(t) for name, t in STRATEGY_TIMINGS[key].items() if t is not None}
        if not costs:
            raise torch.OutOfMemoryError(f"out of memory: neither engine strategy fits {len(self.group.configs)} runs")
        return min(costs, key=costs.__getitem__)

    def shape_key(self) -> tuple:
        """What a step's cost depends on: the shapes and the work of a step, not which target, subset or source."""
        group, cfg = self.group, self.group.cfg
        return (group.model.arch, cfg.blocks, cfg.bn_mode, min(cfg.batch_size, group.data.n_train), group.size,
                cfg.precision, cfg.augment, group.data.train.images.shape[1], group.static, len(group.configs),
                str(group.device))

    def training_seconds(self, times: StepTimes) -> float:
        """Seconds of the group's training steps and evaluation batches at `times` (what `auto` minimises: in
        the faithful recipe evaluation dominates for small n)."""
        group, cfg = self.group, self.group.cfg
        steps = cfg.epochs * math.ceil(group.data.n_train / cfg.batch_size)
        batches = len(cfg.eval_epochs()) * math.ceil(len(group.data.test.labels) / EVAL_BATCH)
        return steps * times.train + batches * times.eval

    def _measure(self, strategy: str) -> StepTimes | None:
        """`_time_step`, or None when `strategy` runs out of device memory (released before returning)."""
        try:
            return self._time_step(strategy)
        except Exception as err:
            if not is_oom(err):
                raise
        release_memory(self.group.device)  # outside the except: the traceback (holding the trial's tensors) is gone
        return None

    def _time_step(self, strategy: str, repeats: int = 2) -> StepTimes:
        """Seconds of one training step (forward and backward on the first batch) and of one evaluation batch
        with `strategy`, the best of `repeats` after a warm-up; leaves the group as it found it (no optimiser
        step; BatchNorm statistics, the runs' generators, gradients and train mode restored in a `finally`, so
        even a trial that fails leaves nothing behind), so the runs' numbers do not depend on the timing."""
        group = self.group
        forward, shared = group.forwards(strategy)
        with group.runs.unchanged():
            try:
                train = self._best_of(lambda: group.first_batch_step(forward), repeats)
                x = group.eval_inputs(0, cached=False)  # the prefix part is the same for both strategies
                group.module.eval()
                with torch.no_grad():
                    evaluate = self._best_of(lambda: group.logits(shared, x), repeats)
                return StepTimes(train, evaluate)
            finally:
                group.module.train()

    def _best_of(self, work: Callable[[], Any], repeats: int) -> float:
        best = float("inf")
        for attempt in range(repeats + 1):
            synchronize(self.group.device)
            start = time.perf_counter()
            work()
            synchronize(self.group.device)
            if attempt:  # the first call is a warm-up (kernel selection, allocator)
                best = min(best, time.perf_counter() - start)
        return best


def train_group(source: Classifier, configs: list[FinetuneConfig], device: torch.device,
                kept_keys: Collection[str] = frozenset(), on_epoch: Callable[[int, int], None] | None = None,
                compile_prefix: bool = False, strategy: str = "auto", data_root: str | None = None,
                skip_bad_images: bool = False) -> list[FinetuneResult]:
    """Train sibling runs together; one FinetuneResult per run, in the order of `configs` (the fine-tuned model
    of those whose key is in `kept_keys`)."""
    start = time.perf_counter()
    group = RunGroup(source, configs, device, compile_prefix, strategy, data_root, skip_bad_images=skip_bad_images)
    cfg = group.cfg
    curves: list[list[dict[str, float]]] = [[] for _ in configs]
    eval_at = set(cfg.eval_epochs())
    losses = [float("nan")] * len(configs)
    for epoch in range(1, cfg.epochs + 1):
        epoch_loss = group.train_epoch()
        if epoch in eval_at:
            acc = group.evaluate().tolist()  # one read per evaluation
            losses = epoch_loss.tolist()
            for r, curve in enumerate(curves):
                curve.append(CurvePoint(epoch, acc[r], losses[r]))
        if on_epoch is not None:
            on_epoch(epoch, cfg.epochs)
    losses = epoch_loss.tolist()
    seconds = (time.perf_counter() - start) / len(configs)
    return [FinetuneResult(c, group.data.subsets[r], curves[r], curves[r][-1].test_acc, losses[r], seconds, str(device),
                           group.run_model(r) if c.key in kept_keys else None) for r, c in enumerate(configs)]


def probe_key(source: Classifier, cfg: FinetuneConfig, device: torch.device) -> tuple:
    """What one run's memory depends on: architecture, blocks, BatchNorm mode, batch, input size, precision (and
    the augmentation and target channels, which decide whether the prefix runs in the step)."""
    from compute.data.registry import DATASETS

    info = DATASETS.get(cfg.target)
    return (source.arch, cfg.blocks, cfg.bn_mode, min(cfg.batch_size, cfg.n_train or cfg.batch_size),
            cfg.input_size or source.input_size, cfg.precision, cfg.augment, info.channels if info else None, str(device))


def memory_probe(source: Classifier, cfg: FinetuneConfig, device: torch.device,
                 data_root: str | None = None, skip_bad_images: bool = False) -> MemoryProbe:
    """Peak device memory of one run's training step and evaluation batch, measured with a throwaway one-run
    group on one batch and a `PROBE_TEST_LIMIT`-image test set without caches (CUDA only); once per `probe_key`."""
    key = probe_key(source, cfg, device)
    if key not in MEMORY_PROBES:
        MEMORY_PROBES[key] = _measure_memory(source, cfg, device, data_root, skip_bad_images)
    return MEMORY_PROBES[key]


def _measure_memory(source: Classifier, cfg: FinetuneConfig, device: torch.device, data_root: str | None,
                    skip_bad_images: bool) -> MemoryProbe:
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    small = replace(cfg, epochs=1, test_limit=min(cfg.test_limit or PROBE_TEST_LIMIT, PROBE_TEST_LIMIT),
                    n_train=min(cfg.n_train or cfg.batch_size, cfg.batch_size))
    probe = RunGroup(source, [small], device, strategy="loop", data_root=data_root, keep_activations=False,
                     skip_bad_images=skip_bad_images)
    probe.first_batch_step()
    probe.evaluate()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    image = probe.prefix_image_bytes() if cfg.bn_mode == "frozen" else 0
    del probe
    release_memory(device)
    return MemoryProbe(max(peak, 1), image)


def per_run_bytes(source: Classifier, cfg: FinetuneConfig, device: torch.device, data_root: str | None = None,
                  skip_bad_images: bool = False) -> int:
    """Peak device memory of one run (`memory_probe`; CUDA only), caches shared by siblings excluded."""
    return memory_probe(source, cfg, device, data_root, skip_bad_images).per_run


def shared_cache_bytes(cfg: FinetuneConfig, size: int, probe: MemoryProbe, runs: int, device: torch.device,
                       data_root: str | None = None, dtype: torch.dtype = torch.float32,
                       skip_bad_images: bool = False) -> int:
    """Device bytes of the prefix caches that a group of `runs` siblings will add (shared by its runs, so
    not in the per-run figure): the test images' activations (`frozen`, unless already cached) and the union of
    the subsets' (a static prefix), each only when it fits a quarter of free memory, as RunGroup decides."""
    if cfg.bn_mode != "frozen" or probe.prefix_image == 0:
        return 0
    free = free_bytes(device)
    train = device_data(cfg.target, "train", device, None, data_root, skip_bad_images)
    test = device_data(cfg.target, "test", device, cfg.test_limit, data_root, skip_bad_images)
    caches = [] if _test_key(cfg, size, device, dtype) in _PREFIX else [len(test.labels)]
    if _static_prefix(cfg, train.images.shape[1]):
        caches.append(min(runs * (cfg.n_train or len(train.labels)), len(train.labels)))
    return sum(probe.prefix_image * images for images in caches if probe.prefix_image * images <= free // 4)


def group_size(source: Classifier, cfg: FinetuneConfig, runs: int, device: torch.device,
               data_root: str | None = None, skip_bad_images: bool = False) -> int:
    """How many runs share a call: on CUDA, 80% of free memory less the siblings' shared caches over the measured
    per-run peak; `CPU_GROUP` on a CPU."""
    if device.type != "cuda":
        return max(1, min(runs, CPU_GROUP))
    probe = memory_probe(source, cfg, device, data_root, skip_bad_images)
    size = cfg.input_size or source.input_size
    usable = free_bytes(device) - shared_cache_bytes(cfg, size, probe, runs, device, data_root,
                                                     next(source.parameters()).dtype, skip_bad_images)
    return max(1, min(runs, int(0.8 * usable // probe.per_run)))


def run_siblings(source: Classifier, configs: list[FinetuneConfig], device: str | None = None,
             kept_keys: Collection[str] = frozenset(), max_group: int | None = None,
             on_epoch: Callable[[int, int], None] | None = None, compile_prefix: bool = False,
             strategy: str = "auto", data_root: str | None = None, skip_bad_images: bool = False) -> Iterator[Outcome]:
    """Train sibling runs in groups (`max_group`, or as many as fit the device at once); yields (config,
    FinetuneResult or the error) per run as groups finish.

    Out of device memory: the group's memory is released, then it is split in halves and each half retried; a
    lone run that does not fit is yielded with an RtxError saying so. Any other error fails the group's runs
    with that error (its traceback's frames cleared, so the failed group's tensors are not kept alive by it).
    """
    if not configs:
        return
    if len({sibling_key(c) for c in configs}) != 1:
        raise RtxError("run_siblings needs sibling runs (configs that differ only in the seed); group them "
                       "with compute.engine.sibling_sets")
    dev = resolve_device(device)
    size = max_group or group_size(source, configs[0], len(configs), dev, data_root, skip_bad_images)
    pending = [configs[i:i + size] for i in range(0, len(configs), size)]
    while pending:
        group = pending.pop(0)
        failure: BaseException | None = None
        try:
            results = train_group(source, group, dev, kept_keys, on_epoch, compile_prefix, strategy, data_root,
                                  skip_bad_images)
        except Exception as err:
            if not is_oom(err):
                traceback.clear_frames(err.__traceback__)
                failure = err
            results = None
        if failure is not None:
            yield from ((c, failure) for c in group)
            continue
        if results is None:  # out of memory; the exception and its frames are gone here
            release_memory(dev)
            if len(group) > 1:
                half = len(group) // 2
                pending[:0] = [group[:half], group[half:]]
                continue
            yield group[0], RtxError(f"out of device memory with a single run ({group[0].target}, "
                                     f"{group[0].blocks} blocks, batch {group[0].batch_size}): use a device with more "
                                     "memory or a smaller --test-limit")
            continue
        yield from zip(group, results, strict=True)


def run_engine(jobs: list[FinetuneJob], sources: Callable[[str], Classifier],
               options: Any) -> Iterator[Outcome]:
    """The `engine` sweep executor (compute.sweep.EXECUTORS): jobs grouped into sets of siblings, each by
    `run_siblings`.

    `options` needs `.device`; `.max_group`, `.engine_strategy`, `.compile`, `.data_root`, `.skip_bad_images` and
    `.progress` are used when present (`compute.settings.Settings` has them all). Outcomes come per group as it finishes, so the driver
    records every run of a group before the next group starts (kill -9 loses at most the group in flight).
    """
    kept_keys = {cfg.key for cfg, keep_model in jobs if keep_model}
    for siblings in sibling_sets(cfg for cfg, _ in jobs):
        first = siblings[0]
        bar = tqdm(total=first.epochs, unit="ep", leave=False, position=1, disable=not getattr(options, "progress", False),
                   desc=RunLabel.of(first).progress(len(siblings)))
        try:
            source = sources(first.source)
        except Exception as err:  # e.g. an unreadable checkpoint: its runs fail, the sweep goes on
            bar.close()
            yield from ((c, err) for c in siblings)
            continue
        try:
            yield from run_siblings(source, siblings, getattr(options, "device", None), kept_keys,
                                      getattr(options, "max_group", None),
                                on_epoch=lambda epoch, _, b=bar: b.update(epoch - b.n),
                                strategy=getattr(options, "engine_strategy", "auto"),
                                compile_prefix=getattr(options, "compile", False),
                                data_root=getattr(options, "data_root", None),
                                skip_bad_images=getattr(options, "skip_bad_images", False))
        finally:
            bar.close()


__all__ = ["BF16_PARTS", "CPU_GROUP", "MEMORY_PROBES", "STRATEGY_TIMINGS", "DeviceData", "GroupData", "MemoryProbe",
           "RunGroup", "StackedRuns", "StepTimes", "StrategyTimer", "device_data", "free_bytes", "group_size", "is_oom",
           "memory_probe", "per_run_bytes", "release_memory", "run_engine", "run_siblings", "shared_cache_bytes",
           "sibling_key", "sibling_sets", "synchronize", "train_group"]
