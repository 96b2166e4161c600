"""What the paper's grid costs on this device: a naive authors'-style loop vs the engine with 1 and R runs.

Measured in one process on one device, printed as tables:
1. Rates (images/s) for ResNet-50 with the blocks settings asked for (0, 9, 3, 1 by default, in that order: a
   deadline cuts the last), training and evaluation separately:
   `naive`  as close to the authors' loop as one process gets: fp32, one run, the whole model in train mode every
            step (frozen BatchNorm statistics drift, as in their code), the whole test set through the whole
            model at every evaluation (timed warm, as the engine's: after one untimed pass). Its augmentation runs
            on the device; the authors' ran on PIL images in 10 DataLoader workers: the `pil-augment` row is
            their transforms' rate in ONE CPU process (10 workers give at most 10x), which bounds their loop's
            training rate wherever it is below the naive row's.
   `engine-1 train-bn` / `engine-R train-bn`: compute.engine with the `paper` preset's recipe (bn_mode='train'),
            1 run and R runs per call, with the engine's default strategy `auto` (the R column says which of vmap
            and loop it picked); `engine-R train-bn vmap` / `... loop`: the same R runs with each strategy forced
            (full size, or `--loop`); `engine-R frozen-bn`: the frozen-statistics variant (cached prefix
            activations for evaluation, and for training on grey targets, which have no augmentation).
   Colour rows use the `paper` augmentation on 3-channel 32x32 images; grey rows 1-channel 28x28 images, which
   the paper's recipe does not augment. Images are synthetic (random uint8): speed does not depend on content.
   Each engine row also measures its fixed costs: `setup s` (a group's set-up: data to the device, models, the
   `auto` strategy's timing, a static prefix's cache) and `fill s` (the first evaluation's extra time: the test
   images' prefix cache, once per cell); `probe s` (the memory probe, once per cell shape) is printed per blocks.
2. Whole-run seconds for n = 100 (100 epochs, 6 evaluations) and n = 3,200 (150 epochs, 16 evaluations) on a
   10,000-image test set, EXTRAPOLATED from the measured rates plus the fixed costs of a cell.
3. The paper's grid (4 sources x 6 targets x 10 sizes x Table 4 seeds, per blocks setting, grey vs colour) in
   device-hours, EXTRAPOLATED from the measured rates plus fixed costs per group and per cell.
4. The forward pass's achieved TFLOP/s (FLOPs counted by torch.utils.flop_counter) against the device's dense
   bf16 peak where known (measured first: it takes seconds).

Every row is guarded: an out-of-memory row is recorded as such and the next row runs. `--rows FILE` appends each
row to FILE (JSON lines) as it is measured; `--deadline S` stops starting rows S seconds after the start and names
the rows it cut; `--extrapolate FILE` prints tables 2 and 3 from such a file alone (bench/gpu_session.sh runs it
after the measurement, so a killed measurement still leaves its rows and their extrapolation).

`--compile` prints only the frozen-BatchNorm rows with and without torch.compile of the prefix (the engine's
`compile_prefix`, `rtx precompute --compile`), and the compilation's cost on a cell's first group.

`--quick` runs it at small sizes (input 64, 8 images, 2 runs) so the test suite can run it on a CPU in seconds;
its figures say nothing about a GPU. Imports only torch, torchvision (and its PIL), numpy, tqdm and compute
modules that import only those (the GPU machine has no duckdb/streamlit/gradio);
tests/test_bench_gpu_finetune.py checks this.

Run: `bash bench/gpu_session.sh all` (the GPU session), `python bench/gpu_finetune.py` (full size; on a GPU) or
`python bench/gpu_finetune.py --quick`.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # `--deadline` counts from here: importing torch can take 10 s on a busy machine

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import compute  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch starts its threads)
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from compute.data.augment import train_input  # noqa: E402
from compute.data.registry import DATASETS, DatasetInfo, register  # noqa: E402
from compute.data.transforms import to_model_input  # noqa: E402
from compute.engine import RunGroup, group_size, is_oom, release_memory, synchronize  # noqa: E402
from compute.finetune import FinetuneConfig, autocast, prepare_model  # noqa: E402
from compute.settings import resolve_device  # noqa: E402
from compute.models import build_model  # noqa: E402
from compute.presets import PAPER_SIZES, PAPER_TARGETS, paper_schedule  # noqa: E402

# Dense bf16 matrix-multiply peaks (TFLOP/s, without sparsity) from the vendors' data sheets; longest match wins.
BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}
TEST_SET = 10_000
PIL_WORKERS = 10  # the authors' DataLoader workers
MAX_CELL_RUNS = 20  # the most runs a cell of the paper's grid has (Table 4: 20 seeds up to 1,600 images): R's cap
ENGINE_LOOPS = ("engine-1 train-bn", "engine-R train-bn", "engine-R frozen-bn")


@dataclass(frozen=True)
class Rate:
    """Measured images per second (summed over the runs of a call) for training and evaluation, and an engine
    group's fixed costs (seconds): its set-up, and the first evaluation's extra time (the prefix cache's fill)."""

    train: float
    eval: float
    strategy: str = ""  # the engine's strategy (what `auto` picked); "" for the naive loop
    setup: float = 0.0
    fill: float = 0.0


@dataclass(frozen=True)
class Row:
    """One measured (or cut, or out-of-memory) row of the rate table, as written to `--rows` (one JSON line)."""

    blocks: int
    loop: str
    kind: str
    runs: int
    status: str  # "ok" | "out of memory" | "cut by the deadline"
    rate: Rate | None = None
    probe: float = 0.0  # seconds of the memory probe for this blocks setting (R from free memory), else 0

    def table_line(self) -> str:
        blocks = self.blocks if self.blocks >= 0 else "any"  # the PIL row does not depend on the blocks
        if self.rate is None:
            return f"| {blocks} | {self.loop} | {self.kind} | {self.runs} | {self.status} | {self.status} |"
        r = self.rate
        runs = f"{self.runs} ({r.strategy})" if self.loop.startswith("engine-R") and self.loop.endswith("-bn") else self.runs
        eval_rate = "-" if math.isnan(r.eval) else f"{r.eval:.1f}"
        return f"| {blocks} | {self.loop} | {self.kind} | {runs} | {r.train:.1f} | {eval_rate} |"

    @staticmethod
    def from_json(line: str) -> Row:
        data = json.loads(line)
        rate = data.pop("rate")
        return Row(**data, rate=Rate(**rate) if rate else None)


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    matches = [key for key in BF16_PEAK_TFLOPS if key in name]
    return BF16_PEAK_TFLOPS[max(matches, key=len)] if matches else None


def _synthetic_loader(channels: int, size: int, n_train: int, n_test: int):
    def load(split: str, root: object, download: bool,
             skip_bad_images: bool = False) -> tuple[torch.Tensor, torch.Tensor, str]:
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
    """The authors'-style loop: fp32, one run, the whole model in train mode every step, whole-model evaluation
    (timed on its second pass, as the engine's: the first pays the allocator's and cuDNN's first calls)."""
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
    eval_s = 0.0
    with torch.no_grad():
        for _ in range(2):  # the first pass warms up, the second is timed
            start = time.perf_counter()
            for i in range(0, len(test.labels), 256):
                model(to_model_input(test.images[i:i + 256].to(device), model.input_size)).argmax(1).cpu()
            eval_s = time.perf_counter() - start
    return Rate(epochs * len(labels) / train_s, len(test.labels) / eval_s)


def measure_engine(source: nn.Module, cfgs: list[FinetuneConfig], device: torch.device, epochs: int,
                   strategy: str = "auto", compile_prefix: bool = False) -> Rate:
    """compute.engine: `epochs` epochs timed after an untimed set-up and warm-up epoch (a run has 100 or 150 epochs
    to amortise its set-up); evaluation timed on its second call (the frozen-prefix cache fills once per cell).
    The set-up and the first evaluation's extra time are returned as fixed costs."""
    synchronize(device)
    start = time.perf_counter()
    group = RunGroup(source, cfgs, device, strategy=strategy, compile_prefix=compile_prefix)
    synchronize(device)
    setup_s = time.perf_counter() - start
    group.train_epoch().tolist()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(epochs):
        group.train_epoch().tolist()
    synchronize(device)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    group.evaluate().tolist()  # fills the frozen-prefix test cache (once per cell in a sweep)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    group.evaluate().tolist()
    eval_s = time.perf_counter() - start
    n, n_test = group.data.n_train, len(group.data.test.labels)
    return Rate(len(cfgs) * epochs * n / train_s, len(cfgs) * n_test / eval_s, group.strategy, setup_s,
                max(0.0, first_s - eval_s))


def measure_pil(size: int, images: int) -> Rate:
    """The authors' colour transforms on PIL images in this one process (their loop ran them in 10 DataLoader
    workers): Resize(S), RandomCrop(S, padding=4), RandomHorizontalFlip, ColorJitter(0.25, 0.25, 0.25),
    RandomRotation(2), ToTensor, on 32x32 uint8 images. Training images/s; no evaluation."""
    from PIL import Image
    from torchvision import transforms as T

    tf = T.Compose([T.Resize(size), T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(),
                    T.ColorJitter(0.25, 0.25, 0.25), T.RandomRotation(2), T.ToTensor()])
    gen = torch.Generator().manual_seed(0)
    arrays = torch.randint(0, 256, (images, 32, 32, 3), dtype=torch.uint8, generator=gen).numpy()
    pictures = [Image.fromarray(a) for a in arrays]
    tf(pictures[0])  # warm-up
    start = time.perf_counter()
    for picture in pictures:
        tf(picture)
    return Rate(images / (time.perf_counter() - start), float("nan"))


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


@dataclass(frozen=True)
class GridWork:
    """The paper's grid for one blocks setting and target kind: image passes, and each cell's runs (its groups
    pay the fixed costs: set-up per group of R runs, the prefix cache's fill per cell)."""

    train: float
    eval: float
    cell_runs: tuple[int, ...]


def grid_work(blocks: int) -> dict[str, GridWork]:
    """The paper's grid for one blocks setting: {'grey'|'colour': GridWork}."""
    work: dict[str, list] = {"grey": [0.0, 0.0, []], "colour": [0.0, 0.0, []]}
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
            work[kind][2] += [schedule.seeds] * 4  # one cell per source
    return {k: GridWork(v[0], v[1], tuple(v[2])) for k, v in work.items()}


def hours(work: GridWork, rate: Rate, runs: int) -> float:
    """Device-hours of `work` at `rate`, plus fixed costs: set-up per group of at most `runs` runs, fill per cell."""
    fixed = sum(math.ceil(seeds / runs) * rate.setup + rate.fill for seeds in work.cell_runs)
    evals = work.eval / rate.eval if not math.isnan(rate.eval) else 0.0
    return (work.train / rate.train + evals + fixed) / 3600


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


def extrapolate(rows: list[Row], device_name: str) -> None:
    """Tables 2 and 3 from whatever rows were measured; what is missing is named, not guessed."""
    rates = {(r.loop, r.blocks, r.kind): r.rate for r in rows if r.rate is not None}
    runs = {r.blocks: r.runs for r in rows if r.loop.startswith("engine-R") and r.rate is not None}
    probes = {r.blocks: r.probe for r in rows if r.probe}
    blocks_seen = sorted({r.blocks for r in rows if r.blocks >= 0})
    missing = sorted({f"{r.blocks}/{r.loop}/{r.kind} ({r.status})" for r in rows if r.rate is None})
    print("\nWhole-run seconds, EXTRAPOLATED from the rates above plus a cell's fixed costs (set-up + cache fill) "
          "(colour target, 10,000 test images):")
    print(f"{'blocks':>6}  {'loop':<22} {'n=100 (100 ep, 6 evals)':>24} {'n=3,200 (150 ep, 16 evals)':>27} {'fixed s':>8}")
    for blocks in blocks_seen:
        for loop in ("naive", *ENGINE_LOOPS):
            rate = rates.get((loop, blocks, "colour"))
            if rate is None:
                print(f"{blocks:>6}  {loop:<22} {'not measured':>24}")
                continue
            count = runs.get(blocks, 1) if loop.startswith("engine-R") else 1
            fixed = rate.setup + rate.fill
            small = count * (100 * 100 / rate.train + 6 * TEST_SET / rate.eval) + fixed
            large = count * (150 * 3_200 / rate.train + 16 * TEST_SET / rate.eval) + fixed
            print(f"{blocks:>6}  {loop:<22} {small:>24.0f} {large:>27.0f} {fixed:>8.1f}")
    print("(engine-R: wall seconds until all R runs of the group finish together; the memory probe, once per cell "
          "shape, is not in these: " + (", ".join(f"{b} blocks {s:.1f} s" for b, s in sorted(probes.items())) or "none")
          + ")")

    print(f"\nThe paper's grid in {device_name}-hours, EXTRAPOLATED from the rates above (fixed costs included: "
          "set-up per group, cache fill per cell):")
    print(f"{'blocks':>6} {'targets':<7} {'train passes':>13} {'eval passes':>12} {'naive':>9} "
          f"{'engine train-bn':>16} {'engine frozen-bn':>17} {'speed-up':>9}")
    totals = {"naive": 0.0, "engine-R train-bn": 0.0, "engine-R frozen-bn": 0.0}
    complete = {loop: True for loop in totals}
    for blocks in blocks_seen:
        for kind, work in grid_work(blocks).items():
            h: dict[str, float | None] = {}
            for loop in totals:
                rate = rates.get((loop, blocks, kind))
                h[loop] = hours(work, rate, runs.get(blocks, 1) if loop.startswith("engine") else 1) if rate else None
                if h[loop] is None:
                    complete[loop] = False
                else:
                    totals[loop] += h[loop]
            cells = {loop: f"{v:.1f}" if v is not None else "-" for loop, v in h.items()}
            speed = (f"{h['naive'] / h['engine-R train-bn']:.1f}x" if h["naive"] and h["engine-R train-bn"] else "-")
            print(f"{blocks:>6} {kind:<7} {work.train:>13.3g} {work.eval:>12.3g} {cells['naive']:>9} "
                  f"{cells['engine-R train-bn']:>16} {cells['engine-R frozen-bn']:>17} {speed:>9}")
    speed = f"{totals['naive'] / totals['engine-R train-bn']:.1f}x" if totals["engine-R train-bn"] else "-"
    print(f"{'sum over the blocks settings measured':<41} {totals['naive']:>9.1f} {totals['engine-R train-bn']:>16.1f} "
          f"{totals['engine-R frozen-bn']:>17.1f} {speed:>9}" + ("" if all(complete.values()) else
                                                             "  (sums over the rows measured only)"))
    pil = rates.get(("pil-augment (1 process)", -1, "colour"))
    naive = [(b, rates[("naive", b, "colour")].train) for b in blocks_seen if ("naive", b, "colour") in rates]
    if pil and naive:
        print(f"\nThe authors' loop augmented on PIL images in {PIL_WORKERS} DataLoader workers: at most "
              f"{PIL_WORKERS} x {pil.train:.0f} = {PIL_WORKERS * pil.train:.0f} colour img/s (one process measured), "
              "against the naive loop's " + ", ".join(f"{rate:.0f} ({b} blocks)" for b, rate in naive)
              + " with its augmentation on the device: where the first is lower, their loop was bound by its loader.")
    if missing:
        print("Not measured: " + "; ".join(missing))


def _measured(blocks: int, loop: str, kind: str, runs: int, measure: Callable[[], Rate], device: torch.device,
              probe: float = 0.0) -> Row:
    """One row, guarded: out of device memory is recorded and the next row runs."""
    failed = False
    try:
        return Row(blocks, loop, kind, runs, "ok", measure(), probe)
    except Exception as err:
        if not is_oom(err):
            raise
        failed = True
    if failed:  # outside the except: the failed row's tensors are no longer held by the traceback
        release_memory(device)
    return Row(blocks, loop, kind, runs, "out of memory", None, probe)


class RowLog:
    """Prints each row as it is measured and appends it to `--rows` (flushed), so a killed run keeps its rows."""

    def __init__(self, path: str | None, meta: dict):
        self.path, self.rows = Path(path) if path else None, []
        if self.path:
            with self.path.open("a") as f:
                f.write(json.dumps({"meta": meta}) + "\n")

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(row.table_line(), flush=True)
        if self.path:
            with self.path.open("a") as f:
                f.write(json.dumps({**asdict(row), "rate": asdict(row.rate) if row.rate else None}) + "\n")


def read_rows(path: str) -> tuple[dict, list[Row]]:
    meta, rows = {}, []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            data = json.loads(line)
            if "meta" in data:
                meta = data["meta"]
            else:
                rows.append(Row.from_json(line))
    return meta, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a CPU (input 64, 8 images, 2 runs)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--blocks", type=int, nargs="+", default=[0, 9, 3, 1],
                        help="blocks settings to time, in this order (the dry run needs 0/1/3/9 for a whole grid)")
    parser.add_argument("--runs", type=int, default=None, help="R, runs per call (default: from free memory)")
    parser.add_argument("--loop", action="store_true", help="with --quick: also time the engine's loop strategy")
    parser.add_argument("--deadline", type=float, default=None, metavar="S",
                        help="start no row after S seconds (a row that cannot finish in time is cut and named)")
    parser.add_argument("--rows", default=None, metavar="FILE", help="append each row to FILE (JSON lines) as measured")
    parser.add_argument("--extrapolate", default=None, metavar="FILE", help="only print the extrapolations of FILE")
    parser.add_argument("--compile", action="store_true", help="only compare the frozen-BatchNorm engine with and "
                        "without torch.compile of the prefix (whether `rtx precompute --compile` pays here)")
    parser.add_argument("--scan-group", type=int, nargs="+", default=None, metavar="R",
                        help="only time small_resnet with these group sizes (how CPU_GROUP was chosen)")
    args = parser.parse_args(argv)
    if args.extrapolate:
        meta, rows = read_rows(args.extrapolate)
        print(f"From {args.extrapolate}: {meta.get('line', '')}")
        extrapolate(rows, meta.get("device_name", "device"))
        return
    deadline = STARTED + args.deadline if args.deadline is not None else math.inf
    device = resolve_device(args.device)
    if args.scan_group:
        scan_group(device, args.scan_group)
        return
    torch.manual_seed(0)
    if args.quick:
        size, n, n_test, epochs, batch, runs, fwd_batch, pil_images = 64, 8, 8, 1, 8, args.runs or 2, 4, 8
    else:
        # one timed epoch (after an untimed one) and 1,024 test images: a row takes ~20 s on an H100 at R = 20, so
        # blocks 0 and 9 fit the GPU session's deadline (bench/gpu_session.sh)
        size, n, n_test, epochs, batch, runs, fwd_batch, pil_images = 224, 512, 1_024, 1, 128, args.runs, 256, 256
    precision = "bf16" if device.type == "cuda" else "fp32"
    names = register_synthetic(n, n_test)
    source = build_model("resnet50", 1000, input_size=size, seed=0).eval()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    line = (f"device: {device_name} ({device}); torch {torch.__version__}; ResNet-50 at {size}x{size}; "
            f"{n} training images x {epochs} epoch(s), batch {batch}; {n_test} test images; precision {precision}")
    print(line)
    print("Colour = `paper` augmentation on 3x32x32; grey = 1x28x28, no augmentation. Synthetic images.\n")

    def cfg(kind: str, blocks: int, bn_mode: str, seed: int = 20_000_000, prec: str = precision) -> FinetuneConfig:
        return FinetuneConfig("bench", "x", names[kind], n, seed, blocks, epochs, 1, batch_size=batch,
                              augment="paper", bn_mode=bn_mode, fc_init="normal", lr_schedule="step", precision=prec)

    if args.compile:
        compare_compile(source, cfg, runs or group_size(source, cfg("colour", max(args.blocks), "frozen"), MAX_CELL_RUNS,
                                                        device),
                        args.blocks, device, epochs)
        return
    gflop, tflops = forward_tflops(source, size, fwd_batch, device, precision)
    peak = peak_tflops(device)
    share = f"{100 * tflops / peak:.1f}% of the dense bf16 peak {peak:.0f} TFLOP/s" if peak else \
        "bf16 peak: unknown for this device"
    print(f"Forward pass (eval, batch {fwd_batch}, {precision}): {gflop:.2f} GFLOP per image at {size}x{size}; "
          f"{tflops:.3f} TFLOP/s achieved; {share}\n", flush=True)
    log = RowLog(args.rows, {"device_name": device_name, "line": line})
    print(f"### {device_name}  (paste under this heading in bench/RESULTS.md: `rtx precompute --dry-run` reads these rows)")
    print("| blocks | loop | target | R | train img/s | eval img/s |\n|---|---|---|---|---|---|", flush=True)
    log.add(Row(-1, "pil-augment (1 process)", "colour", 1, "ok", measure_pil(size, pil_images)))
    longest = 0.0
    for blocks in args.blocks:
        start = time.perf_counter()
        r = runs or group_size(source, cfg("colour", blocks, "train"), MAX_CELL_RUNS, device)
        probe = 0.0 if runs else time.perf_counter() - start
        rows: list[tuple[str, str, int, Callable[[], Rate]]] = []
        # most needed first (a deadline cuts the end): the rows the dry run reads, the naive baseline, the rest
        for loop, count in (("engine-R train-bn", r), ("naive", 1), ("engine-R frozen-bn", r), ("engine-1 train-bn", 1)):
            for kind in ("colour", "grey"):
                if loop == "naive":
                    rows.append((loop, kind, 1, lambda k=blocks, t=kind: measure_naive(
                        source, cfg(t, k, "train", prec="fp32"), device, epochs)))
                    continue
                bn = "frozen" if "frozen" in loop else "train"
                seeds = [20_000_000 + 100_000 * i for i in range(count)]
                rows.append((loop, kind, count, lambda k=blocks, b=bn, s=seeds, t=kind: measure_engine(
                    source, [cfg(t, k, b, seed) for seed in s], device, epochs)))
        if not args.quick or args.loop:  # each strategy forced: grouped convolutions (vmap), dense ones (loop)
            seeds = [20_000_000 + 100_000 * i for i in range(r)]
            for strategy in ("vmap", "loop"):
                rows.append((f"engine-R train-bn {strategy}", "colour", r, lambda k=blocks, s=seeds, st=strategy:
                             measure_engine(source, [cfg("colour", k, "train", seed) for seed in s], device, epochs, st)))
        for loop, kind, count, measure in rows:
            if time.monotonic() + longest > deadline:
                log.add(Row(blocks, loop, kind, count, "cut by the deadline"))
                continue
            start = time.perf_counter()
            log.add(_measured(blocks, loop, kind, count, measure, device, probe))
            longest = max(longest, time.perf_counter() - start)
    cut = [f"{r.blocks}/{r.loop}/{r.kind}" for r in log.rows if r.status == "cut by the deadline"]
    if cut:
        print(f"\nCut by the {args.deadline:.0f} s deadline ({len(cut)} rows): {', '.join(cut)}")
    if args.rows:
        print(f"\nRows in {args.rows}; extrapolations: python bench/gpu_finetune.py --extrapolate {args.rows}")
    else:
        extrapolate(log.rows, device_name)


if __name__ == "__main__":
    main()
