"""Foreign checkpoints: MadryLab and torchvision layouts load exactly; every broken file is one clear line.

The MadryLab file is built here from a randomly initialised torchvision ResNet-50 saved in the
`robustness` library's layout (no download); corrupt-file cases use the small ResNet to stay fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50

from compute.cache import CacheReader
from compute.cli import main
from compute.errors import RtxError
from compute.models import build_model, load_checkpoint
from compute.models.architectures import IMAGENET_MEAN, IMAGENET_STD

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def madry_layout(net: torch.nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict[str, torch.Tensor]:
    """The AttackerModel state dict of MadryLab `robustness`: the net twice plus the normaliser's constants."""
    state = {}
    for key, value in net.state_dict().items():
        state[f"module.model.{key}"] = value
        state[f"module.attacker.model.{key}"] = value
    state["module.normalizer.new_mean"] = torch.tensor(mean).view(3, 1, 1)
    state["module.normalizer.new_std"] = torch.tensor(std).view(3, 1, 1)
    state["module.attacker.normalize.new_mean"] = torch.tensor(mean).view(3, 1, 1)
    return state


def _reference_logits(net: torch.nn.Module, x: torch.Tensor, mean, std) -> torch.Tensor:
    with torch.no_grad():
        return net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))


@pytest.fixture(scope="module")
def rn50() -> torch.nn.Module:
    torch.manual_seed(0)
    net = resnet50().eval()
    with torch.no_grad():  # non-trivial BN statistics, so a mix-up of running stats would show
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net


def test_madry_resnet50_checkpoint_gives_the_same_logits(tmp_path: Path, rn50: torch.nn.Module) -> None:
    path = tmp_path / "imagenet_l2_3_0.pt"
    torch.save({"model": madry_layout(rn50), "optimizer": {"state": {}, "param_groups": []}, "epoch": 105}, path)
    model, info = load_checkpoint(path, "resnet50")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # (1, 3, 64, 64): fast on CPU
    with torch.no_grad():
        ours = model(x)
    assert info.format == "madry" and info.arch == "resnet50" and info.num_classes == 1000
    assert info.meta["epoch"] == 105
    assert not model.training
    assert torch.allclose(ours, _reference_logits(rn50, x, IMAGENET_MEAN, IMAGENET_STD), atol=1e-5)


def test_older_madry_state_dict_key_legacy_format_and_its_normaliser(tmp_path: Path) -> None:
    """Older files: 'state_dict' instead of 'model', torch's pre-1.6 serialisation; mean/std come from the file."""
    torch.manual_seed(1)
    net = build_model("small_resnet", 10).net.eval()
    path = tmp_path / "cifar_linf_8.pt"
    torch.save({"state_dict": madry_layout(net, CIFAR_MEAN, CIFAR_STD), "epoch": 3}, path,
               _use_new_zipfile_serialization=False)
    model, info = load_checkpoint(path, "small_resnet")
    x = torch.rand(2, 3, 28, 28)
    assert info.format == "madry"
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor(CIFAR_MEAN))
    with torch.no_grad():
        assert torch.allclose(model(x), _reference_logits(net, x, CIFAR_MEAN, CIFAR_STD), atol=1e-5)


@pytest.mark.parametrize("wrap", ["plain", "dataparallel", "state_dict"])
def test_torchvision_state_dicts_load_and_infer_the_architecture(tmp_path: Path, wrap: str) -> None:
    torch.manual_seed(2)
    net = build_model("small_resnet", 7).net.eval()
    state = net.state_dict()
    obj = {"plain": state, "dataparallel": {f"module.{k}": v for k, v in state.items()},
           "state_dict": {"state_dict": state}}[wrap]
    path = tmp_path / "net.pth"
    torch.save(obj, path)
    model, info = load_checkpoint(path)  # no arch, no classes: read from the keys and fc.weight
    assert (info.arch, info.num_classes, info.format) == ("small_resnet", 7, "torchvision")
    x = torch.rand(2, 3, 28, 28)
    mean, std = model.normalize.mean.flatten().tolist(), model.normalize.std.flatten().tolist()
    with torch.no_grad():
        assert torch.allclose(model(x), _reference_logits(net, x, mean, std), atol=1e-5)


# --- broken files ------------------------------------------------------------------------------------------------
def _small_state(classes: int = 10) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return build_model("small_resnet", classes).net.state_dict()


def _make(case: str, folder: Path) -> tuple[Path, str | None, str]:
    """Write a broken checkpoint for `case` -> (path, arch to pass, expected message fragment)."""
    path = folder / f"{case}.pth"
    state = _small_state()
    if case == "truncated":
        torch.save(state, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path, "small_resnet", "truncated or corrupt"
    if case == "not_a_checkpoint":
        path.write_text("these are not the weights you are looking for\n" * 20)
        return path, "small_resnet", "not a PyTorch checkpoint"
    if case == "no_state_dict":
        torch.save({"epoch": 3, "note": "hello"}, path)
        return path, "small_resnet", "no state dict found"
    if case == "wrong_arch":
        torch.save(state, path)
        return path, "resnet18", "do not match architecture 'resnet18'"
    if case == "missing_keys":
        torch.save({k: v for k, v in state.items() if not k.startswith("layer4.0.conv2")}, path)
        return path, "small_resnet", "missing 1: ['net.layer4.0.conv2.weight']"
    if case == "extra_keys":
        torch.save({**state, "projection.weight": torch.zeros(3)}, path)
        return path, "small_resnet", "unexpected 1: ['net.projection.weight']"
    if case == "shape_mismatch":
        state["layer1.0.conv1.weight"] = torch.zeros(16, 16, 5, 5)
        torch.save(state, path)
        return path, "small_resnet", "shape mismatch at net.layer1.0.conv1.weight"
    if case == "needs_pickle":
        torch.save({"model": state, "args": argparse.Namespace(lr=0.1)}, path)
        return path, "small_resnet", "--trust-pickle"
    if case == "missing_file":
        return folder / "nowhere.pth", "small_resnet", "does not exist"
    raise AssertionError(case)


CASES = ["truncated", "not_a_checkpoint", "no_state_dict", "wrong_arch", "missing_keys", "extra_keys",
         "shape_mismatch", "needs_pickle", "missing_file"]


@pytest.mark.parametrize("case", CASES)
def test_broken_checkpoints_give_one_line_errors_naming_the_file(tmp_path: Path, case: str) -> None:
    path, arch, fragment = _make(case, tmp_path)
    with pytest.raises(RtxError) as err:
        load_checkpoint(path, arch)
    message = str(err.value)
    assert fragment in message
    assert path.name in message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize("case", CASES)
def test_cli_prints_one_line_and_no_traceback(tmp_path: Path, case: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RTX_CACHE", str(tmp_path / "cache"))
    path, arch, fragment = _make(case, tmp_path)
    code = main(["--cache", str(tmp_path / "cache"), "import-source", str(path), "--name", "x", "--arch", arch])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rtx: error: ") and fragment in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_trust_pickle_loads_the_file_that_needs_it(tmp_path: Path) -> None:
    path, arch, _ = _make("needs_pickle", tmp_path)
    model, info = load_checkpoint(path, arch, trust_pickle=True)
    assert info.arch == "small_resnet" and model.num_classes == 10


def test_import_source_registers_a_converted_copy(tmp_path: Path, monkeypatch, capsys) -> None:
    root = tmp_path / "cache"
    monkeypatch.setenv("RTX_CACHE", str(root))
    net = build_model("small_resnet", 10, seed=4).net.eval()
    path = tmp_path / "robust.pt"
    torch.save({"model": madry_layout(net), "epoch": 7}, path)
    assert main(["--cache", str(root), "import-source", str(path), "--name", "mine", "--constraint", "l2:3",
                 "--steps", "20"]) == 0
    assert "registered mine" in capsys.readouterr().out
    reader = CacheReader(root)
    row = reader.source_models().set_index("name").loc["mine"]
    assert (row["arch"], row["constraint_"], row["attack_steps"], row["source_dataset"]) == ("small_resnet", "l2:3", 20,
                                                                                             "imagenet")
    assert not Path(row["path"]).is_absolute() and (root / row["path"]).suffix == ".safetensors"
    reader.close()
    path.unlink()  # later stages read the cache's copy only
    model, info = load_checkpoint(root / row["path"])
    x = torch.rand(1, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), _reference_logits(net, x, IMAGENET_MEAN, IMAGENET_STD), atol=1e-5)
    assert info.meta["format"] == "madry" and info.meta["epoch"] == 7


def test_import_source_rejects_a_bad_constraint(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RTX_CACHE", str(tmp_path))
    path = tmp_path / "net.pth"
    torch.save(_small_state(), path)
    assert main(["--cache", str(tmp_path), "import-source", str(path), "--name", "x", "--constraint", "l2:three"]) == 2
    assert "cannot read constraint" in capsys.readouterr().err
