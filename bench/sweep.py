"""Fine-tuned runs per minute on the demo grid: the project's sweep vs a naive loop, in the same process.

The project's sweep caches the frozen prefix's activations (exact without augmentation, see
compute/finetune.py) and shares them across runs with the same (source, target, blocks); the naive loop
trains every run independently through the whole model. Both run the same sample of the demo plan, and
their final accuracies are compared run by run.

    python bench/sweep.py [--runs 24]

Uses the demo's source models when the cache holds them, else randomly initialised ones (labelled).
"""

from __future__ import annotations

import compute  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch starts its threads)
import argparse
import time
from dataclasses import replace

import torch

from compute.cache import CacheReader
from compute.finetune import PREFIX_CACHE, finetune
from compute.models import build_model, load_checkpoint
from compute.paths import cache_dir
from compute.presets import get_preset
from compute.sweep import plan


def sources_for(names: set[str]) -> tuple[dict[str, torch.nn.Module], str]:
    reader = CacheReader(cache_dir())
    rows = reader.source_models()
    if not reader.empty and names <= set(rows["name"]):
        paths = dict(zip(rows["name"], rows["path"], strict=True))
        return {n: load_checkpoint(reader.artefact(paths[n]))[0] for n in names}, "demo source models from the cache"
    return {n: build_model("small_resnet", 10, seed=i).eval() for i, n in enumerate(sorted(names))}, \
        "randomly initialised small_resnet sources (cache has no demo sources)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=24, help="how many runs of the demo plan to time (evenly spaced)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    preset = get_preset("demo")
    configs = plan(preset, {s.name: f"bench-{s.name}" for s in preset.sources})
    sample = configs[:: max(1, len(configs) // args.runs)][: args.runs]
    sources, label = sources_for({c.source for c in sample})
    print(f"demo plan: {len(configs)} runs; timing {len(sample)} evenly spaced runs; {label}; "
          f"{torch.get_num_threads()} threads, device cpu")

    timings: dict[str, float] = {}
    accuracies: dict[str, list[float]] = {}
    for name, use_cache in (("naive loop", False), ("rtx sweep", True)):
        PREFIX_CACHE._store.clear()
        start = time.perf_counter()
        accuracies[name] = [finetune(sources[c.source], replace(c, feature_cache=use_cache)).final_test_acc
                            for c in sample]
        timings[name] = time.perf_counter() - start

    base = len(sample) / timings["naive loop"] * 60
    fast = len(sample) / timings["rtx sweep"] * 60
    diff = max(abs(a - b) for a, b in zip(accuracies["naive loop"], accuracies["rtx sweep"], strict=True))
    print(f"{'method':<12} {'seconds':>8} {'runs/min':>9} {'speed-up':>9}")
    print(f"{'naive loop':<12} {timings['naive loop']:8.1f} {base:9.1f} {1.0:9.2f}x")
    print(f"{'rtx sweep':<12} {timings['rtx sweep']:8.1f} {fast:9.1f} {fast / base:9.2f}x")
    print(f"max |final accuracy difference| over {len(sample)} runs: {diff:.4f} "
          "(same semantics: no augmentation, frozen BN statistics)")
    print(f"estimated demo fine-tuning stage: {len(configs) / fast:.1f} min at this speed")


if __name__ == "__main__":
    main()
