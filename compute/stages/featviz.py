"""The `featviz` stage: for each source of `preset.featviz` and each seed photo, one optimised image per unit."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from compute.cache import CacheWriter
from compute.errors import RtxError, unknown_name
from compute.featviz import PNG_SIZE, featviz_key, input_channels, seed_names, visualize
from compute.images import to_png
from compute.models import Classifier, load_checkpoint
from compute.presets import Preset
from compute.records import FeatvizRecord
from compute.settings import Settings


def run(preset: Preset, writer: CacheWriter, settings: Settings) -> None:
    featviz_stage(preset, writer, device=settings.device, progress=settings.progress)


def featviz_stage(preset: Preset, writer: CacheWriter, device: str | torch.device | None = None,
                  progress: bool = True) -> None:
    """For each source of `preset.featviz` and each seed photo: one optimised image per unit, stored as PNGs."""
    spec = preset.featviz
    if spec is None:
        return
    for seed_image in spec.seed_images:  # fail before any work on a typo
        if seed_image not in seed_names():
            raise unknown_name("seed image", seed_image, seed_names())
    jobs = [(s, img) for s in spec.sources for img in spec.seed_images]
    bar = tqdm(jobs, desc="featviz", unit="seed", disable=not progress)
    models: dict[str, Classifier] = {}
    for source, seed_image in bar:
        row = writer.source_row(source)
        if row is None:
            raise RtxError(f"source model {source!r} is not in the cache; run the `sources` stage first")
        key = featviz_key(source, row.checksum, seed_image, spec)
        if writer.has_featviz(key):
            continue
        if source not in models:
            models[source] = load_checkpoint(writer.root / row.path)[0]
        model = models[source]
        viz = visualize(model, seed_image, spec, input_channels(row.source_dataset), device)
        seed_png = to_png(viz.seed, PNG_SIZE)
        writer.record_featviz([
            FeatvizRecord(key, source, seed_image, int(unit), spec.steps, viz.step_size, to_png(image, PNG_SIZE),
                          seed_png)
            for unit, image in zip(viz.units, viz.images, strict=True)
        ])
