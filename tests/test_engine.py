"""The fine-tuning engine and the authors' augmentation: same numbers as the one-run reference, image by image."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from compute.data.augment import apply_paper, draw_paper_params, train_input
from compute.data.registry import DATASETS, DatasetInfo, register
from compute.engine import run_cell
from compute.finetune import FinetuneConfig, finetune
from compute.models import build_model


def _reference_paper(image: torch.Tensor, params, i: int, size: int) -> torch.Tensor:
    """torchvision.transforms.v2's functional ops on one float image, with image i's parameters."""
    x = TF.resize(image.float() / 255, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    x = TF.crop(TF.pad(x, [4], fill=0), int(params.crop[i, 0]), int(params.crop[i, 1]), size, size)
    if params.flip[i]:
        x = TF.horizontal_flip(x)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for op in params.order[i].tolist():
        x = ops[op](x, float(params.factors[i, op]))
    return TF.rotate(x, float(params.angle[i]), interpolation=InterpolationMode.NEAREST, fill=0)


@pytest.mark.parametrize("size", [32, 64])
def test_paper_augmentation_equals_torchvision_per_image(size: int) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen)
    params = draw_paper_params(16, torch.Generator().manual_seed(1))
    ours = apply_paper(images, params, size)
    ref = torch.stack([_reference_paper(images[i], params, i, size) for i in range(16)])
    assert ours.shape == (16, 3, size, size)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
    # the parameters really vary per image (a test that would pass with one shared draw would be worthless)
    assert len(set(params.crop[:, 0].tolist())) > 1 and 0 < int(params.flip.sum()) < 16
    assert params.angle.abs().max() <= 2 and (params.factors - 1).abs().max() <= 0.25


def test_paper_augmentation_on_grey_targets_is_only_the_upscaling() -> None:
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    out = train_input(images, "paper", 56, gen)
    ref = TF.resize(images.float() / 255, [56, 56], interpolation=InterpolationMode.BILINEAR,
                    antialias=True).expand(-1, 3, -1, -1)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.equal(gen.get_state(), state)  # nothing drawn: grey targets have no random transform


def test_paper_augmentation_draws_from_the_run_generator_only() -> None:
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a = train_input(images, "paper", 32, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global generator must not matter
    b = train_input(images, "paper", 32, torch.Generator().manual_seed(5))
    c = train_input(images, "paper", 32, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# --- the engine equals one run at a time ---------------------------------------------------------------------
def _colour_loader(split: str, root, download: bool):
    """A small offline colour target: random 12x12 RGB images whose label is the brightest channel."""
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = 120 if split == "train" else 60
    images = torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=gen)
    labels = images.float().mean(dim=(2, 3)).argmax(1)
    return images.float() / 255, labels, "synthetic"


def register_colour_target(name: str = "rgb3") -> str:
    if name not in DATASETS:
        register(DatasetInfo(name, ("red", "green", "blue"), 120, 60, 3, 12, True, _colour_loader))
    return name


def _engine_cfg(**kw) -> FinetuneConfig:
    base = dict(source="s", source_checksum="x", target="digits", n_train=40, seed=20_000_000, blocks=1, epochs=3,
                test_every=2, batch_size=16, augment="none", test_limit=50)
    return FinetuneConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def small_source() -> torch.nn.Module:
    return build_model("small_resnet", 7, seed=3).eval()


SEEDS = (20_000_000, 20_100_000, 20_200_000)


@pytest.mark.parametrize("blocks", [0, 1])
@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
@pytest.mark.parametrize("augment", ["none", "paper"])
def test_engine_runs_equal_one_run_at_a_time(small_source, blocks: int, bn_mode: str, augment: str) -> None:
    target = register_colour_target() if augment == "paper" else "digits"
    configs = [_engine_cfg(seed=s, blocks=blocks, bn_mode=bn_mode, augment=augment, target=target,
                           fc_init="normal", lr_schedule="step") for s in SEEDS]
    engine = dict(run_cell(small_source, configs, device="cpu", keep={c.key for c in configs}, max_group=3))
    for cfg in configs:
        ref, got = finetune(small_source, cfg, keep_model=True, device="cpu"), engine[cfg]
        assert not isinstance(got, BaseException), got
        assert (got.subset_indices == ref.subset_indices).all()
        assert [p["epoch"] for p in got.curve] == [p["epoch"] for p in ref.curve]
        for a, b in zip(got.curve, ref.curve, strict=True):
            assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 * max(1.0, abs(b["train_loss"])), (a, b)
            assert abs(a["test_acc"] - b["test_acc"]) <= 1 / 50 + 1e-9, (a, b)  # at most one test image flips
        ref_state, got_state = ref.model.state_dict(), got.model.state_dict()
        for name, value in ref_state.items():
            if value.is_floating_point():
                assert torch.allclose(got_state[name], value, atol=1e-4, rtol=1e-3), name
    # the runs really differ from one another (different subsets, orders, FC initialisations)
    accs = {tuple(engine[c].subset_indices[:5].tolist()) for c in configs}
    assert len(accs) == len(configs)
