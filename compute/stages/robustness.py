"""The `robustness` stage: clean accuracy and PGD(k) accuracy at the preset's eps of every source."""

from __future__ import annotations

from compute.cache import CacheWriter
from compute.presets import Preset
from compute.robustness import robustness_stage
from compute.settings import Settings


def run(preset: Preset, writer: CacheWriter, settings: Settings) -> None:
    robustness_stage(preset, writer, device=settings.device, progress=settings.progress, data_root=settings.data_root)
