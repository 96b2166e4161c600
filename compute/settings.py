"""How to run the work (not what: that is the preset): one frozen `Settings` passed down from the edge.

The CLI (or a test, or a benchmark) builds one `Settings` and hands it to `compute.stages` and whatever they call;
nothing below the edge reads the environment. `Settings.from_env` is the one place that reads the environment
variables that give defaults (`RTX_DATA`, `RTX_CHECKPOINTS`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

import torch

from compute.errors import RtxError
from compute.workers import available_cores


@dataclass(frozen=True)
class Settings:
    """Where and how the stages run.

    device: 'cpu', 'cuda', 'cuda:1' ... (None: CUDA when present); progress: tqdm bars; workers: local processes
    (one torch thread each; `default_workers`); executor: 'local' | 'ray'; address: Ray cluster (None starts a
    local one); checkpoint_dir: folder of a preset's checkpoint files (None: <cache>/checkpoints); trust_pickle:
    allow checkpoints that need pickle; data_root: torchvision dataset folder (None: <cache>/data); download:
    fetch missing torchvision datasets; keep_models: keep every fine-tuned model's weights; max_runs: stop after
    this many fine-tunes; threads: torch CPU threads of this process (None: torch's choice); test_limit: evaluate
    fine-tunes on the first N test images only (None: the preset's choice).
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
    keep_models: bool = False
    max_runs: int | None = None
    threads: int | None = None
    test_limit: int | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise RtxError(f"--workers must be at least 1 (got {self.workers})")
        if self.threads is not None and self.threads < 1:
            raise RtxError(f"--threads must be at least 1 (got {self.threads})")

    @classmethod
    def from_env(cls, **values: object) -> Settings:
        """Settings from explicit values (None = not given), with defaults from the environment and the machine:
        data_root from $RTX_DATA, checkpoint_dir from $RTX_CHECKPOINTS, workers from `default_workers`."""
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in values.items() if k in known and v is not None}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        env = {"data_root": os.environ.get("RTX_DATA"), "checkpoint_dir": os.environ.get("RTX_CHECKPOINTS")}
        given.update({k: v for k, v in env.items() if k not in given and v})
        given.setdefault("workers", default_workers(given.get("device")))  # type: ignore[arg-type]
        return cls(**given)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def default_workers(device: str | None = None) -> int:
    """One worker process per available core on a CPU; one (this process) when a GPU does the work."""
    if (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda"):
        return 1
    return available_cores()
