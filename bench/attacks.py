"""Adversarial-training cost: training images/s for natural, PGD(1), PGD(3), PGD(7) (and Gaussian).

The demo architecture (small_resnet) on Fashion-MNIST 28x28, batch 128, channels_last, through the same
`train_step` that `rtx train-source` uses. PGD(k) costs k extra forward+backward passes per batch, so the
physical expectation is a cost of about k + 1 times natural; the attack's backward passes compute no weight
gradients, so the measured ratio is somewhat lower. Rounds are interleaved and the best round per setting
is kept, which damps the noise of other processes sharing the CPU.

The demo-source estimate multiplies each demo source's image-passes (train_size x epochs) by its measured
cost and adds clean evaluation; `--measure` trains the six demo sources for real in a temporary cache.

    python bench/attacks.py [--batches 20] [--rounds 3] [--measure] [--threads N]
"""

from __future__ import annotations

import compute  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch starts its threads)
import argparse
import tempfile
import time
from pathlib import Path

import torch

from compute.attacks import OnPixels, parse_constraint
from compute.data import load_dataset
from compute.models import build_model
from compute.presets import DEMO_SOURCES
from compute.train_source import train_source, training_perturbation
from compute.training import train_step

SETTINGS = {"natural": "none", "gaussian": "gaussian:0.054", "PGD(1)": "l2:1.5", "PGD(3)": "l2:1.5",
            "PGD(7)": "l2:1.5"}
STEPS = {"natural": 0, "gaussian": 0, "PGD(1)": 1, "PGD(3)": 3, "PGD(7)": 7}


def images_per_second(setting: str, x: torch.Tensor, y: torch.Tensor, batches: int, batch: int = 128) -> float:
    """Train a fresh small_resnet for `batches` steps (after 3 warm-up steps); returns images/s."""
    model = build_model("small_resnet", 10, seed=0).to(memory_format=torch.channels_last)
    pixels = OnPixels(model, model.input_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    attack = parse_constraint(SETTINGS[setting], STEPS[setting])
    generator = torch.Generator().manual_seed(0)
    model.train()
    start = 0.0
    for b in range(batches + 3):
        if b == 3:
            start = time.perf_counter()
        i = (b * batch) % (len(y) - batch)
        train_step(pixels, optimizer, x[i:i + batch], y[i:i + batch], training_perturbation(pixels, attack, generator))
    return batches * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="timed batches per setting and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best is kept")
    parser.add_argument("--measure", action="store_true", help="also train the six demo sources for real")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train = load_dataset("fmnist", "train")
    x, y = train.images[:12_800], train.labels[:12_800]
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for setting in SETTINGS:
            best[setting] = max(best.get(setting, 0.0), images_per_second(setting, x, y, args.batches))
    natural = best["natural"]
    print(f"small_resnet, Fashion-MNIST 28x28, batch 128, {torch.get_num_threads()} threads, "
          f"best of {args.rounds} rounds x {args.batches} batches")
    print(f"{'setting':<10} {'images/s':>9} {'cost vs natural':>16} {'expected (k+1)':>15}")
    for setting, ips in best.items():
        print(f"{setting:<10} {ips:9.0f} {natural / ips:15.2f}x {STEPS[setting] + 1:14d}x")

    # Estimate of the demo preset's source training from the measured rates.
    total = 0.0
    test_seconds = 10_000 / (3 * natural)  # clean test accuracy: inference only, about 3x a training step
    print("\ndemo sources (estimate from the rates above):")
    for spec in DEMO_SOURCES:
        kind = "natural" if spec.constraint == "none" else "gaussian" if spec.constraint.startswith("gaussian") \
            else f"PGD({spec.attack_steps})"
        passes = (spec.train_size or len(train)) * spec.epochs
        seconds = passes / best.get(kind, natural) + test_seconds
        total += seconds
        print(f"  {spec.name:<16} {kind:<9} {passes:>7} images  ~{seconds:6.1f} s")
    print(f"  total ~{total:.0f} s (budget 240 s on 2 cores)")

    if args.measure:
        # CPU seconds of this process next to wall seconds: with one thread and a busy machine, CPU time is
        # what the same work takes on an idle core (wall time then mostly measures the other processes).
        start, cpu_start = time.perf_counter(), time.process_time()
        with tempfile.TemporaryDirectory() as tmp:
            for spec in DEMO_SOURCES:
                t0, c0 = time.perf_counter(), time.process_time()
                row = train_source(spec, Path(tmp), progress=False)
                print(f"  measured {spec.name:<16} {time.perf_counter() - t0:6.1f} s wall, "
                      f"{time.process_time() - c0:6.1f} s CPU, clean acc {row['clean_acc']:.3f}")
        print(f"  measured total {time.perf_counter() - start:.0f} s wall, {time.process_time() - cpu_start:.0f} s CPU "
              "(including data loading and clean evaluation)")


if __name__ == "__main__":
    main()
