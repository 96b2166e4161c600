"""The `robustness` stage: clean accuracy and PGD(k) accuracy at the preset's eps of every source (the paper's
Table 1b). For every source of a preset and every constraint in `preset.robustness_eps` (plus clean accuracy, stored
as norm 'none', eps 0), on the first `n_images` test images of the source's own dataset, each source's rows are
recorded in one transaction; rows already recorded are skipped. The measurement itself is compute.robustness."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from compute.attacks import parse_constraint
from compute.cache import CacheWriter
from compute.data import DATASETS, load_dataset
from compute.errors import RtxError
from compute.models import load_checkpoint
from compute.presets import Preset
from compute.robustness import DEMO_N_IMAGES, EVAL_SEED, constraint_row, evaluate_robustness
from compute.settings import Settings, resolve_device


def run(preset: Preset, writer: CacheWriter, settings: Settings) -> None:
    robustness_stage(preset, writer, device=settings.device, progress=settings.progress, data_root=settings.data_root)


def robustness_stage(preset: Preset, writer: CacheWriter, device: str | None = None, progress: bool = True,
                     n_images: int = DEMO_N_IMAGES, constraints: tuple[str, ...] | None = None,
                     data_root: str | None = None) -> int:
    """Evaluate every recorded source of the preset at clean + each constraint; returns rows written.

    `constraints` overrides `preset.robustness_eps` (e.g. from `rtx eval-robustness --eps ...`). Sources
    trained on a dataset this program cannot load offline (ImageNet for the paper's checkpoints) are skipped
    with a note.
    """
    dev = resolve_device(device)
    cfgs = [parse_constraint("none", 0)] + [
        parse_constraint(c, preset.robustness_steps) for c in (preset.robustness_eps if constraints is None else constraints)
    ]
    done = writer.robustness_done()
    written = 0
    for spec in preset.sources:
        row = writer.source_row(spec.name)
        if row is None:
            raise RtxError(f"source model {spec.name!r} is not in the cache; run `rtx train-source --preset "
                           f"{preset.name}` (or the `sources` stage of `rtx precompute`) first")
        dataset = row.source_dataset
        if dataset not in DATASETS:
            tqdm.write(f"[robustness] skipping {spec.name}: its dataset {dataset!r} is not available offline")
            continue
        expected = min(n_images, DATASETS[dataset].test_size)
        todo = [c for c in cfgs if done.get((spec.name, dataset, c.norm_name, float(c.eps), int(c.steps))) != expected]
        if not todo:
            continue
        test = load_dataset(dataset, "test", data_root)
        images, labels = test.images[:n_images], test.labels[:n_images]
        model = load_checkpoint(writer.root / row.path)[0].to(dev).to(memory_format=torch.channels_last)
        rows = []
        bar = tqdm(todo, desc=f"robustness {spec.name}", unit="eps", leave=False, disable=not progress)
        for cfg in bar:
            generator = torch.Generator(device=dev).manual_seed(EVAL_SEED)
            acc = evaluate_robustness(model, images, labels, cfg, generator=generator)
            rows.append(constraint_row(spec.name, dataset, cfg, acc, len(labels)))
            bar.set_postfix_str(f"{cfg.label}: {acc:.3f}")
        bar.close()
        writer.record_robustness(rows)
        written += len(rows)
        if progress:
            summary = ", ".join(f"{cfg.label} {r.accuracy:.3f}" for cfg, r in zip(todo, rows, strict=True))
            tqdm.write(f"[robustness] {spec.name} on {dataset} ({len(labels)} test images): {summary}")
    return written

