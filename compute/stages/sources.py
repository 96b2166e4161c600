"""The `sources` stage: train (or load from checkpoints) every source model of the preset the cache lacks, and
record the preset's roles in the cache (compute.roles: which source is natural, which the paper analogue, which
plays each Table 7 column), so that the explorer, the demo and the influence stage read one decision."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from compute.cache import CacheWriter
from compute.presets import Preset, SourceSpec
from compute.records import SourceRecord
from compute.settings import Settings

# _up_to_date and _record are train_source.py's, shared with its ensure_source (one rule for "already recorded" and
# one log line); imported, not copied.
from compute.train_source import _record, _up_to_date, train_source
from compute.workers import Report, process_map


def run(preset: Preset, writer: CacheWriter, settings: Settings) -> None:
    sources_stage(preset, writer, device=settings.device, progress=settings.progress,
                  checkpoint_dir=settings.checkpoint_dir, trust_pickle=settings.trust_pickle,
                  workers=settings.workers, data_root=settings.data_root, skip_bad_images=settings.skip_bad_images)
    record_roles(preset, writer)


def record_roles(preset: Preset, writer: CacheWriter) -> None:
    """Record `preset.roles()` in the cache, replacing the roles an earlier preset recorded (idempotent); a source
    the cache lacks yet gets its role when a later run records it and this again."""
    writer.set_source_roles(preset.roles())


def sources_stage(preset: Preset, writer: CacheWriter, device: str | None = None, progress: bool = True,
                  checkpoint_dir: str | Path | None = None, trust_pickle: bool = False,
                  only: tuple[str, ...] | None = None, workers: int = 1, data_root: str | None = None,
                  skip_bad_images: bool = False) -> None:
    """Train or load every source of the preset (or those in `only`) that the cache lacks, recording each.

    With `workers` > 1, sources to train run in that many processes (compute.workers); each is recorded as
    it finishes, and the first error stops the stage (finished sources stay, the others resume per epoch).
    """
    specs = [preset.source(name) for name in only] if only else list(preset.trained_sources())
    todo = [s for s in specs if not _up_to_date(writer.source_row(s.name), s, writer.root)]
    to_train = [s for s in todo if not s.checkpoint]
    if workers > 1 and len(to_train) > 1:
        with tqdm(total=len(to_train), desc="sources", unit="model", position=0, disable=not progress) as bar:
            shared = (str(writer.root), device, data_root, skip_bad_images)
            for spec, row in process_map(_train_job, to_train, workers, shared, progress):
                if isinstance(row, BaseException):
                    raise row
                _record(spec, row, writer, progress)
                bar.update(1)
        todo = [s for s in todo if s.checkpoint]
    for spec in todo:
        row = train_source(spec, writer.root, device=device, progress=progress, checkpoint_dir=checkpoint_dir,
                           trust_pickle=trust_pickle, data_root=data_root, skip_bad_images=skip_bad_images)
        _record(spec, row, writer, progress)


def _train_job(spec: SourceSpec, shared: tuple[str, str | None, str | None, bool], report: Report) -> SourceRecord:
    root, device, data_root, skip_bad_images = shared
    label = f"{spec.name} ({spec.constraint}, k={spec.attack_steps})"
    report(label, 0, spec.epochs)
    return train_source(spec, Path(root), device=device, progress=False, data_root=data_root,
                        skip_bad_images=skip_bad_images,
                        on_epoch=lambda epoch, epochs: report(label, epoch, epochs))
