"""The `sources` stage: train (or load from checkpoints) every source model of the preset the cache lacks, and
mark the preset's paper analogue in the cache (so the app knows which robust model stands for the paper's)."""

from __future__ import annotations

from compute.cache import CacheWriter
from compute.presets import Preset
from compute.roles import ANALOGUE_ROLE
from compute.settings import Settings
from compute.train_source import sources_stage


def run(preset: Preset, writer: CacheWriter, settings: Settings) -> None:
    sources_stage(preset, writer, device=settings.device, progress=settings.progress,
                  checkpoint_dir=settings.checkpoint_dir, trust_pickle=settings.trust_pickle,
                  workers=settings.workers, data_root=settings.data_root)
    mark_analogue(preset, writer)


def mark_analogue(preset: Preset, writer: CacheWriter) -> None:
    """Record `preset.analogue` as the cache's paper analogue once its source is there (idempotent)."""
    if preset.analogue and writer.source_row(preset.analogue) is not None:
        writer.set_source_role(preset.analogue, ANALOGUE_ROLE)
