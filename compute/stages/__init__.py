"""The precompute stages: one module per stage, one signature, run in registry order.

Each stage module has `run(preset, writer, settings) -> None`: it computes what `preset` asks for and the cache
behind `writer` lacks, and records it (a stage resumes from what the cache holds). `precompute` opens the cache
and runs the stages in order; `stage_names()` is the order and the CLI's `--stages` choices.

    stage       what it records                                       module here; the work it calls
    sources     the source models (trained or loaded), their roles    sources; compute.train_source
    robustness  clean and PGD accuracy of each source                 robustness; compute.robustness
    thumbnails  a few test images per class of each target            thumbnails
    finetune    the fine-tuning grid                                  finetune; compute.finetune, compute.sweep
    influence   influence of natural, the analogue, the best budget   influence; compute.influence_problem
    featviz     feature visualisations of a few sources               featviz; compute.featviz
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from compute.cache import CacheWriter
from compute.errors import lookup, unknown_name
from compute.presets import Preset
from compute.settings import Settings
from compute.stages import featviz, finetune, influence, robustness, sources, thumbnails

StageFn = Callable[[Preset, CacheWriter, Settings], None]


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFn
    help: str


STAGES: dict[str, Stage] = {
    stage.name: stage for stage in (
        Stage("sources", sources.run, "train or load the preset's source models"),
        Stage("robustness", robustness.run, "clean and PGD(k) accuracy of every source"),
        Stage("thumbnails", thumbnails.run, "a few test images per class of every target"),
        Stage("finetune", finetune.run, "the fine-tuning grid"),
        Stage("influence", influence.run, "influence of the preset's robust/natural pair"),
        Stage("featviz", featviz.run, "feature visualisations"),
    )
}


def stage_names() -> tuple[str, ...]:
    """Every stage, in the order `precompute` runs them."""
    return tuple(STAGES)


def get_stage(name: str) -> Stage:
    return lookup("stage", STAGES, name)


@dataclass(frozen=True)
class StageTime:
    """How long one stage of a precompute took (wall clock), for bench/precompute.py and the log line."""
    stage: str
    seconds: float


def precompute(preset: Preset, root: Path, settings: Settings,
               stages: Iterable[str] | None = None) -> list[StageTime]:
    """Run the preset's stages (all, or those named, always in registry order); each resumes from the cache.
    Returns each stage's wall-clock time, in the order run."""
    wanted = set(stage_names() if stages is None else stages)
    for name in wanted:
        if name not in STAGES:
            raise unknown_name("stage", name, stage_names())
    start = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    times = []
    with CacheWriter(root) as writer:
        for stage in STAGES.values():
            if stage.name not in wanted:
                continue
            t0 = time.perf_counter()
            tqdm.write(f"[{stage.name}] starting")
            stage.run(preset, writer, settings)
            times.append(StageTime(stage.name, time.perf_counter() - t0))
            tqdm.write(f"[{stage.name}] done in {times[-1].seconds:.1f} s")
    tqdm.write(f"precompute {preset.name}: {time.perf_counter() - start:.1f} s; cache at {root}")
    return times
