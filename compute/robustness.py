"""Robustness of source models: clean accuracy and PGD(k) accuracy at several eps (the paper's Table 1b).

`evaluate_robustness` measures one (model, constraint) pair on a batch of images in dataset pixel space;
`robustness_stage` does it for every source of a preset and every constraint in `preset.robustness_eps`
(plus clean accuracy, stored as norm 'none', eps 0), on the first `n_images` test images of the source's
own dataset, and records each source's rows in one transaction. Rows already recorded are skipped.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from compute.attacks import AttackConfig, OnPixels, parse_constraint, perturb
from compute.cache import CacheWriter
from compute.data import DATASETS, load_dataset
from compute.errors import RtxError
from compute.models import Classifier, load_checkpoint
from compute.presets import Preset

__all__ = ["DEMO_N_IMAGES", "constraint_row", "evaluate_robustness", "robustness_stage"]

DEMO_N_IMAGES = 1_000  # first N test images: PGD(3) on 1,000 28x28 images takes about a second on 2 cores
EVAL_SEED = 0  # generator for random starts / Gaussian noise during evaluation


def evaluate_robustness(model: Classifier, images: torch.Tensor, labels: torch.Tensor, cfg: AttackConfig,
                        batch_size: int = 256, generator: torch.Generator | None = None) -> float:
    """Top-1 accuracy (a fraction) on images (N, c, h, w) in [0, 1] after perturbing each batch with cfg.

    Runs on the model's device in eval mode; the model's mode is restored afterwards.
    """
    device = next(model.parameters()).device
    pixels = OnPixels(model, model.input_size)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for i in range(0, len(labels), batch_size):
            x, y = images[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)
            if cfg.kind != "none":
                x = perturb(pixels, x, y, cfg, generator)
            with torch.no_grad():
                correct += int((pixels(x).argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return correct / max(len(labels), 1)


def constraint_row(source: str, dataset: str, cfg: AttackConfig, accuracy: float, n_images: int) -> dict[str, object]:
    """One `robustness` table row; clean accuracy is norm 'none', eps 0, steps 0."""
    return {"source": source, "dataset": dataset, "norm": cfg.norm_name, "eps": float(cfg.eps),
            "steps": int(cfg.steps), "accuracy": float(accuracy), "n_images": int(n_images)}


def robustness_stage(preset: Preset, writer: CacheWriter, device: str | None = None, progress: bool = True,
                     n_images: int = DEMO_N_IMAGES, constraints: tuple[str, ...] | None = None,
                     data_root: str | None = None) -> int:
    """Evaluate every recorded source of the preset at clean + each constraint; returns rows written.

    `constraints` overrides `preset.robustness_eps` (e.g. from `rtx eval-robustness --eps ...`). Sources
    trained on a dataset this program cannot load offline (ImageNet for the paper's checkpoints) are skipped
    with a note.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
        dataset = row["source_dataset"]
        if dataset not in DATASETS:
            tqdm.write(f"[robustness] skipping {spec.name}: its dataset {dataset!r} is not available offline")
            continue
        expected = min(n_images, DATASETS[dataset].test_size)
        todo = [c for c in cfgs if done.get((spec.name, dataset, c.norm_name, float(c.eps), int(c.steps))) != expected]
        if not todo:
            continue
        test = load_dataset(dataset, "test", data_root)
        images, labels = test.images[:n_images], test.labels[:n_images]
        model = load_checkpoint(writer.root / row["path"])[0].to(dev).to(memory_format=torch.channels_last)
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
            summary = ", ".join(f"{cfg.label} {r['accuracy']:.3f}" for cfg, r in zip(todo, rows, strict=True))
            tqdm.write(f"[robustness] {spec.name} on {dataset} ({len(labels)} test images): {summary}")
    return written

