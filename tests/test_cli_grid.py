"""`rtx precompute` / `rtx finetune` before any work: every input checked (one line listing all problems), the
`--dry-run` plan, and the grid flags (--test-limit, --precision, --executor engine, --max-group) reaching the runs.

Everything offline in tmp folders: checkpoints written from random weights, MNIST as small IDX files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from compute.cache import CacheReader
from compute.cli import main
from compute.data.registry import DEBIAN_FMNIST
from compute.paper_plan import check_paper_inputs
from compute.paths import DB_NAME
from compute.presets import Preset, SourceSpec, get_preset
from tests.helpers.fake_torchvision import write_mnist
from tests.test_paper_preset import write_paper_checkpoints

# the paper's six targets need files under the data root, except Fashion-MNIST when Debian's package provides it
TORCHVISION_MISSING = 5 if (DEBIAN_FMNIST / "train-images-idx3-ubyte.gz").exists() else 6
PAPER_CHECKPOINTS = ("resnet50-0676ba61.pth", "imagenet_l2_3_0.pt", "imagenet_linf_4.pt", "imagenet_linf_8.pt")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def test_paper_inputs_missing_are_listed_in_one_line_before_any_work(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    code = main(["--cache", str(cache), "precompute", "--preset", "paper", "--checkpoint-dir", str(tmp_path / "none"),
                 "--data-root", str(tmp_path / "data")])
    err = _one_line_error(capsys)
    assert code == 2
    for name in (*PAPER_CHECKPOINTS, "cifar10", "cifar100", "svhn", "dataset mnist", "kmnist"):
        assert name in err
    assert err.count("--checkpoint-dir DIR") == 4 and err.count("--download") == TORCHVISION_MISSING and "MadryLab" in err
    assert not (cache / DB_NAME).exists()  # nothing was started


def test_a_dataset_folder_with_a_missing_file_names_it_and_the_flag(tmp_path: Path, source_cache: Path, capsys) -> None:
    root = write_mnist(tmp_path / "data")
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    before = CacheReader(source_cache).counts()
    code = main(["--cache", str(source_cache), "finetune", "--preset", "tiny", "--targets", "mnist", "--sizes", "20",
                 "--seeds", "1", "--data-root", str(root), "--no-progress"])
    err = _one_line_error(capsys)
    assert code == 2 and "MNIST/raw/t10k-labels-idx1-ubyte" in err and "--data-root DIR" in err
    assert "1 input(s)" in err and CacheReader(source_cache).counts().equals(before)


def _resnet18_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_a_checkpoint_of_the_wrong_architecture_is_found_from_its_shapes(tmp_path: Path) -> None:
    """A torchvision ResNet-18 file where the preset declares small_resnet: refused before any model is built."""
    _resnet18_file(tmp_path / "ckpt" / "src.pth")
    preset = Preset("check", "", (SourceSpec("src", "small_resnet", checkpoint="src.pth"),), (), "src")
    problems = check_paper_inputs(preset, tmp_path / "ckpt", tmp_path / "data")
    assert len(problems) == 1 and "holds a resnet18, not a small_resnet" in problems[0]
    assert "src.pth" in problems[0] and "--checkpoint-dir" in problems[0]
    assert check_paper_inputs(preset, tmp_path / "ckpt", tmp_path / "data", recorded=["src"]) == []  # in the cache


@pytest.mark.slow
def test_paper_precompute_refuses_a_wrong_architecture_checkpoint_in_one_line(tmp_path: Path, capsys) -> None:
    checkpoints = tmp_path / "checkpoints"
    write_paper_checkpoints(checkpoints)
    _resnet18_file(checkpoints / "imagenet_linf_8.pt")  # a ResNet-18 under a ResNet-50's name
    code = main(["--cache", str(tmp_path / "cache"), "precompute", "--preset", "paper", "--targets", "fmnist",
                 "--checkpoint-dir", str(checkpoints), "--data-root", str(tmp_path / "data")])
    err = _one_line_error(capsys)
    assert code == 2 and "1 input(s)" in err
    assert "imagenet_linf_8.pt (source 'linf_8') holds a resnet18, not a resnet50" in err
    assert not (tmp_path / "cache" / DB_NAME).exists()


def test_dry_run_prints_the_plan_and_missing_inputs_and_does_no_work(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    args = ["--cache", str(cache), "precompute", "--preset", "paper", "--dry-run", "--checkpoint-dir",
            str(tmp_path / "none"), "--data-root", str(tmp_path / "data")]
    assert main(args) == 0
    full = capsys.readouterr().out
    preset = get_preset("paper")
    assert f"paper: {4 * 4 * 6 * (5 * 20 + 2 * 10 + 2 * 5 + 1)} fine-tunes" in full
    assert "no measured rate for this device" in full or "-hours" in full
    assert f"inputs: {4 + TORCHVISION_MISSING} missing or wrong" in full and "imagenet_l2_3_0.pt" in full
    assert main([*args, "--test-limit", "500"]) == 0
    limited = capsys.readouterr().out

    def eval_passes(text: str) -> float:
        rows = [line.split() for line in text.splitlines() if line.startswith(preset.grids[0].targets)]
        return sum(float(r[4]) for r in rows)

    assert eval_passes(limited) < eval_passes(full)
    assert not (cache / DB_NAME).exists()


def test_grid_flags_reach_every_run_and_its_key(source_cache: Path, capsys) -> None:
    """--test-limit and --precision are recorded in each run's config (and so its key); --executor engine with
    --max-group/--engine-strategy trains the tiny grid."""
    common = ["--cache", str(source_cache), "finetune", "--preset", "tiny", "--sizes", "20", "--seeds", "1,2",
              "--no-progress"]
    assert main([*common, "--test-limit", "30", "--precision", "bf16", "--executor", "engine", "--max-group", "2",
                 "--engine-strategy", "loop"]) == 0
    assert "4 planned, 0 already cached, 4 run, 0 failed" in capsys.readouterr().out
    runs = CacheReader(source_cache).runs()
    configs = [json.loads(c) for c in runs.config]
    assert {(c["test_limit"], c["precision"]) for c in configs} == {(30, "bf16")}
    assert main([*common, "--max-runs", "1"]) == 0  # no limit, fp32: other keys, so nothing counts as cached
    assert "4 planned, 0 already cached, 1 run" in capsys.readouterr().out


def test_bad_grid_flag_values_are_one_line_errors(tmp_path: Path, capsys) -> None:
    """Refused when parsed (compute.cli.values), naming the flag and what it takes."""
    assert main(["--cache", str(tmp_path), "finetune", "--preset", "tiny", "--max-group", "0"]) == 2
    assert "argument --max-group: '0' is out of range; expected a whole number from 1" in _one_line_error(capsys)
    assert main(["--cache", str(tmp_path), "finetune", "--preset", "tiny", "--gpus-per-task", "1.5"]) == 2
    assert "--gpus-per-task: '1.5' is more than one GPU but not a whole number" in _one_line_error(capsys)
    assert main(["--cache", str(tmp_path), "finetune", "--preset", "tiny", "--gpus-per-task", "-1"]) == 2
    assert "expected 0, a fraction up to 1 or a whole number" in _one_line_error(capsys)
