"""The two subset samplers: the authors' is numpy's RandomState draw exactly; the paper text's covers every label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compute.data import load_dataset, paper_seeds, sample_subset
from compute.data.sampler import authors_subset
from compute.engine import run_siblings
from compute.errors import RtxError
from compute.finetune import FinetuneConfig, finetune, run_subset
from compute.models import build_model


@pytest.mark.parametrize(("n_images", "n"), [(60_000, 100), (50_000, 1_600), (4_000, 20), (30, 30)])
def test_authors_sampler_is_numpys_randomstate_choice_exactly(n_images: int, n: int) -> None:
    labels = np.arange(n_images) % 10
    for seed in paper_seeds(3):
        got = sample_subset(labels, n, seed, "authors")
        expected = np.random.RandomState(seed).choice(n_images, n, replace=False)
        literal = np.random.RandomState(seed).choice(list(range(n_images)), size=n, replace=False)  # robustness' form
        assert got.dtype == np.int64
        assert np.array_equal(got, expected) and np.array_equal(got, literal)


def test_authors_sampler_is_pinned_and_keeps_the_draws_order() -> None:
    """RandomState's stream is frozen by numpy (legacy generator): the same integers on every machine and version.
    Pinned: the first eight of Fashion-MNIST's 60,000 at n = 100 and the first paper seed."""
    got = authors_subset(60_000, 100, 20_000_000)
    assert got[:8].tolist() == [58846, 47525, 16279, 44490, 2539, 98, 55811, 10809]
    assert not np.array_equal(got, np.sort(got))  # unsorted, as drawn
    cfg = FinetuneConfig("s", "x", "fmnist", 100, 20_000_000, 1, 1, 1, sampler="authors")
    assert np.array_equal(run_subset(cfg, np.zeros(60_000, dtype=np.int64)), got)  # the run trains in this order


def test_the_whole_split_is_every_image_in_order_for_both() -> None:
    labels = np.arange(50) % 5
    for sampler in ("authors", "per-label"):
        assert np.array_equal(sample_subset(labels, None, 7, sampler), np.arange(50))


def test_samplers_are_checked() -> None:
    labels = np.arange(30) % 10
    with pytest.raises(RtxError, match="unknown sampler 'random'; valid choices: per-label, authors"):
        sample_subset(labels, 10, 0, "random")
    with pytest.raises(RtxError, match="exceeds the dataset's 30 images"):
        sample_subset(labels, 31, 0, "authors")
    with pytest.raises(RtxError, match="outside numpy RandomState"):
        sample_subset(labels, 10, 2**32, "authors")
    assert len(sample_subset(labels, 5, 0, "authors")) == 5  # fewer images than labels: allowed, as theirs
    with pytest.raises(RtxError, match="smaller than the 10 labels"):
        sample_subset(labels, 5, 0, "per-label")


def test_authors_sampler_misses_labels_on_100_classes_as_expected() -> None:
    """CIFAR-100's layout (500 per label): the expected number of labels left out at n draws is about
    100 * (1 - 1/100)^n (37 at n = 100); over the 20 paper seeds the mean sits within 3 of it (the count's
    standard deviation over seeds measured 3.3 over 300 seeds, so a mean over 20 varies by about 0.75)."""
    labels = np.repeat(np.arange(100), 500)
    for n in (100, 200):
        missing = [100 - len(np.unique(labels[sample_subset(labels, n, s, "authors")])) for s in paper_seeds(20)]
        assert abs(np.mean(missing) - 100 * 0.99**n) < 3
        covered = [len(np.unique(labels[sample_subset(labels, n, s, "per-label")])) for s in paper_seeds(3)]
        assert covered == [100] * 3


def _hundred_class_folder(root: Path, train: int = 2, test: int = 1) -> str:
    """PATH/train|test/cNN/*.png: 100 classes of tiny grey images whose brightness encodes the class."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for c in range(100):
            folder = root / split / f"c{c:02d}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = (rng.integers(0, 40, (8, 8)) + 2 * c).astype(np.uint8)
                Image.fromarray(pixels, "L").save(folder / f"{i}.png")
    return f"folder:{root}"


def test_a_100_class_run_with_missing_labels_still_trains_and_tests_every_class(tmp_path: Path) -> None:
    target = _hundred_class_folder(tmp_path / "hundred")
    train = load_dataset(target, "train")
    source = build_model("small_resnet", 10, seed=1).eval()
    cfg = FinetuneConfig("s", "x", target, 50, 20_000_000, 1, 2, 1, batch_size=16, augment="none",
                         sampler="authors")
    result = finetune(source, cfg, keep_model=True, device="cpu")
    seen = set(train.labels[torch.as_tensor(result.subset_indices)].tolist())
    assert len(seen) < 100  # 50 images cannot cover 100 labels
    assert result.model.num_classes == 100  # the FC is sized by the target, not by the subset
    assert [p.epoch for p in result.curve] == [1, 2] and 0 <= result.final_test_acc <= 1
    test = load_dataset(target, "test")
    assert len(test.labels) == 100 and set(test.labels.tolist()) == set(range(100))  # evaluated on all classes
    (_, grouped), = run_siblings(source, [cfg], device="cpu")  # the engine takes the same subset
    assert not isinstance(grouped, BaseException), grouped
    assert np.array_equal(grouped.subset_indices, result.subset_indices)
    with pytest.raises(RtxError, match="smaller than the 100 labels"):
        finetune(source, FinetuneConfig("s", "x", target, 50, 20_000_000, 1, 1, 1, augment="none"), device="cpu")
