"""The `paper` preset end to end on a CPU: four ResNet-50 files in the paper's formats, its recipe, recorded runs.

Random weights (nothing is downloaded); input size reduced to 64 through the preset's `input_size` override, which
is part of every run's key, so these runs can never pass for 224x224 ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from compute.cache import CacheReader
from compute.data.registry import DATASETS, DatasetInfo, register
from compute.paper_plan import check_paper_inputs, measured_rates, plan_summary
from compute.presets import get_preset
from compute.settings import Settings
from compute.stages import precompute
from compute.sweep import plan

COLOUR = "rgb_smoke"


def _colour_loader(split: str, root, download: bool, skip_bad_images: bool = False):
    """300 / 200 synthetic 32x32 RGB images, label = the brightest channel of a random tint (offline CIFAR stand-in)."""
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = 300 if split == "train" else 200
    labels = torch.arange(n) % 3
    images = torch.rand(n, 3, 32, 32, generator=gen) * 0.5
    images[torch.arange(n), labels] += 0.5
    return (images * 255).round() / 255, labels, "synthetic"


def write_paper_checkpoints(folder: Path) -> None:
    """The four files the preset expects: torchvision's state dict and three MadryLab `robustness` files."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, spec in enumerate(get_preset("paper").sources):
        torch.manual_seed(i)
        state = torchvision.models.resnet50().state_dict()
        if spec.checkpoint.endswith(".pth"):
            torch.save(state, folder / spec.checkpoint)
            continue
        model = {f"module.model.{k}": v for k, v in state.items()}
        model |= {f"module.attacker.model.{k}": v for k, v in state.items()}
        model["module.normalizer.new_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        model["module.normalizer.new_std"] = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        torch.save({"model": model, "epoch": 90}, folder / spec.checkpoint)


def test_missing_inputs_are_listed_in_one_go(tmp_path: Path) -> None:
    problems = check_paper_inputs(get_preset("paper"), tmp_path / "none", tmp_path / "data")
    text = "\n".join(problems)
    for name in ("resnet50-0676ba61.pth", "imagenet_l2_3_0.pt", "imagenet_linf_4.pt", "imagenet_linf_8.pt",
                 "cifar10", "cifar100", "svhn", "mnist", "kmnist"):
        assert name in text
    assert text.count("--checkpoint-dir") == 4 and "--download" in text and "MadryLab" in text


def test_dry_run_plan_counts_the_grid_and_says_when_no_rate_was_measured(tmp_path: Path) -> None:
    preset = get_preset("paper")
    configs = plan(preset, {s.name: "x" for s in preset.sources})
    text = plan_summary(configs, "Imaginary GPU", tmp_path / "RESULTS.md")
    assert "no measured rate for this device (Imaginary GPU)" in text
    assert len(text.splitlines()) == 1 + 6 * 4 + 1  # header, targets x blocks, verdict
    results = tmp_path / "RESULTS.md"
    results.write_text("```\n### Imaginary GPU\n| 0 | engine-R train-bn | grey | 2 | 9.0 | 9.0 |\n```\n"
                       "### Imaginary GPU  (paste under this heading)\n| blocks | loop | target | R | train img/s | eval img/s |\n"
                       "| 3 | engine-R train-bn | grey | 8 | 1000.0 | 4000.0 |\n")
    assert measured_rates("Imaginary GPU", results) == {(3, "grey"): (1000.0, 4000.0)}
    assert "Imaginary GPU-hours" in plan_summary(configs, "Imaginary GPU", results)


@pytest.mark.slow
def test_paper_preset_smoke(tmp_path: Path) -> None:
    if COLOUR not in DATASETS:
        register(DatasetInfo(COLOUR, ("r", "g", "b"), 300, 200, 3, 32, True, _colour_loader))
    checkpoints = tmp_path / "checkpoints"
    write_paper_checkpoints(checkpoints)
    preset = get_preset("paper").with_overrides(
        targets=("fmnist", COLOUR), sizes=(100,), seeds=(20_000_000,), blocks=(3,), epochs=1, test_limit=200,
        sources=("natural", "l2_3"), input_size=64, precision="fp32")
    assert not [p for p in check_paper_inputs(preset, checkpoints, tmp_path) if "checkpoint" in p]
    options = Settings(device="cpu", workers=1, progress=False, checkpoint_dir=str(checkpoints))
    (tmp_path / "cache").mkdir()
    precompute(preset, tmp_path / "cache", options, stages=("sources", "thumbnails", "finetune"))
    reader = CacheReader(tmp_path / "cache")
    sources = reader.source_models()
    assert set(sources["name"]) == {"natural", "l2_3", "linf_4", "linf_8"}
    runs = reader.runs()
    assert len(runs) == 4 and set(runs["status"]) == {"done"}, runs[["status", "error"]]
    assert set(runs["target"]) == {"fmnist", COLOUR} and set(runs["n_train"]) == {100}
    for _, run in runs.iterrows():
        config = run["config"] if isinstance(run["config"], dict) else __import__("json").loads(run["config"])
        assert (config["augment"], config["bn_mode"], config["fc_init"], config["lr_schedule"]) == \
            ("paper", "train", "normal", "step")
        assert (config["input_size"], config["test_limit"], config["blocks"]) == (64, 200, 3)
        curve = reader.learning_curve(run["key"])
        assert list(curve["epoch"]) == [1] and 0 <= float(curve["test_acc"].iloc[0]) <= 1
        assert float(curve["train_loss"].iloc[0]) > 0
