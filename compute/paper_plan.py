"""The `paper` preset before any work: are its inputs there, and what will it cost (`--dry-run`)?

`check_paper_inputs` lists every missing or wrong checkpoint file and missing dataset file in one go
(compute.validation.check_before_work raises them, with the plan's other problems, as one RtxError; the CLI runs it
for every preset before any work), each with where the paper got it
and the flag that fixes it. `plan_summary` prints the plan (runs, training and evaluation image passes per target
and blocks setting) and a device-hour estimate from the rates `bench/gpu_finetune.py` measured on this device and
recorded in bench/RESULTS.md ("no measured rate for this device" otherwise: nothing is guessed).
"""

from __future__ import annotations

import functools
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from compute.data.registry import DATASETS, DEBIAN_FMNIST, data_root, dataset_info
from compute.data.types import DatasetInfo
from compute.data.variants import split_dataset_spec
from compute.errors import RtxError
from compute.finetune import FinetuneConfig
from compute.models.hub import is_hub_uri
from compute.presets import Preset
from compute.settings import Settings, resolve_device

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "RESULTS.md"

# Where the paper's inputs come from (A.3, Table 5, Table 6; the authors' code).
CHECKPOINT_ORIGINS = {
    "resnet50-0676ba61.pth": "torchvision's ImageNet ResNet-50 (IMAGENET1K_V1, 76.13%): "
                             "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "imagenet_l2_3_0.pt": "MadryLab robustness library, ImageNet ResNet-50 L2 eps 3 (github.com/MadryLab/robustness)",
    "imagenet_linf_4.pt": "MadryLab robustness library, ImageNet ResNet-50 Linf eps 4/255 (github.com/MadryLab/robustness)",
    "imagenet_linf_8.pt": "MadryLab robustness library, ImageNet ResNet-50 Linf eps 8/255 (github.com/MadryLab/robustness)",
}
# (files torchvision expects under the data root, where the paper's copy came from)
DATASET_FILES: dict[str, tuple[tuple[str, ...], str]] = {
    "mnist": (tuple(f"MNIST/raw/{f}" for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
              "MNIST, yann.lecun.com/exdb/mnist (through torchvision)"),
    "kmnist": (tuple(f"KMNIST/raw/{f}" for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
               "KMNIST, github.com/rois-codh/kmnist (through torchvision)"),
    "fmnist": (tuple(f"FashionMNIST/raw/{f}" for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
               "Fashion-MNIST, github.com/zalandoresearch/fashion-mnist (through torchvision; or Debian's "
               "dataset-fashion-mnist package)"),
    "cifar10": (tuple(f"cifar-10-batches-py/{f}" for f in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")),
                "CIFAR-10, cs.toronto.edu/~kriz/cifar.html (through torchvision)"),
    "cifar100": (("cifar-100-python/train", "cifar-100-python/test"),
                 "CIFAR-100, cs.toronto.edu/~kriz/cifar.html (through torchvision)"),
    "svhn": (("train_32x32.mat", "test_32x32.mat"), "SVHN, ufldl.stanford.edu/housenumbers (through torchvision)"),
}


def _dataset_missing(name: str, root: Path) -> list[str]:
    if name == "fmnist" and (DEBIAN_FMNIST / "train-images-idx3-ubyte.gz").exists():
        return []
    files, _ = DATASET_FILES[name]
    return [f for f in files if not (root / f).exists()]


def check_paper_inputs(preset: Preset, checkpoint_dir: str | os.PathLike | None,
                       data_root_dir: str | os.PathLike | None, recorded: Iterable[str] = (),
                       trust_pickle: bool = False) -> list[str]:
    """Every missing or wrong input of `preset`, one line each; [] when all are there.

    Checkpoint sources not in `recorded` (source names the cache already holds: the sources stage skips them)
    must be files in `checkpoint_dir` holding the declared architecture (keys and shapes read from the file,
    compute.models.foreign.architecture_mismatch); hub sources (hf://) are resolved by the sources stage. Each
    torchvision target must have its files under the data root.
    """
    from compute.models.foreign import architecture_mismatch

    problems: list[str] = []
    folder = Path(checkpoint_dir or os.environ.get("RTX_CHECKPOINTS") or "checkpoints").expanduser()
    done = set(recorded)
    for spec in preset.sources:
        if not spec.checkpoint or spec.name in done or is_hub_uri(spec.checkpoint):
            continue
        name = Path(spec.checkpoint).name
        origin = f"the paper used {CHECKPOINT_ORIGINS[name]}" if name in CHECKPOINT_ORIGINS else "the preset names it"
        path = folder / name
        if not path.is_file():
            problems.append(f"checkpoint {name} (source {spec.name!r}) not in {folder}: {origin}; "
                            "pass --checkpoint-dir DIR naming the folder that holds it")
            continue
        if path.suffix == ".safetensors":
            continue  # this project's own format: its sidecar names the architecture, checked when it loads
        try:
            wrong = architecture_mismatch(path, spec.arch, trust_pickle)
        except RtxError as err:
            wrong = str(err).removeprefix(f"{path}: ")
        if wrong:
            problems.append(f"checkpoint {path} (source {spec.name!r}) {wrong}: {origin}; put that file in "
                            "--checkpoint-dir DIR")
    root = data_root(data_root_dir)
    targets = sorted({t.split("+")[0] for g in preset.grids for t in g.targets})
    for name in targets:
        if name not in DATASET_FILES or DATASETS[name].offline and name != "fmnist":
            continue  # offline targets (digits, mnist5k, ...) ship with the project
        missing = _dataset_missing(name, root)
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            problems.append(f"dataset {name}: missing {shown} under {root}: the paper used "
                            f"{DATASET_FILES[name][1]}; pass --data-root DIR pointing at it, or --download")
    return problems


def device_name(device: str | None = None) -> str:
    """The name bench/RESULTS.md files rates under: the CUDA device's name, else 'CPU'."""
    import torch

    dev = resolve_device(device)
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"


def dry_run_text(preset: Preset, settings: Settings, checksums: dict[str, str] | None = None,
                 problems: Iterable[str] = ()) -> str:
    """What `--dry-run` prints: the plan and its cost on this device, then the inputs still missing."""
    from compute.sweep import plan

    known = dict(checksums or {})
    configs = plan(preset, {s.name: known.get(s.name, "planned") for s in preset.trained_sources()}, settings.test_limit)
    problems = list(problems)
    lines = [f"{preset.name}: {len(configs)} fine-tunes", plan_summary(configs, device_name(settings.device))]
    lines.append("inputs: all present" if not problems else f"inputs: {len(problems)} missing or wrong")
    lines += [f"  {p}" for p in problems]
    return "\n".join(lines)


@functools.cache
def _target_info(spec: str) -> DatasetInfo:
    """The registry's facts of a target spec's dataset (a folder: target is scanned once, not once per run)."""
    return dataset_info(split_dataset_spec(spec)[0])


def plan_work(configs: list[FinetuneConfig]) -> dict[tuple[str, int], dict[str, float]]:
    """{(target, blocks): {'runs', 'train_passes', 'eval_passes'}} for a plan's configs."""
    work: dict[tuple[str, int], dict[str, float]] = defaultdict(lambda: {"runs": 0, "train_passes": 0, "eval_passes": 0})
    for cfg in configs:
        info = _target_info(cfg.target)
        n = cfg.n_train or info.train_size
        n_test = min(info.test_size, cfg.test_limit or info.test_size)
        cell = work[(cfg.target, cfg.blocks)]
        cell["runs"] += 1
        cell["train_passes"] += n * cfg.epochs
        cell["eval_passes"] += n_test * len(cfg.eval_epochs())
    return dict(work)


def measured_rates(device_name: str, path: Path = RESULTS) -> dict[tuple[int, str], tuple[float, float]]:
    """{(blocks, 'grey'|'colour'): (train img/s, eval img/s)} of `engine-R train-bn` rows recorded for this device.

    Reads the rate tables of bench/RESULTS.md: a `### <device name>` heading, then rows
    `| blocks | loop | target | R | train img/s | eval img/s |` as bench/gpu_finetune.py prints them (full size
    only: figures inside ``` fences, such as the CPU `--quick` ones, are skipped).
    """
    if not path.exists():
        return {}
    rates: dict[tuple[int, str], tuple[float, float]] = {}
    device, fenced = None, False
    for line in path.read_text().splitlines():
        if line.startswith("```"):  # quoted output (e.g. CPU --quick figures at 64x64) is never read as rates
            fenced = not fenced
            continue
        if fenced:
            continue
        if line.startswith("### "):
            device = line[4:].split("  ")[0].strip()
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if device == device_name and len(cells) == 6 and cells[1] == "engine-R train-bn" and re.fullmatch(r"\d+", cells[0]):
            rates[(int(cells[0]), cells[2])] = (float(cells[4]), float(cells[5]))
    return rates


def plan_summary(configs: list[FinetuneConfig], device_name: str, path: Path = RESULTS) -> str:
    """The dry-run text: per target and blocks, runs and image passes; device-hours where a rate was measured."""
    rates = measured_rates(device_name, path)
    lines = [f"{'target':<12} {'blocks':>6} {'runs':>7} {'train passes':>13} {'eval passes':>12} {'hours':>8}"]
    total_h, unknown = 0.0, False
    for (target, blocks), w in sorted(plan_work(configs).items()):
        kind = "colour" if _target_info(target).channels == 3 else "grey"
        rate = rates.get((blocks, kind))
        if rate:
            h = (w["train_passes"] / rate[0] + w["eval_passes"] / rate[1]) / 3600
            total_h += h
        else:
            unknown = True
        hours = f"{h:8.1f}" if rate else f"{'?':>8}"
        lines.append(f"{target:<12} {blocks:>6} {w['runs']:>7} {w['train_passes']:>13.3g} {w['eval_passes']:>12.3g} {hours}")
    if not rates:
        lines.append(f"no measured rate for this device ({device_name}) in {path.name}: run bench/gpu_finetune.py on it")
    else:
        lines.append(f"estimated {total_h:.1f} {device_name}-hours from the rates measured in {path.name}"
                     + (" (blocks settings without a measured rate left out)" if unknown else ""))
    return "\n".join(lines)
