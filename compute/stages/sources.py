"""The `sources` stage: train (or load from checkpoints) every source model of the preset the cache lacks."""

from __future__ import annotations

from compute.cache import CacheWriter
from compute.presets import Preset
from compute.settings import Settings
from compute.train_source import sources_stage


def run(preset: Preset, writer: CacheWriter, settings: Settings) -> None:
    sources_stage(preset, writer, device=settings.device, progress=settings.progress,
                  checkpoint_dir=settings.checkpoint_dir, trust_pickle=settings.trust_pickle,
                  workers=settings.workers, data_root=settings.data_root)
