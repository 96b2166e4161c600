"""The fine-tuning engine and the authors' augmentation: same numbers as the one-run reference, image by image."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from compute.data.augment import apply_paper, draw_paper_params, train_input


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
