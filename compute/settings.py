"""How to run the work (not what: that is the preset): one frozen `Settings` passed down from the edge.

The CLI (or a test, or a benchmark) builds one `Settings` and hands it to `compute.stages` and whatever they call;
nothing below the edge reads the environment (a worker process or a Ray task on another machine gets the
`Settings`, not the driver's environment). `Settings.from_env` is the one place that reads the environment variables
that give defaults (`RTX_DATA`, `RTX_CHECKPOINTS`, `RTX_SKIP_BAD_IMAGES`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

import torch

from compute.errors import RtxError
from compute.workers import available_cores

TRUE_WORDS = ("1", "true", "yes", "on")  # what a yes/no environment variable accepts as yes
ENGINE_STRATEGIES = ("auto", "vmap", "loop")  # compute.engine.STRATEGIES (not imported: settings stays light)
# What runs in bf16 under precision='bf16' (the paper preset on CUDA), for the "Paper vs here" page: autocast
# (compute.finetune.autocast) lowers the convolutions, and compute.finetune.Fp32Linear keeps the last Linear in fp32
# (issue 20, item 6). Here and not in compute.engine, which the app would otherwise import with all it needs.
BF16_PARTS = ("convolutions run in bf16 (autocast), in training and in evaluation, and the activations between "
              "them are bf16 (BatchNorm normalises them with fp32 statistics and parameters; the engine keeps its "
              "cached frozen-prefix activations in bf16); the last Linear layer and the softmax cross-entropy loss "
              "run in fp32, and the weights, their gradients and the SGD update stay fp32")


@dataclass(frozen=True)
class Settings:
    """Where and how the stages run.

    device: 'cpu', 'cuda', 'cuda:1' ... (None: CUDA when present); progress: tqdm bars; workers: local processes
    (one torch thread each; `default_workers`); executor: 'local' | 'ray'; address: Ray cluster (None starts a
    local one); checkpoint_dir: folder of a preset's checkpoint files (None: <cache>/checkpoints); trust_pickle:
    allow checkpoints that need pickle; data_root: torchvision dataset folder (None: <cache>/data); download:
    fetch missing torchvision datasets; skip_bad_images: leave a folder: dataset's unreadable files out instead of
    refusing it (compute.data.folder); keep_models: keep every fine-tuned model's weights; max_runs: stop after
    this many fine-tunes; threads: torch CPU threads of this process (None: torch's choice); test_limit: evaluate
    fine-tunes on the first N test images only (None: the preset's choice).
    Engine and Ray (compute.sweep): max_group: sibling runs (differing only in the seed) trained together in one call (None: the engine's
    choice, from free device memory on CUDA); engine_strategy: 'auto' | 'vmap' | 'loop' (compute.engine.STRATEGIES);
    compile: torch.compile the engine's frozen prefix (BatchNorm `frozen` runs only; same numbers);
    gpus_per_task: GPUs of one Ray task, fractional allowed (None: from the group's measured memory when the
    driver has a GPU, else 1 on a GPU cluster); cpus_per_task: CPUs of one Ray task.
    """

    device: str | None = None
    progress: bool = True
    workers: int = 1
    executor: str = "local"
    address: str | None = None
    checkpoint_dir: str | None = None
    trust_pickle: bool = False
    data_root: str | None = None
    download: bool = False
    skip_bad_images: bool = False
    keep_models: bool = False
    max_runs: int | None = None
    threads: int | None = None
    test_limit: int | None = None
    max_group: int | None = None
    engine_strategy: str = "auto"
    compile: bool = False
    gpus_per_task: float | None = None
    cpus_per_task: float = 1.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise RtxError(f"--workers must be at least 1 (got {self.workers})")
        if self.threads is not None and self.threads < 1:
            raise RtxError(f"--threads must be at least 1 (got {self.threads})")
        if self.max_group is not None and self.max_group < 1:
            raise RtxError(f"--max-group must be at least 1 (got {self.max_group})")
        if self.engine_strategy not in ENGINE_STRATEGIES:
            raise RtxError(f"unknown engine strategy {self.engine_strategy!r}; valid choices: "
                           f"{', '.join(ENGINE_STRATEGIES)}")
        if self.gpus_per_task is not None and (self.gpus_per_task < 0 or self.gpus_per_task > 1
                                               and not float(self.gpus_per_task).is_integer()):
            raise RtxError(f"--gpus-per-task must be 0 (CPU tasks), a fraction up to 1 or a whole number "
                           f"(got {self.gpus_per_task})")
        if self.cpus_per_task <= 0:
            raise RtxError(f"--cpus-per-task must be positive (got {self.cpus_per_task})")

    @classmethod
    def from_env(cls, **values: object) -> Settings:
        """Settings from explicit values (None = not given), with defaults from the environment and the machine:
        data_root from $RTX_DATA, checkpoint_dir from $RTX_CHECKPOINTS, skip_bad_images from $RTX_SKIP_BAD_IMAGES
        (1, true, yes or on), workers from `default_workers`."""
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in values.items() if k in known and v is not None}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        env = {"data_root": os.environ.get("RTX_DATA"), "checkpoint_dir": os.environ.get("RTX_CHECKPOINTS")}
        given.update({k: v for k, v in env.items() if k not in given and v})
        if "skip_bad_images" not in given:
            given["skip_bad_images"] = os.environ.get("RTX_SKIP_BAD_IMAGES", "").strip().lower() in TRUE_WORDS
        given.setdefault("workers", default_workers(given.get("device")))  # type: ignore[arg-type]
        given.setdefault("executor", default_executor(given.get("device")))  # type: ignore[arg-type]
        return cls(**given)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device to run on: the one named ('cpu', 'cuda:1', ...), else CUDA when present, else the CPU."""
    if device is not None and str(device):
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_executor(device: str | None = None) -> str:
    """'engine' (sibling runs, differing only in the seed, in one call: compute.engine) on CUDA; 'local' (one run
    at a time, the reference whose numbers the tiny/demo fixtures record) on a CPU."""
    return "engine" if resolve_device(device).type == "cuda" else "local"


def default_workers(device: str | None = None) -> int:
    """One worker process per available core on a CPU; one (this process) when a GPU does the work."""
    return 1 if resolve_device(device).type == "cuda" else available_cores()
