"""A small, schema-true synthetic cache for the explorer's tests (values are made up, structure is real).

Every table the explorer reads gets rows shaped as the precompute stages write them: six demo-like sources,
fine-tunes with learning curves over 3 seeds, robustness rows (clean = norm 'none'), a robust/natural
influence pair on the same subset with NPY matrices, top-k rows and thumbnails, and featviz PNGs.
Accuracies follow `synthetic_acc`, so a test can recompute any cell it checks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from compute import records as rec
from compute.cache import CacheWriter
from compute.data import paper_seeds
from compute.images import to_png
from compute.influence.derived import label_match_curve, top_k
from compute.paths import artefact_path, job_key

SOURCES = (  # name, constraint_, attack_steps, clean accuracy, transfer bonus
    ("natural", "none", 0, 0.91, 0.00),
    ("l2_1.5", "l2:1.5", 3, 0.85, 0.06),
    ("linf_0.1", "linf:0.1", 3, 0.86, 0.04),
    ("linf_0.2", "linf:0.2", 3, 0.80, 0.03),
    ("pgd1_l2_1.5", "l2:1.5", 1, 0.87, 0.05),
    ("gaussian_0.054", "gaussian:0.054", 0, 0.89, 0.02),
)
ALL_SOURCE_TARGETS = ("mnist5k",)
PAIR_TARGETS = ("digits", "mnist5k+lowpass(400)", "mnist5k+lowres(10)")  # natural and l2_1.5 only
SIZES = (20, 50, 100)
BLOCKS = (1, 3)
SEEDS = tuple(paper_seeds(3))
EPOCHS = (1, 5, 9)
INFLUENCE = {"target": "mnist5k", "n_train": 50, "seed": SEEDS[0], "blocks": 3, "sources": ("l2_1.5", "natural")}
N_TEST, TOP_K, CLASSES = 30, 5, 10


def synthetic_acc(source: str, target: str, n_train: int, blocks: int, seed_index: int) -> float:
    """Final accuracy of a synthetic run: grows with log n, a bonus per source, seed noise that differs by source."""
    bonus = {s[0]: s[4] for s in SOURCES}[source]
    noise = 0.01 * (((seed_index * 7 + len(source) + blocks) % 3) - 1)
    acc = 0.45 + 0.1 * math.log2(n_train / 20) + bonus + 0.02 * (blocks == 3) - 0.05 * ("+" in target) + noise
    return round(acc, 6)


def _run(source: str, target: str, n_train: int, blocks: int, seed_index: int) -> tuple[rec.RunRecord, list[rec.CurvePoint]]:
    seed = SEEDS[seed_index]
    key = job_key("finetune", {"source": source, "target": target, "n_train": n_train, "seed": seed, "blocks": blocks})
    final = synthetic_acc(source, target, n_train, blocks, seed_index)
    subset = np.random.default_rng(seed + n_train).choice(400 * CLASSES, n_train, replace=False)
    run = rec.RunRecord(key, "done", source, target, n_train, seed, blocks, EPOCHS[-1], {"synthetic": True},
                    tuple(subset.tolist()), final_test_acc=final, final_train_loss=0.1, wall_seconds=1.0, device="cpu")
    curve = [rec.CurvePoint(e, final * (0.6 + 0.4 * e / EPOCHS[-1]), 1.0 / e) for e in EPOCHS]
    return run, curve


def _png(rng: np.random.Generator, label: int, size: int = 28) -> bytes:
    image = rng.random((size, size)) * 0.3
    image[label * 2: label * 2 + 8, 4:24] += 0.7  # a bar whose position shows the label
    return to_png(np.clip(image, 0, 1))


def _influence(writer: CacheWriter, runs: dict[tuple, rec.RunRecord], rng: np.random.Generator) -> None:
    spec = INFLUENCE
    for source in spec["sources"]:
        run = runs[(source, spec["target"], spec["n_train"], spec["blocks"], 0)]
        train_idx = np.asarray(run.subset_indices)
        train_labels = train_idx % CLASSES
        test_idx, test_labels = np.arange(N_TEST), np.arange(N_TEST) % CLASSES
        same = (train_labels[:, None] == test_labels[None, :]).astype(np.float32)
        matrix = (same * (2.0 if source != "natural" else 0.5) + rng.normal(0, 1, same.shape)).astype(np.float32)
        key = job_key("influence", {"run": run.key})
        path = artefact_path(writer.root, "influence", key, "npy")
        np.save(path, matrix)  # (n_train, n_test)
        top = top_k(matrix, TOP_K)  # (n_test, K) most influential first
        topk = pd.DataFrame([{"influence_key": key, "test_pos": t, "rank": r, "train_pos": int(top.positions[t, r]),
                              "score": float(top.scores[t, r])} for t in range(N_TEST) for r in range(TOP_K)])
        match = label_match_curve(matrix, train_labels, test_labels, TOP_K).tolist()
        writer.record_influence(rec.InfluenceRecord(
            key, run.key, "fc-exact", 0.05, len(train_idx), N_TEST, str(path.relative_to(writer.root)), None,
            train_idx.tolist(), test_idx.tolist(), train_labels.tolist(), test_labels.tolist(), test_labels.tolist(),
            match, 0.5, {"synthetic": True}), topk)
        writer.record_thumbnails([_thumbnail(rng, spec["target"], "train", int(i)) for i in train_idx])
    writer.record_thumbnails([_thumbnail(rng, spec["target"], "test", i) for i in range(N_TEST)])


def _thumbnail(rng: np.random.Generator, dataset: str, split: str, idx: int) -> rec.ThumbnailRecord:
    """A made-up image whose label is idx % CLASSES."""
    return rec.ThumbnailRecord(dataset, split, idx, idx % CLASSES, _png(rng, idx % CLASSES))


def write_explorer_cache(root: Path) -> Path:
    """Fill `root` with the synthetic cache described in the module docstring; returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    runs: dict[tuple, rec.RunRecord] = {}
    curves: list[list[rec.CurvePoint]] = []
    with CacheWriter(root) as writer:
        for name, constraint, steps, clean, _ in SOURCES:
            writer.record_source_model(rec.SourceRecord(name, "small_resnet", constraint, steps, "fmnist", f"synthetic-{name}",
                                                    f"sources/{name}.safetensors", clean, 1.0, {"synthetic": True}))
            writer.record_robustness([
                rec.RobustnessRecord(name, "fmnist", "none", 0.0, 0, clean, 100),
                rec.RobustnessRecord(name, "fmnist", "l2", 1.5, 3, clean * (0.2 if constraint == "none" else 0.7), 100)])
        grid = [(s[0], t) for s in SOURCES for t in ALL_SOURCE_TARGETS] + \
               [(s, t) for s in ("natural", "l2_1.5") for t in PAIR_TARGETS]
        for source, target in grid:
            for n_train in SIZES:
                for blocks in BLOCKS:
                    for i in range(len(SEEDS)):
                        run, curve = _run(source, target, n_train, blocks, i)
                        runs[(source, target, n_train, blocks, i)] = run
                        curves.append(curve)
        writer.record_runs(list(runs.values()), curves)
        failed = rec.RunRecord("finetune-failed", "failed", "natural", "mnist5k", 20, 1, 1, 9, error="RuntimeError: synthetic")
        writer.record_run(failed, [])
        _influence(writer, runs, rng)
        writer.record_thumbnails([_thumbnail(rng, t, "test", 1000 + c) for t in PAIR_TARGETS for c in range(CLASSES)])
        writer.record_featviz([rec.FeatvizRecord("featviz-synthetic", m, seed, unit, 4, 0.05, to_png(rng.random((3, 32, 32))),
                                             to_png(rng.random((3, 32, 32))))
                               for m in ("natural", "l2_1.5") for seed in ("chelsea", "coffee") for unit in (0, 1)])
    return root
