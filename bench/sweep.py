"""Fine-tuned runs per minute on the demo grid: the project's sweep vs a naive loop, in the same process.

- naive loop: one independent training per run through the whole model (a plain `for` loop over the
  plan, torch's default threads), the baseline.
- rtx sweep, 1 process: the sweep's local executor in this process. It caches the frozen prefix's
  activations (exact without augmentation, see compute/finetune.py) and shares them across the runs of
  one (source, target, blocks) group.
- rtx sweep, N processes: the same executor with N worker processes of one torch thread each, what
  `rtx precompute` does on a CPU by default (worker start-up included in the time).

All three run the same whole groups of the demo plan (so the prefix cache is used as in a real sweep),
after the datasets are loaded once, and their final accuracies are compared run by run.

    python bench/sweep.py [--sources natural,l2_1.5] [--targets mnist5k] [--workers N]

Uses the demo's source models when the cache holds them, else randomly initialised ones (labelled).
"""

from __future__ import annotations

import compute  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch starts its threads)
import argparse
import time
from dataclasses import replace

import torch

from compute.cache import CacheReader
from compute.data import load_dataset
from compute.finetune import FinetuneConfig, finetune
from compute.replicas import family_of
from compute.models import Classifier, build_model, load_checkpoint
from compute.paths import cache_dir
from compute.presets import get_preset
from compute.settings import Settings, default_workers
from compute.sweep import plan, run_local


def sources_for(names: set[str]) -> tuple[dict[str, Classifier], str]:
    reader = CacheReader(cache_dir())
    rows = reader.source_models()
    if not reader.empty and names <= set(rows["name"]):
        paths = dict(zip(rows["name"], rows["path"], strict=True))
        return {n: load_checkpoint(reader.artefact(paths[n]))[0] for n in names}, "demo source models from the cache"
    return {n: build_model("small_resnet", 10, seed=i).eval() for i, n in enumerate(sorted(names))}, \
        "randomly initialised small_resnet sources (cache has no demo sources)"


def time_sweep(configs: list[FinetuneConfig], sources: dict[str, Classifier], workers: int) -> tuple[float, list[float]]:
    """Seconds and final accuracies (in plan order) of the sweep's local executor."""
    start = time.perf_counter()
    results = {cfg.key: outcome for cfg, outcome in
               run_local([(c, False) for c in configs], sources.__getitem__, Settings(workers=workers, progress=False))}
    seconds = time.perf_counter() - start
    failed = [str(r) for r in results.values() if isinstance(r, BaseException)]
    if failed:
        raise SystemExit(f"{len(failed)} runs failed, first: {failed[0]}")
    return seconds, [results[c.key].final_test_acc for c in configs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="natural,l2_1.5", help="demo sources whose groups are timed")
    parser.add_argument("--targets", default="mnist5k", help="demo targets whose groups are timed")
    parser.add_argument("--workers", type=int, default=default_workers("cpu"), help="worker processes (default: cores)")
    args = parser.parse_args()
    preset = get_preset("demo")
    sources_wanted, targets = set(args.sources.split(",")), set(args.targets.split(","))
    demo_plan = plan(preset, {s.name: f"bench-{s.name}" for s in preset.trained_sources()})
    configs = [c for c in demo_plan if family_of(c.source) in sources_wanted and c.target in targets]
    all_runs = len(demo_plan)
    sources, label = sources_for(sources_wanted)
    for target in targets:
        load_dataset(target, "train"), load_dataset(target, "test")
    groups = len({(c.source, c.target, c.blocks) for c in configs})
    print(f"demo plan: {all_runs} runs; timing {len(configs)} runs = {groups} whole (source, target, blocks) groups; "
          f"{label}; {torch.get_num_threads()} torch threads in this process, {args.workers} workers, device cpu")

    start = time.perf_counter()
    naive = [finetune(sources[c.source], replace(c, feature_cache=False)).final_test_acc for c in configs]
    rows = [("naive loop", time.perf_counter() - start, naive)]
    rows.append(("rtx sweep, 1 process", *time_sweep(configs, sources, 1)))
    rows.append((f"rtx sweep, {args.workers} processes", *time_sweep(configs, sources, args.workers)))

    base = len(configs) / rows[0][1] * 60
    print(f"{'method':<24} {'seconds':>8} {'runs/min':>9} {'speed-up':>9} {'max |acc diff|':>15}")
    for name, seconds, accs in rows:
        rate = len(configs) / seconds * 60
        diff = max(abs(a - b) for a, b in zip(naive, accs, strict=True))
        print(f"{name:<24} {seconds:8.1f} {rate:9.1f} {rate / base:8.2f}x {diff:15.4f}")
    fastest = len(configs) / rows[-1][1] * 60
    print("same semantics in all rows: no augmentation, frozen BN statistics (accuracy differences are float rounding)")
    print(f"estimated demo fine-tuning stage: {all_runs / fastest:.1f} min at the fastest rate")


if __name__ == "__main__":
    main()
