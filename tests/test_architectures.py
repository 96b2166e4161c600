"""Architectures: seeded construction without global random state, and the blocks fine-tuning unfreezes."""

from __future__ import annotations

import pytest
import torch

from compute.finetune import FinetuneConfig, prepare_model
from compute.models import ARCHITECTURES, build_model


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
