"""What the paper's grid costs on this device: a naive authors'-style loop vs the engine with 1 and R runs.

Measured in one process on one device, printed as tables:
1. Rates (images/s) for ResNet-50 with 0, 1, 3 and 9 blocks fine-tuned, training and evaluation separately:
   `naive`  as close to the authors' loop as one process gets: fp32, one run, the whole model in train mode every
            step (frozen BatchNorm statistics drift, as in their code), the whole test set through the whole
            model at every evaluation; the augmentation runs on the device (theirs ran in CPU data workers).
   `engine-1 train-bn` / `engine-R train-bn`: compute.engine with the `paper` preset's recipe (bn_mode='train'),
            1 run and R runs per call, with the engine's default strategy `auto` (the R column says which of vmap
            and loop it picked); `engine-R train-bn vmap` / `... loop`: the same R runs with each strategy forced
            (full size, or `--loop`); `engine-R frozen-bn`: the frozen-statistics variant (cached prefix
            activations for evaluation, and for training on grey targets, which have no augmentation).
   Colour rows use the `paper` augmentation on 3-channel 32x32 images; grey rows 1-channel 28x28 images, which
   the paper's recipe does not augment. Images are synthetic (random uint8): speed does not depend on content.
2. Whole-run seconds for n = 100 (100 epochs, 6 evaluations) and n = 3,200 (150 epochs, 16 evaluations) on a
   10,000-image test set, EXTRAPOLATED from the measured rates (no run of that length happens here).
3. The paper's grid (4 sources x 6 targets x 10 sizes x Table 4 seeds, per blocks setting, grey vs colour) in
   device-hours, EXTRAPOLATED from the measured rates.
4. The forward pass's achieved TFLOP/s (FLOPs counted by torch.utils.flop_counter) against the device's dense
   bf16 peak where known.

`--compile` prints only the frozen-BatchNorm rows with and without torch.compile of the prefix (the engine's
`compile_prefix`, `rtx precompute --compile`), and the compilation's cost on a cell's first group.

`--quick` runs it at small sizes (input 64, 8 images, 2 runs) so the test suite can run it on a CPU in seconds;
its figures say nothing about a GPU. Imports only torch, torchvision, numpy, tqdm and compute modules that import
only those (the GPU machine has no duckdb/streamlit/pandas); tests/test_bench_gpu_finetune.py checks this.

Run: `python bench/gpu_finetune.py` (full size; on a GPU) or `python bench/gpu_finetune.py --quick`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import compute  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch starts its threads)
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from compute.data.augment import train_input  # noqa: E402
from compute.data.registry import DATASETS, DatasetInfo, register  # noqa: E402
from compute.data.transforms import to_model_input  # noqa: E402
from compute.engine import RunGroup, group_size, synchronize  # noqa: E402
from compute.finetune import FinetuneConfig, autocast, prepare_model  # noqa: E402
from compute.settings import resolve_device  # noqa: E402
from compute.models import build_model  # noqa: E402
from compute.presets import PAPER_SIZES, PAPER_TARGETS, paper_schedule  # noqa: E402

# Dense bf16 matrix-multiply peaks (TFLOP/s, without sparsity) from the vendors' data sheets; longest match wins.
BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}
TEST_SET = 10_000


@dataclass(frozen=True)
class Rate:
    """Measured images per second (summed over the runs of a call) for training and evaluation."""

    train: float
    eval: float
    strategy: str = ""  # the engine's strategy (what `auto` picked); "" for the naive loop


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    matches = [key for key in BF16_PEAK_TFLOPS if key in name]
    return BF16_PEAK_TFLOPS[max(matches, key=len)] if matches else None


def _synthetic_loader(channels: int, size: int, n_train: int, n_test: int):
    def load(split: str, root: object, download: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
        n = n_train if split == "train" else n_test
        gen = torch.Generator().manual_seed(0 if split == "train" else 1)
        images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=gen).float() / 255
        return images, torch.arange(n) % 10, "synthetic"
    return load


def register_synthetic(n_train: int, n_test: int) -> dict[str, str]:
    """Colour (3x32x32) and grey (1x28x28) synthetic targets, 10 classes; returns {'colour': name, 'grey': name}."""
    names = {"colour": f"bench_rgb_{n_train}_{n_test}", "grey": f"bench_grey_{n_train}_{n_test}"}
    for kind, (channels, size) in {"colour": (3, 32), "grey": (1, 28)}.items():
        if names[kind] not in DATASETS:
            register(DatasetInfo(names[kind], tuple(map(str, range(10))), n_train, n_test, channels, size, True,
                                 _synthetic_loader(channels, size, n_train, n_test)))
    return names


def measure_naive(source: nn.Module, cfg: FinetuneConfig, device: torch.device, epochs: int) -> Rate:
    """The authors'-style loop: fp32, one run, the whole model in train mode every step, whole-model evaluation."""
    from compute.data import load_dataset

    train, test = load_dataset(cfg.target, "train"), load_dataset(cfg.target, "test")
    model = prepare_model(source, cfg, 10, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    images, labels = train.images.to(device), train.labels.to(device)
    model.train()
    start = 0.0
    for epoch in range(epochs + 1):  # epoch 0: warm-up, not timed (allocator, first-call overheads)
        if epoch == 1:
            synchronize(device)
            start = time.perf_counter()
        order = torch.randperm(len(labels), generator=gen).to(device)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            loss = nn.functional.cross_entropy(model(train_input(images[idx], cfg.augment, model.input_size, gen)),
                                               labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            float(loss.detach())  # the authors' loop reads the loss every step (a host sync)
    synchronize(device)
    train_s = time.perf_counter() - start
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(test.labels), 256):
            model(to_model_input(test.images[i:i + 256].to(device), model.input_size)).argmax(1).cpu()
    eval_s = time.perf_counter() - start
    return Rate(epochs * len(labels) / train_s, len(test.labels) / eval_s)


def measure_engine(source: nn.Module, cfgs: list[FinetuneConfig], device: torch.device, epochs: int,
                   strategy: str = "auto", compile_prefix: bool = False) -> Rate:
    """compute.engine: `epochs` epochs timed after an untimed set-up and warm-up epoch (a run has 100 or 150 epochs
    to amortise its set-up); evaluation timed on its second call (the frozen-prefix cache fills once per cell)."""
    group = RunGroup(source, cfgs, device, strategy=strategy, compile_prefix=compile_prefix)
    group.train_epoch().tolist()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(epochs):
        group.train_epoch().tolist()
    synchronize(device)
    train_s = time.perf_counter() - start
    group.evaluate().tolist()  # fills the frozen-prefix test cache (once per cell in a sweep)
    start = time.perf_counter()
    group.evaluate().tolist()
    eval_s = time.perf_counter() - start
    n, n_test = group.subset_dev.shape[1], len(group.test.labels)
    return Rate(len(cfgs) * epochs * n / train_s, len(cfgs) * n_test / eval_s, group.strategy)


def forward_tflops(source: nn.Module, size: int, batch: int, device: torch.device, precision: str) -> tuple[float, float]:
    """(GFLOP per image of one forward pass, achieved TFLOP/s of eval-mode forward passes)."""
    model = build_model("resnet50", 10, input_size=size).to(device).eval()
    model.load_state_dict({k: v for k, v in source.state_dict().items() if not k.startswith("net.fc")}, strict=False)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, size, size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x[:1])
    gflop = counter.get_total_flops() / 1e9
    cfg = FinetuneConfig("s", "x", "t", 1, 0, 0, 1, 1, precision=precision)
    with torch.no_grad(), autocast(cfg, device):
        model(x)  # warm-up
        synchronize(device)
        start, reps = time.perf_counter(), 3
        for _ in range(reps):
            model(x)
        synchronize(device)
    return gflop, gflop * batch * reps / (time.perf_counter() - start) / 1e3


def grid_work(blocks: int) -> dict[str, tuple[float, float]]:
    """The paper's grid for one blocks setting: {'grey'|'colour': (training image passes, evaluation passes)}."""
    work = {"grey": [0.0, 0.0], "colour": [0.0, 0.0]}
    for target in PAPER_TARGETS:
        info = DATASETS[target]
        kind = "colour" if info.channels == 3 else "grey"
        for n in (*PAPER_SIZES, None):
            schedule = paper_schedule(n)
            evals = len(FinetuneConfig("s", "x", target, n, 0, blocks, schedule.epochs, schedule.test_every)
                        .eval_epochs())
            runs = 4 * schedule.seeds  # four source models
            work[kind][0] += runs * schedule.epochs * (n or info.train_size)
            work[kind][1] += runs * evals * info.test_size
    return {k: (v[0], v[1]) for k, v in work.items()}


def hours(work: tuple[float, float], rate: Rate) -> float:
    return (work[0] / rate.train + work[1] / rate.eval) / 3600


def scan_group(device: torch.device, runs: list[int], n: int = 256, epochs: int = 3) -> None:
    """Training rate of small_resnet (28x28, digits, frozen BN, no augmentation) per group size R: picks CPU_GROUP."""
    source = build_model("small_resnet", 10, seed=0).eval()
    print(f"group-size scan: small_resnet on digits, {n} images x {epochs} epochs, batch 32, {device}")
    base = None
    for count in [runs[0], *runs]:  # the first is a warm-up (dataset load, allocator), not printed
        cfgs = [FinetuneConfig("scan", "x", "digits", n, 20_000_000 + 100_000 * i, 1, epochs, epochs, batch_size=32,
                               augment="none") for i in range(count)]
        rate = measure_engine(source, cfgs, device, epochs).train
        if base is None:
            base = 0.0
            continue
        base = base or rate
        print(f"  R={count:>2}: {rate:8.1f} train img/s ({rate / base:.2f}x R={runs[0]})")
    from compute.finetune import finetune  # baseline: today's one-run loop with its frozen-prefix feature cache

    cfg = replace(cfgs[0], feature_cache=True)
    finetune(source, cfg, device=str(device))  # warm-up: fills the prefix cache, as a sweep's first run does
    start = time.perf_counter()
    finetune(source, cfg, device=str(device))
    seconds = time.perf_counter() - start
    print(f"  compute.finetune.finetune (one run, feature cache, includes its evaluations): "
          f"{n * epochs / seconds:8.1f} train img/s")


def compare_compile(source: nn.Module, cfg: Callable[..., FinetuneConfig], runs: int, blocks: list[int],
                    device: torch.device, epochs: int) -> None:
    """The engine's frozen-BatchNorm rows with and without torch.compile of the prefix (`--compile`), and what the
    first group of a cell pays to compile (set-up, warm-up epoch and first evaluation, compiled minus eager)."""
    print("| blocks | target | R | train img/s eager | compiled | eval img/s eager | compiled | first-call s eager |"
          " compiled |\n|---|---|---|---|---|---|---|---|---|")
    for k in blocks:
        for kind in ("colour", "grey"):
            cfgs = [cfg(kind, k, "frozen", 20_000_000 + 100_000 * i) for i in range(runs)]
            rates, first = {}, {}
            for compiled in (False, True):
                torch._dynamo.reset()  # each compiled row pays its own compilation, as a new process would
                start = time.perf_counter()
                group = RunGroup(source, cfgs, device, compile_prefix=compiled)
                group.train_epoch().tolist()
                group.evaluate().tolist()
                first[compiled] = time.perf_counter() - start
                rates[compiled] = measure_engine(source, cfgs, device, epochs, compile_prefix=compiled)
            print(f"| {k} | {kind} | {runs} | {rates[False].train:.1f} | {rates[True].train:.1f} | "
                  f"{rates[False].eval:.1f} | {rates[True].eval:.1f} | {first[False]:.1f} | {first[True]:.1f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a CPU (input 64, 8 images, 2 runs)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--blocks", type=int, nargs="+", default=[0, 1, 3, 9],
                        help="blocks settings to time (the dry run needs all four for a whole-grid estimate)")
    parser.add_argument("--runs", type=int, default=None, help="R, runs per call (default: from free memory)")
    parser.add_argument("--loop", action="store_true", help="with --quick: also time the engine's loop strategy")
    parser.add_argument("--compile", action="store_true", help="only compare the frozen-BatchNorm engine with and "
                        "without torch.compile of the prefix (whether `rtx precompute --compile` pays here)")
    parser.add_argument("--scan-group", type=int, nargs="+", default=None, metavar="R",
                        help="only time small_resnet with these group sizes (how CPU_GROUP was chosen)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.scan_group:
        scan_group(device, args.scan_group)
        return
    torch.manual_seed(0)
    if args.quick:
        size, n, n_test, epochs, batch, runs, fwd_batch = 64, 8, 8, 1, 8, args.runs or 2, 4
    else:
        size, n, n_test, epochs, batch, runs, fwd_batch = 224, 512, 2_048, 2, 128, args.runs, 256
    precision = "bf16" if device.type == "cuda" else "fp32"
    names = register_synthetic(n, n_test)
    source = build_model("resnet50", 1000, input_size=size, seed=0).eval()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device_name} ({device}); torch {torch.__version__}; ResNet-50 at {size}x{size}; "
          f"{n} training images x {epochs} epoch(s), batch {batch}; {n_test} test images; precision {precision}")
    print("Colour = `paper` augmentation on 3x32x32; grey = 1x28x28, no augmentation. Synthetic images.\n")

    def cfg(kind: str, blocks: int, bn_mode: str, seed: int = 20_000_000, prec: str = precision) -> FinetuneConfig:
        return FinetuneConfig("bench", "x", names[kind], n, seed, blocks, epochs, 1, batch_size=batch,
                              augment="paper", bn_mode=bn_mode, fc_init="normal", lr_schedule="step", precision=prec)

    if args.compile:
        compare_compile(source, cfg, runs or group_size(source, cfg("colour", max(args.blocks), "frozen"), 64, device),
                        args.blocks, device, epochs)
        return
    rates: dict[tuple[str, int, str], Rate] = {}
    r_used: dict[int, int] = {}
    print(f"### {device_name}  (paste under this heading in bench/RESULTS.md: `rtx precompute --dry-run` reads these rows)")
    print("| blocks | loop | target | R | train img/s | eval img/s |\n|---|---|---|---|---|---|")
    for blocks in args.blocks:
        r = runs or group_size(source, cfg("colour", blocks, "train"), 64, device)
        r_used[blocks] = r
        rows = [("naive", "colour", 1, lambda k=blocks: measure_naive(source, cfg("colour", k, "train", prec="fp32"),
                                                                      device, epochs))]
        for kind in ("colour", "grey"):
            for loop, bn, count in (("engine-1 train-bn", "train", 1), ("engine-R train-bn", "train", r),
                                    ("engine-R frozen-bn", "frozen", r)):
                seeds = [20_000_000 + 100_000 * i for i in range(count)]
                rows.append((loop, kind, count, lambda k=blocks, b=bn, s=seeds, t=kind: measure_engine(
                    source, [cfg(t, k, b, seed) for seed in s], device, epochs)))
        if not args.quick or args.loop:  # each strategy forced: grouped convolutions (vmap), dense ones (loop)
            seeds = [20_000_000 + 100_000 * i for i in range(r)]
            for strategy in ("vmap", "loop"):
                rows.append((f"engine-R train-bn {strategy}", "colour", r, lambda k=blocks, s=seeds, st=strategy:
                             measure_engine(source, [cfg("colour", k, "train", seed) for seed in s], device, epochs, st)))
        for loop, kind, count, measure in rows:
            rate = measure()
            rates[(loop, blocks, kind)] = rate
            runs_cell = f"{count} ({rate.strategy})" if loop.startswith("engine-R") and loop.endswith("-bn") else count
            print(f"| {blocks} | {loop} | {kind} | {runs_cell} | {rate.train:.1f} | {rate.eval:.1f} |")
        rates[("naive", blocks, "grey")] = replace(rates[("naive", blocks, "colour")])  # same model cost, no augmentation

    print("\nWhole-run seconds, EXTRAPOLATED from the rates above (colour target, 10,000 test images):")
    print(f"{'blocks':>6}  {'loop':<22} {'n=100 (100 ep, 6 evals)':>24} {'n=3,200 (150 ep, 16 evals)':>27}")
    for blocks in args.blocks:
        for loop in ("naive", "engine-1 train-bn", "engine-R train-bn", "engine-R frozen-bn"):
            rate, count = rates[(loop, blocks, "colour")], r_used[blocks] if loop.startswith("engine-R") else 1
            small = count * (100 * 100 / rate.train + 6 * TEST_SET / rate.eval)
            large = count * (150 * 3_200 / rate.train + 16 * TEST_SET / rate.eval)
            print(f"{blocks:>6}  {loop:<22} {small:>24.0f} {large:>27.0f}")
    print("(engine-R: wall seconds until all R runs of the group finish together)")

    print(f"\nThe paper's grid in {device_name}-hours, EXTRAPOLATED from the rates above:")
    print(f"{'blocks':>6} {'targets':<7} {'train passes':>13} {'eval passes':>12} {'naive':>9} "
          f"{'engine train-bn':>16} {'engine frozen-bn':>17} {'speed-up':>9}")
    totals = {"naive": 0.0, "engine-R train-bn": 0.0, "engine-R frozen-bn": 0.0}
    for blocks in args.blocks:
        for kind, work in grid_work(blocks).items():
            h = {loop: hours(work, rates[(loop, blocks, kind)]) for loop in totals}
            for loop in totals:
                totals[loop] += h[loop]
            print(f"{blocks:>6} {kind:<7} {work[0]:>13.3g} {work[1]:>12.3g} {h['naive']:>9.1f} "
                  f"{h['engine-R train-bn']:>16.1f} {h['engine-R frozen-bn']:>17.1f} "
                  f"{h['naive'] / h['engine-R train-bn']:>8.1f}x")
    print(f"{'sum over the blocks settings measured':<41} {totals['naive']:>9.1f} {totals['engine-R train-bn']:>16.1f} "
          f"{totals['engine-R frozen-bn']:>17.1f} {totals['naive'] / totals['engine-R train-bn']:>8.1f}x")

    gflop, tflops = forward_tflops(source, size, fwd_batch, device, precision)
    peak = peak_tflops(device)
    share = f"{100 * tflops / peak:.1f}% of the dense bf16 peak {peak:.0f} TFLOP/s" if peak else \
        "bf16 peak: unknown for this device"
    print(f"\nForward pass (eval, batch {fwd_batch}, {precision}): {gflop:.2f} GFLOP per image at {size}x{size}; "
          f"{tflops:.3f} TFLOP/s achieved; {share}")


if __name__ == "__main__":
    main()
