"""A preset's precompute, stage by stage, beside the machine it ran on: the README's `make demo` figure.

    python bench/precompute.py [--preset demo] [--cache DIR] [--threads N]

Runs `rtx precompute`'s stages into a fresh cache (a temporary folder unless --cache names an empty one) and
prints each stage's wall-clock time. Baseline, measured in the same run on the same machine: how many images per
second a small ResNet trains at 28x28 (the work most of the demo's stages consist of), so that figures from two
machines can be told apart from two machines' speeds. The machine line names the CPU and the load average:
other jobs slow every figure down.
"""

from __future__ import annotations

import compute  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch starts its threads)
import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from compute.machine import describe
from compute.models import build_model
from compute.presets import get_preset, preset_names
from compute.settings import Settings
from compute.stages import precompute


def baseline_images_per_second(seconds: float = 5.0, batch: int = 128) -> float:
    """Training throughput of the small ResNet (ENVIRONMENT.md: ~3,700 img/s on 2 idle AMD EPYC cores)."""
    model = build_model("small_resnet", 10, seed=0).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        images += batch
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", choices=preset_names())
    parser.add_argument("--cache", type=Path, help="an empty folder to fill (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of this process (0: torch's default; "
                        "worker processes run one each)")
    args = parser.parse_args()
    print(f"machine: {describe()}")
    if args.threads:
        torch.set_num_threads(args.threads)
    rate = baseline_images_per_second()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.cache or Path(tmp)
        start = time.perf_counter()
        # the settings `rtx precompute` uses (worker processes per core, $RTX_DATA ...), bars off
        times = precompute(get_preset(args.preset), root, Settings.from_env(progress=False))
        total = time.perf_counter() - start
    print(f"\nprecompute --preset {args.preset} on {describe()}")
    print(f"baseline: small ResNet training {rate:,.0f} images/s (28x28, batch 128, this run)")
    for t in times:
        print(f"  {t.stage:<11} {t.seconds:7.1f} s")
    print(f"  {'total':<11} {total:7.1f} s")


if __name__ == "__main__":
    main()
