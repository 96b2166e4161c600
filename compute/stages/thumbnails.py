"""The `thumbnails` stage: a few test images per class of every target, for the explorer's overview."""

from __future__ import annotations

from tqdm.auto import tqdm

from compute.cache import CacheWriter
from compute.data import load_dataset
from compute.errors import RtxError
from compute.images import to_png
from compute.presets import Preset
from compute.records import ThumbnailRecord
from compute.settings import Settings

PER_CLASS = 3


def run(preset: Preset, writer: CacheWriter, settings: Settings) -> None:
    targets = sorted({t for g in preset.grids for t in g.targets})
    for target in targets:
        if writer.has_thumbnails(target, "test"):
            continue
        try:
            test = load_dataset(target, "test", settings.data_root, skip_bad_images=settings.skip_bad_images)
        except RtxError as err:
            tqdm.write(f"skipping thumbnails of {target}: {err}")
            continue
        rows = []
        for label in range(len(test.classes)):
            idx = (test.labels == label).nonzero().flatten()[:PER_CLASS].tolist()
            rows += [ThumbnailRecord(target, "test", i, label, to_png(test.images[i])) for i in idx]
        writer.record_thumbnails(rows)
