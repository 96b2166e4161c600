"""The fine-tuning engine: the runs of one cell train together in one model call, CUDA first, same code on a CPU.

A cell is a set of runs whose configs differ only in the seed (same source, target, blocks, subset size and
recipe). They share the frozen weights; each run keeps its own trainable weights, SGD momentum buffers,
BatchNorm statistics, subset, batch order and augmentation. One step is one call over all R runs:
`torch.func.functional_call` on a template module with the runs' stacked tensors, `torch.func.vmap` over the
run dimension (`strategy='vmap'`; vmap turns the runs' convolutions into grouped ones), or a Python loop over the
runs' slices of the same stacked tensors (`strategy='loop'`: dense convolutions, R calls; same numbers).
Which is faster depends on the device and the cell (bench/gpu_finetune.py times both), so `strategy='auto'` (the
default) times one training step of each on the group's first batch, with every piece of state that a step
touches (BatchNorm statistics, the runs' generators, gradients) put back, and keeps the faster for the group;
the choice is remembered per cell shape and group size in the process (`STRATEGY_CHOICES`). The optimiser is one SGD over the stacked tensors: momentum and weight decay are elementwise
and all runs share the learning-rate schedule, so it is R independent SGDs. The loss is the sum of the runs'
mean losses, whose gradient with respect to run r's weights is run r's own gradient.

Same numbers as one run at a time (`compute.finetune.finetune`, the reference), up to float rounding
(tests/test_engine.py): each run has its own `torch.Generator` seeded by its seed and uses it exactly as
`finetune` does: one `randperm` per epoch for the batch order, then per batch the augmentation's draws
(compute.data.augment). The FC layer is initialised by `compute.finetune.new_fc` from the run's seed.

What runs where:
- Data: a target's images go to the device once per process (`device_data`), as uint8 when they are exact
  multiples of 1/255 (every torchvision target), float32 otherwise; upscaling and augmentation per batch on
  the device.
- `bn_mode='frozen'`: the prefix (normaliser, stem, frozen blocks) is in eval mode, a fixed function shared by
  every run: one prefix call on the R runs' batches concatenated, then the vmapped trainable suffix. Without
  random augmentation of the prefix's input (`augment='none'`, or `paper` on a grey target) the prefix's
  training activations are computed once for the union of the runs' subsets and reused every epoch.
- `bn_mode='train'` (the authors'): the whole model is in train mode, so each run's frozen BatchNorm layers
  use batch statistics and update running statistics of their own: the whole model is vmapped, with frozen
  weights shared and every BatchNorm buffer stacked per run.
- Evaluation (eval mode, never augmented). `frozen`: exact with cached prefix activations: the test images'
  prefix activations are computed once per (source checksum, target, blocks, input size, test_limit,
  precision, device) and each evaluation runs only the vmapped suffix. Cached activations (test, and training
  ones of a static prefix) are kept only when they fit a quarter of free device memory; otherwise the prefix
  runs per batch (same numbers). `train`: the frozen blocks' running
  statistics differ per run and drift every step, so a cache would be wrong; the engine evaluates the whole
  model, vmapped over the runs (each with its own running statistics), on shared test batches. Exact; no
  approximation is made.
- CUDA: bf16 autocast when `precision='bf16'` (recorded in the key), channels_last; no host synchronisation
  inside a step (per-run losses summed on the device, read once per epoch); torch.compile of the shared
  prefix behind `compile_prefix` (`--compile`; used only where the prefix is a fixed function, bn_mode
  'frozen'; same numbers, tests/test_engine.py). Whether it pays on a GPU is what `bench/gpu_finetune.py
  --compile` measures; off by default until it has (a compilation per cell shape costs seconds to minutes).
- Group size: on CUDA from free memory (`torch.cuda.mem_get_info`) and a measured per-run peak; on a CPU
  `CPU_GROUP` (measured by bench/gpu_finetune.py). Out of memory splits a group in halves and retries them;
  a single run that still does not fit is returned as failed with the reason.
- `FinetuneResult.wall_seconds` of a run trained in a group is the group's wall time divided by its size.
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from compute.data import load_dataset, to_model_input
from compute.data.augment import PaperParams, apply_paper, as_float, draw_paper_params, to_device, train_input
from compute.errors import RtxError
from compute.finetune import (
    FinetuneConfig,
    FinetuneResult,
    autocast,
    make_scheduler,
    new_fc,
    prepare_model,
    run_subset,
    split_model,
)
from compute.models import Classifier
from compute.records import CurvePoint
from compute.settings import ENGINE_STRATEGIES, resolve_device

STRATEGIES = ENGINE_STRATEGIES  # "auto" | "vmap" (one vmapped call over the runs) | "loop" (a loop over them)
STRATEGY_CHOICES: dict[tuple, str] = {}  # what `auto` picked, per (cell without seed, runs, device): timed once
CPU_GROUP = 8  # runs per call on a CPU: fastest of R = 1, 2, 4, 8 in `bench/gpu_finetune.py --scan-group 1 2 4 8`
EVAL_BATCH = 256
Outcome = tuple[FinetuneConfig, FinetuneResult | BaseException]


@dataclass(frozen=True)
class DeviceData:
    """A target's split on the device: images uint8 (exact k/255) or float32, labels int64."""

    images: torch.Tensor  # (N, C, h, w)
    labels: torch.Tensor  # (N,)
    num_classes: int


_DATA: OrderedDict[tuple, DeviceData] = OrderedDict()
_PREFIX: OrderedDict[tuple, torch.Tensor] = OrderedDict()


def _remember(store: OrderedDict, key: tuple, make: Callable[[], Any], capacity: int = 4) -> Any:
    if key not in store:
        store[key] = make()
        while len(store) > capacity:
            store.popitem(last=False)
    store.move_to_end(key)
    return store[key]


def to_device_images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """float [0, 1] images -> uint8 on the device when that is lossless (a quarter of the memory), else float32."""
    scaled = images * 255
    if torch.equal(scaled.round(), scaled) or torch.allclose(scaled.round(), scaled, rtol=0, atol=1e-4):
        return scaled.round().to(torch.uint8).to(device)
    return images.float().to(device)


def device_data(target: str, split: str, device: torch.device, limit: int | None = None,
                data_root: str | None = None) -> DeviceData:
    """A split on the device, once per process (the first `limit` images when given); torchvision targets are
    read from `data_root` (`Settings.data_root`)."""
    def make() -> DeviceData:
        data = load_dataset(target, split, data_root)
        images, labels = (data.images[:limit], data.labels[:limit]) if limit else (data.images, data.labels)
        return DeviceData(to_device_images(images, device), labels.to(device), len(data.classes))
    return _remember(_DATA, (target, split, str(device), limit, data_root), make)


def cell_key(cfg: FinetuneConfig) -> tuple:
    """Everything but the seed: runs with the same cell key can train together."""
    return tuple(sorted((k, v) for k, v in asdict(cfg).items() if k != "seed"))


def cells(configs: Iterable[FinetuneConfig]) -> list[list[FinetuneConfig]]:
    """Configs grouped into cells, in first-seen order."""
    groups: dict[tuple, list[FinetuneConfig]] = {}
    for cfg in configs:
        groups.setdefault(cell_key(cfg), []).append(cfg)
    return list(groups.values())


def _static_prefix(cfg: FinetuneConfig, channels: int) -> bool:
    """True when the prefix's training input never changes between epochs (no random augmentation)."""
    return cfg.bn_mode == "frozen" and (cfg.augment == "none" or (cfg.augment == "paper" and channels == 1))


class RunGroup:
    """R runs of one cell: the template model, the stacked trainable state, and one step / one evaluation."""

    def __init__(self, source: Classifier, configs: list[FinetuneConfig], device: torch.device,
                 compile_prefix: bool = False, strategy: str = "auto", data_root: str | None = None):
        if strategy not in STRATEGIES:
            raise RtxError(f"unknown engine strategy {strategy!r}; valid choices: {', '.join(STRATEGIES)}")
        cfg = configs[0]
        self.configs, self.cfg, self.device = configs, cfg, device
        self.train = device_data(cfg.target, "train", device, data_root=data_root)
        self.test = device_data(cfg.target, "test", device, cfg.test_limit, data_root)
        self.subsets = [run_subset(c, self.train.labels.cpu()) for c in configs]
        self.generators = [torch.Generator().manual_seed(c.seed) for c in configs]
        model = prepare_model(source, cfg, self.train.num_classes, device)
        if device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.size = model.input_size
        prefix, suffix = split_model(model, cfg.blocks)
        self.prefix = prefix.eval()
        self.prefix_fn = torch.compile(prefix) if compile_prefix else prefix
        # the module whose tensors are stacked per run: the suffix, or the whole model when frozen BN drifts
        self.module = suffix if cfg.bn_mode == "frozen" else nn.Sequential(prefix, suffix)
        self.module.train()
        fc, fcs = model.net.fc, []
        for run_cfg in configs:  # each run's FC from its own seed, exactly as prepare_model makes it
            new_fc(model, run_cfg, self.train.num_classes)
            fcs.append(model.net.fc)
        model.net.fc = fc  # the template's FC (the one inside `suffix`)
        fc_name = f"{len(self.module) - 1}." if cfg.bn_mode == "frozen" else f"1.{len(suffix) - 1}."
        params = dict(self.module.named_parameters())
        self.frozen = {k: v for k, v in params.items() if not v.requires_grad}
        trainable = [k for k, v in params.items() if v.requires_grad]
        stacked_fc, _ = stack_module_state(fcs)
        self.params = {k: (stacked_fc[k[len(fc_name):]] if k.startswith(fc_name)
                           else torch.stack([params[k]] * len(configs))).detach().clone().requires_grad_(True)
                       for k in trainable}  # {name: (R, ...)}
        self.buffers = {k: torch.stack([v] * len(configs)).clone() for k, v in self.module.named_buffers()}
        self.optimizer = torch.optim.SGD(list(self.params.values()), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.scheduler = make_scheduler(cfg, self.optimizer)
        self.subset_dev = torch.stack([torch.as_tensor(s) for s in self.subsets]).to(device)  # (R, n)
        union, inverse = torch.unique(self.subset_dev, return_inverse=True)
        self.static = _static_prefix(cfg, self.train.images.shape[1]) and self._cache_fits(len(union))
        if self.static:  # prefix activations of the union of the subsets, once
            self.union_feats = self._prefix_batched(self.train.images[union])
            self.subset_rows = inverse  # (R, n) rows into union_feats
        self.strategy = self._choose(strategy)
        self.forward, self.forward_shared = self._forwards(self.strategy)

    def _forwards(self, strategy: str) -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
        """(training call with per-run inputs, evaluation call with inputs shared by the runs) of a strategy."""
        if strategy == "vmap":
            return vmap(self._call, in_dims=(0, 0, 0)), vmap(self._call, in_dims=(0, 0, None))
        return self._looped(shared=False), self._looped(shared=True)

    def _choose(self, strategy: str) -> str:
        """`strategy`, or for 'auto' the faster of vmap and loop on this device and cell (timed once per process)."""
        if strategy != "auto":
            return strategy
        if len(self.configs) == 1:
            return "loop"  # one run: a plain call, nothing to vmap over
        key = (cell_key(self.cfg), len(self.configs), str(self.device))
        if key not in STRATEGY_CHOICES:
            seconds = {name: self._time_step(name) for name in ("vmap", "loop")}
            STRATEGY_CHOICES[key] = min(seconds, key=seconds.__getitem__)
        return STRATEGY_CHOICES[key]

    def _time_step(self, strategy: str, repeats: int = 2) -> float:
        """Seconds of one training step (forward and backward on the first batch) with `strategy`, the best of
        `repeats` after a warm-up; leaves the group as it found it (no optimiser step, BatchNorm statistics and
        the runs' generators restored, gradients cleared), so the runs' numbers do not depend on the timing."""
        forward, _ = self._forwards(strategy)
        buffers = {k: v.clone() for k, v in self.buffers.items()}
        states = [g.get_state() for g in self.generators]
        best = float("inf")
        for attempt in range(repeats + 1):
            synchronize(self.device)
            start = time.perf_counter()
            _one_step(self, forward)
            synchronize(self.device)
            if attempt:  # the first call is a warm-up (kernel selection, allocator)
                best = min(best, time.perf_counter() - start)
        with torch.no_grad():
            for k, v in buffers.items():
                self.buffers[k].copy_(v)
        for g, state in zip(self.generators, states, strict=True):
            g.set_state(state)
        for v in self.params.values():
            v.grad = None
        return best

    def _call(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
              x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, {**self.frozen, **params, **buffers}, (x,))

    def _looped(self, shared: bool) -> Callable[..., torch.Tensor]:
        """The vmapped call's signature and result, one run after another (views of the stacked tensors, so
        gradients and BatchNorm running-statistic updates land in run r's slice)."""
        def run(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return torch.stack([self._call({k: v[r] for k, v in params.items()}, {k: v[r] for k, v in buffers.items()},
                                           x if shared else x[r]) for r in range(len(self.configs))])
        return run

    def _cache_fits(self, images: int) -> bool:
        """Whether prefix activations of `images` images fit a quarter of free device memory (4 GiB on a CPU).

        ResNet-50 with 9 blocks fine-tuned keeps 512 x 28 x 28 values per image: 60,000 images would need 48 GB
        in bf16. When they do not fit, the prefix runs per batch instead (same numbers, more work)."""
        if images == 0:
            return True
        sample = self._prefix_batched(self.train.images[:1])
        need = sample.numel() * sample.element_size() * images
        limit = torch.cuda.mem_get_info(self.device)[0] // 4 if self.device.type == "cuda" else 4 << 30
        return need <= limit

    @torch.no_grad()
    def _prefix_batched(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        with autocast(self.cfg, self.device):
            for i in range(0, len(images), EVAL_BATCH):
                out.append(self.prefix_fn(self._model_input(to_model_input(as_float(images[i:i + EVAL_BATCH]),
                                                                           self.size))))
        return torch.cat(out)

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    def _batch_inputs(self, rows: torch.Tensor) -> torch.Tensor:
        """(R, B) subset positions -> model inputs: prefix activations (frozen) or images (train), (R, B, ...)."""
        r, b = rows.shape
        if self.static:
            feats = self.union_feats[self.subset_rows.gather(1, rows)].float()  # bf16 under autocast -> fp32
            return feats.view(r, b, *self.union_feats.shape[1:])
        images = self.train.images[self.subset_dev.gather(1, rows)].flatten(0, 1)  # (R * B, C, h, w)
        if self.cfg.augment == "paper" and images.shape[1] == 3:
            params = PaperParams.cat([draw_paper_params(b, g) for g in self.generators])
            x = apply_paper(images, params, self.size)
        else:
            x = torch.cat([train_input(images[i * b:(i + 1) * b], self.cfg.augment, self.size, g)
                           for i, g in enumerate(self.generators)])
        x = self._model_input(x)
        if self.cfg.bn_mode == "frozen":
            with torch.no_grad(), autocast(self.cfg, self.device):
                x = self.prefix_fn(x).float()  # the vmapped suffix takes fp32 (its convolutions autocast again)
        return x.view(r, b, *x.shape[1:])

    def train_epoch(self) -> torch.Tensor:
        """One epoch for every run; returns the runs' mean training losses (R,) on the device."""
        n, bs = self.subset_dev.shape[1], self.cfg.batch_size
        orders = to_device(torch.stack([torch.randperm(n, generator=g) for g in self.generators]), self.device)  # (R, n)
        total = torch.zeros(len(self.configs), device=self.device)
        for i in range(0, n, bs):
            rows = orders[:, i:i + bs]  # (R, B)
            x = self._batch_inputs(rows)
            y = self.train.labels[self.subset_dev.gather(1, rows)]  # (R, B)
            with autocast(self.cfg, self.device):
                logits = self.forward(self.params, self.buffers, x)  # (R, B, K)
            losses = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none").view(y.shape).mean(1)
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            self.optimizer.step()
            total += losses.detach() * rows.shape[1]
        self.scheduler.step()
        return total / n

    @torch.no_grad()
    def evaluate(self) -> torch.Tensor:
        """Test accuracy of every run (R,) on the device, in eval mode (see the module docstring)."""
        self.module.eval()
        correct = torch.zeros(len(self.configs), device=self.device)
        labels = self.test.labels
        key = (self.cfg.source_checksum, self.cfg.target, self.cfg.blocks, self.size, self.cfg.test_limit,
               self.cfg.precision, str(self.device), self.cfg.normalisation)
        if self.cfg.bn_mode == "frozen" and (key in _PREFIX or self._cache_fits(len(labels))):
            feats = _remember(_PREFIX, key, lambda: self._prefix_batched(self.test.images), capacity=2)
            chunks = ((feats[i:i + EVAL_BATCH].float(), labels[i:i + EVAL_BATCH])
                      for i in range(0, len(feats), EVAL_BATCH))
        elif self.cfg.bn_mode == "frozen":  # too large to keep: the prefix per test batch
            chunks = ((self._prefix_batched(self.test.images[i:i + EVAL_BATCH]).float(), labels[i:i + EVAL_BATCH])
                      for i in range(0, len(labels), EVAL_BATCH))
        else:
            chunks = ((self._model_input(to_model_input(as_float(self.test.images[i:i + EVAL_BATCH]), self.size)),
                       labels[i:i + EVAL_BATCH]) for i in range(0, len(labels), EVAL_BATCH))
        for x, y in chunks:
            with autocast(self.cfg, self.device):
                logits = self.forward_shared(self.params, self.buffers, x)  # (R, b, K)
            correct += (logits.argmax(-1) == y).sum(1)
        self.module.train()
        return correct / len(labels)

    def run_model(self, r: int) -> Classifier:
        """Run r's fine-tuned model (a copy on the CPU, eval mode): its tensors copied into the template, copied out."""
        named = {**dict(self.module.named_parameters()), **dict(self.module.named_buffers())}
        stacked = {**self.params, **self.buffers}
        saved = {k: v.detach().clone() for k, v in named.items()}
        with torch.no_grad():
            for k, v in named.items():
                if k in stacked:
                    v.copy_(stacked[k][r])
            model = copy.deepcopy(self.model).cpu().to(memory_format=torch.contiguous_format).eval()
            for k, v in named.items():
                v.copy_(saved[k])
        return model


def train_group(source: Classifier, configs: list[FinetuneConfig], device: torch.device,
                keep: set[str] | frozenset[str] = frozenset(), on_epoch: Callable[[int, int], None] | None = None,
                compile_prefix: bool = False, strategy: str = "auto", data_root: str | None = None) -> list[FinetuneResult]:
    """Train the runs of one cell together; one FinetuneResult per run, in the order of `configs`."""
    start = time.perf_counter()
    group = RunGroup(source, configs, device, compile_prefix, strategy, data_root)
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
    return [FinetuneResult(c, group.subsets[r], curves[r], curves[r][-1].test_acc, losses[r], seconds, str(device),
                           group.run_model(r) if c.key in keep else None) for r, c in enumerate(configs)]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on a CPU. For timings, never inside a training step."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def per_run_bytes(source: Classifier, cfg: FinetuneConfig, device: torch.device, data_root: str | None = None) -> int:
    """Peak device memory of one run's training step, measured with a throwaway one-run group (CUDA only)."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    probe = RunGroup(source, [replace(cfg, epochs=1)], device, data_root=data_root)
    _one_step(probe)
    probe.evaluate()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del probe
    torch.cuda.empty_cache()
    return max(peak, 1)


def _one_step(group: RunGroup, forward: Callable[..., torch.Tensor] | None = None) -> None:
    """Forward and backward of every run on its subset's first batch (no optimiser step): a memory probe or a
    timing. Draws from the runs' generators and updates BatchNorm statistics like a real step."""
    rows = torch.arange(min(group.subset_dev.shape[1], group.cfg.batch_size), device=group.device)
    rows = rows.expand(len(group.configs), -1)
    x = group._batch_inputs(rows)
    with autocast(group.cfg, group.device):
        logits = (forward or group.forward)(group.params, group.buffers, x)
    F.cross_entropy(logits.flatten(0, 1).float(), group.train.labels[group.subset_dev.gather(1, rows)].flatten()).backward()


def group_size(source: Classifier, cfg: FinetuneConfig, runs: int, device: torch.device,
               data_root: str | None = None) -> int:
    """How many runs share a call: from free memory and a measured per-run peak on CUDA, `CPU_GROUP` on a CPU."""
    if device.type != "cuda":
        return max(1, min(runs, CPU_GROUP))
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(runs, int(0.8 * free // per_run_bytes(source, cfg, device, data_root))))


def run_cell(source: Classifier, configs: list[FinetuneConfig], device: str | None = None,
             keep: set[str] | frozenset[str] = frozenset(), max_group: int | None = None,
             on_epoch: Callable[[int, int], None] | None = None, compile_prefix: bool = False,
             strategy: str = "auto", data_root: str | None = None) -> Iterator[Outcome]:
    """Train one cell's runs in groups; yields (config, FinetuneResult or the error) per run as groups finish.

    Out of device memory: the group is split in halves and each half retried; a lone run that does not fit is
    yielded with an RtxError saying so. Any other error fails the group's runs with that error.
    """
    if not configs:
        return
    if len({cell_key(c) for c in configs}) != 1:
        raise RtxError("run_cell needs runs of one cell (configs that differ only in the seed); group them "
                       "with compute.engine.cells")
    dev = resolve_device(device)
    size = max_group or group_size(source, configs[0], len(configs), dev, data_root)
    pending = [configs[i:i + size] for i in range(0, len(configs), size)]
    while pending:
        group = pending.pop(0)
        try:
            results = train_group(source, group, dev, keep, on_epoch, compile_prefix, strategy, data_root)
        except Exception as err:
            if not _is_oom(err):
                yield from ((c, err) for c in group)
                continue
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if len(group) > 1:
                half = len(group) // 2
                pending[:0] = [group[:half], group[half:]]
                continue
            yield group[0], RtxError(f"out of device memory with a single run ({group[0].target}, "
                                     f"{group[0].blocks} blocks, batch {group[0].batch_size}): use a device with more "
                                     "memory or a smaller --test-limit")
            continue
        yield from zip(group, results, strict=True)


def run_engine(jobs: list[tuple[FinetuneConfig, bool]], sources: Callable[[str], Classifier],
               options: Any) -> Iterator[Outcome]:
    """The `engine` sweep executor (compute.sweep.EXECUTORS): jobs grouped into cells, each cell by `run_cell`.

    `options` needs `.device`; `.max_group`, `.engine_strategy`, `.compile`, `.data_root` and `.progress` are used when
    present (`compute.settings.Settings` has them all). Outcomes come per group as it finishes, so the driver
    records every run of a group before the next group starts (kill -9 loses at most the group in flight).
    """
    keep = {cfg.key for cfg, k in jobs if k}
    for cell in cells(cfg for cfg, _ in jobs):
        first = cell[0]
        bar = tqdm(total=first.epochs, unit="ep", leave=False, position=1, disable=not getattr(options, "progress", False),
                   desc=f"  {first.source} -> {first.target} n={first.n_train} k={first.blocks} x{len(cell)}")
        try:
            source = sources(first.source)
        except Exception as err:  # e.g. an unreadable checkpoint: the cell's runs fail, the sweep goes on
            bar.close()
            yield from ((c, err) for c in cell)
            continue
        try:
            yield from run_cell(source, cell, getattr(options, "device", None), keep, getattr(options, "max_group", None),
                                on_epoch=lambda epoch, _, b=bar: b.update(epoch - b.n),
                                strategy=getattr(options, "engine_strategy", "auto"),
                                compile_prefix=getattr(options, "compile", False),
                                data_root=getattr(options, "data_root", None))
        finally:
            bar.close()


__all__ = ["CPU_GROUP", "STRATEGY_CHOICES", "DeviceData", "RunGroup", "cell_key", "cells", "device_data", "group_size",
           "run_cell", "run_engine", "synchronize", "train_group"]
