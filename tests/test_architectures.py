"""Architectures: seeded construction without global random state, the blocks fine-tuning unfreezes (from the
module tree), and the zoo's architectures (MadryLab-format Wide-ResNet-50-2 files load)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compute.finetune import FinetuneConfig, prepare_model
from compute.models import ARCHITECTURES, build_model, load_checkpoint
from compute.models.architectures import IMAGENET_MEAN, IMAGENET_STD
from tests.test_checkpoints import madry_layout


@pytest.mark.parametrize("arch", ["small_resnet", "resnet18"])
def test_seeded_build_is_reproducible_and_leaves_the_global_generator_alone(arch: str) -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b, c = build_model(arch, 10, seed=1), build_model(arch, 10, seed=1), build_model(arch, 10, seed=2)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def _trainable_blocks(arch: str, blocks: int) -> set[str]:
    """Names (stage.index from the module tree) of the blocks whose parameters fine-tuning trains."""
    model = build_model(arch, 10)
    cfg = FinetuneConfig("s", "x", "digits", 20, 0, blocks, 1, 1)
    model = prepare_model(model, cfg, 10, torch.device("cpu"))
    return {name for name, block in model.blocks() if all(p.requires_grad for p in block.parameters())}


def test_resnet50_blocks_are_the_papers() -> None:
    """The paper's 1, 3 and 9 blocks of ResNet-50: layer4.2; layer4.*; layer3.* + layer4.*."""
    layer3 = {f"layer3.{i}" for i in range(6)}
    layer4 = {f"layer4.{i}" for i in range(3)}
    assert _trainable_blocks("resnet50", 0) == set()
    assert _trainable_blocks("resnet50", 1) == {"layer4.2"}
    assert _trainable_blocks("resnet50", 3) == layer4
    assert _trainable_blocks("resnet50", 9) == layer3 | layer4


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_blocks_are_the_residual_stages_in_order(arch: str) -> None:
    model = build_model(arch, 10)
    names = [name for name, _ in model.blocks()]
    stages = [n.split(".")[0] for n in names]
    assert stages == sorted(stages) and set(stages) == {"layer1", "layer2", "layer3", "layer4"}
    for name, block in model.blocks():
        stage, index = name.split(".")
        assert getattr(model.net, stage)[int(index)] is block


BOTTLENECK_BLOCKS = [f"layer1.{i}" for i in range(3)] + [f"layer2.{i}" for i in range(4)] + \
    [f"layer3.{i}" for i in range(6)] + [f"layer4.{i}" for i in range(3)]
BASIC_BLOCKS = [f"layer{s}.{i}" for s in range(1, 5) for i in range(2)]


@pytest.mark.parametrize(("arch", "blocks", "size"), [
    ("wide_resnet50_2", BOTTLENECK_BLOCKS, 224),
    ("resnet50", BOTTLENECK_BLOCKS, 224),
    ("resnet18", BASIC_BLOCKS, 32),  # unchanged for its current users
    ("resnet18_224", BASIC_BLOCKS, 224),
])
def test_block_lists_come_from_the_module_tree(arch: str, blocks: list[str], size: int) -> None:
    model = build_model(arch, 5)
    assert [name for name, _ in model.blocks()] == blocks
    assert model.input_size == size
    for name, block in model.blocks():  # the names point at the real modules
        stage, idx = name.split(".")
        assert block is getattr(model.net, stage)[int(idx)]


def test_wide_resnet_is_twice_as_wide_inside_its_blocks() -> None:
    wide, narrow = build_model("wide_resnet50_2", 3), build_model("resnet50", 3)
    assert wide.num_features == narrow.num_features == 2048  # same outputs per block ...
    assert wide.net.layer1[0].conv1.out_channels == 2 * narrow.net.layer1[0].conv1.out_channels  # ... wider inside


def _madry_file(net: torch.nn.Module, path: Path) -> Path:
    """`net` saved as MadryLab `robustness` does (see tests/test_checkpoints.py's `madry_layout`)."""
    torch.save({"model": madry_layout(net), "epoch": 90}, path)
    return path


@pytest.mark.slow
def test_madry_wide_resnet50_2_checkpoint_loads_and_is_recognised(tmp_path: Path) -> None:
    """Random weights written in the zoo's format; loaded without --arch, the logits match the original net."""
    torch.manual_seed(0)
    net = ARCHITECTURES["wide_resnet50_2"].factory(7).eval()
    path = _madry_file(net, tmp_path / "wide_resnet50_2_l2_eps3.ckpt")
    model, info = load_checkpoint(path)  # the architecture is told apart from resnet50 by its shapes
    assert (info.arch, info.format, info.num_classes, info.input_size) == ("wide_resnet50_2", "madry", 7, 224)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - mean) / std), atol=1e-4)


def test_resnet50_files_are_still_guessed_as_resnet50(tmp_path: Path) -> None:
    """Registering a same-keys architecture must not make ResNet-50 files ambiguous."""
    net = ARCHITECTURES["resnet50"].factory(4).eval()
    _, info = load_checkpoint(_madry_file(net, tmp_path / "r50.ckpt"))
    assert info.arch == "resnet50"
