"""The `sources` stage: train (or load from checkpoints) every source model of the preset the cache lacks, and
record the preset's roles in the cache (compute.roles: which source is natural, which the paper analogue, which
plays each Table 7 column), so that the explorer, the demo and the influence stage read one decision."""

from __future__ import annotations

from compute.cache import CacheWriter
from compute.presets import Preset
from compute.settings import Settings
from compute.train_source import sources_stage


def run(preset: Preset, writer: CacheWriter, settings: Settings) -> None:
    sources_stage(preset, writer, device=settings.device, progress=settings.progress,
                  checkpoint_dir=settings.checkpoint_dir, trust_pickle=settings.trust_pickle,
                  workers=settings.workers, data_root=settings.data_root)
    record_roles(preset, writer)


def record_roles(preset: Preset, writer: CacheWriter) -> None:
    """Record `preset.roles()` in the cache, replacing the roles an earlier preset recorded (idempotent); a source
    the cache lacks yet gets its role when a later run records it and this again."""
    writer.set_source_roles(preset.roles())
