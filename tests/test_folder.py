"""folder:PATH targets and caltech101: layouts, the deterministic split, any image mode and size, and every bad
input as one line. All images are written here (PNG, JPEG, GIF, 16-bit, transparent); no network."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compute.data import caltech as caltech_module
from compute.data import describe, load_dataset
from compute.data.folder import MAX_SIZE, BadImagesError, SplitRule, load_split, scan_folder
from compute.errors import RtxError

RNG = np.random.default_rng(0)


def _rgb(h: int, w: int) -> Image.Image:
    return Image.fromarray((RNG.random((h, w, 3)) * 255).astype(np.uint8), "RGB")


def _grey(h: int, w: int) -> Image.Image:
    return Image.fromarray((RNG.random((h, w)) * 255).astype(np.uint8), "L")


def _images(folder: Path, count: int, make=_rgb, size=(20, 24), ext="png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        make(*size).save(folder / f"img{i:03d}.{ext}")


def _two_classes(root: Path, count: int = 10, **kw) -> Path:
    for name in ("cat", "dog"):
        _images(root / name, count, **kw)
    return root


def _spec(root: Path) -> str:
    return f"folder:{root}"


# --- layouts -----------------------------------------------------------------------------------------------------
def test_train_test_layout_keeps_the_given_split(tmp_path: Path) -> None:
    for split, n in (("train", 5), ("test", 3)):
        for name in ("b_dog", "a_cat"):
            _images(tmp_path / split / name, n)
    train, test = load_dataset(_spec(tmp_path), "train"), load_dataset(_spec(tmp_path), "test")
    assert train.classes == test.classes == ("a_cat", "b_dog")  # sorted folder names
    assert train.labels.tolist() == [0] * 5 + [1] * 5 and test.labels.tolist() == [0] * 3 + [1] * 3
    assert train.images.shape == (10, 3, 20, 20)  # the centred square of 20 x 24 images
    assert "train/test" in train.source


def test_one_folder_is_split_per_class_deterministically(tmp_path: Path) -> None:
    _two_classes(tmp_path, 10)
    first = scan_folder(tmp_path)
    assert [len(first.files[s]) for s in ("train", "test")] == [16, 4]  # 20% of each class of 10 to test
    train_files = {p for p, _ in first.files["train"]}
    assert not train_files & {p for p, _ in first.files["test"]}
    again = scan_folder(tmp_path, SplitRule(seed=0))
    assert again.files == first.files  # same seed, same split
    other = scan_folder(tmp_path, SplitRule(seed=1))
    assert other.files["test"] != first.files["test"]  # the seed matters
    assert describe(_spec(tmp_path))["split"] == "20% of each class to test (seed 0)"


def test_adding_a_class_leaves_the_other_splits_alone(tmp_path: Path) -> None:
    _two_classes(tmp_path, 10)
    before = {p.name for p, label in scan_folder(tmp_path).files["test"] if label == 0}
    _images(tmp_path / "aardvark", 10)  # sorts first: the labels shift, the files do not
    after = {p.name for p, label in scan_folder(tmp_path).files["test"] if label == 1}
    assert before == after


def test_grey_images_stay_grey_and_exact(tmp_path: Path) -> None:
    pixels = (np.arange(256, dtype=np.uint8).reshape(16, 16))
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.roll(pixels, i), "L").save(tmp_path / name / f"{i}.png")
    scan = scan_folder(tmp_path, SplitRule(test_fraction=0.34))
    data = torch.cat([load_dataset(_spec(tmp_path), s).images for s in ("train", "test")])
    assert (scan.channels, scan.size) == (1, 16) and data.shape == (6, 1, 16, 16)
    written = [torch.from_numpy(np.roll(pixels, i).astype(np.float32) / 255) for i in range(3)]
    for img in data:  # no resampling when every image already has the size: the pixels come back exactly
        assert any(torch.equal(img[0], w) for w in written)


def test_mixed_sizes_modes_and_formats_are_handled(tmp_path: Path) -> None:
    """PNG, JPEG, GIF, BMP, WebP, TIFF; RGB, grey, RGBA, palette, 16-bit; portrait, landscape, tiny, large."""
    cat, dog = tmp_path / "cat", tmp_path / "dog"
    cat.mkdir(), dog.mkdir()
    _rgb(60, 45).save(cat / "big.jpg")
    _grey(9, 40).save(cat / "grey.png")
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(cat / "clear.png")  # fully transparent -> white
    _rgb(30, 30).convert("P").save(cat / "palette.gif")
    Image.fromarray((RNG.random((40, 40)) * 65535).astype(np.uint16)).save(dog / "deep.png")  # 16-bit grey
    _rgb(60, 20).save(dog / "tall.bmp")
    _rgb(25, 25).save(dog / "web.webp")
    _rgb(35, 45).save(dog / "scan.tiff")
    scan = scan_folder(tmp_path, SplitRule(test_fraction=0.25))
    assert (scan.size, scan.channels) == (50, 3)  # the largest shorter side (the 50 x 50 PNG), colour
    images = torch.cat([load_dataset(_spec(tmp_path), s).images for s in ("train", "test")])
    assert images.shape == (8, 3, 50, 50) and 0 <= float(images.min()) and float(images.max()) <= 1
    white = [i for i, img in enumerate(images) if torch.all(img == 1)]
    assert len(white) == 1  # the transparent image, composited on white


def test_large_images_are_capped(tmp_path: Path) -> None:
    _two_classes(tmp_path, 3, size=(300, 400), ext="jpg")
    scan = scan_folder(tmp_path, SplitRule(test_fraction=0.34))
    assert scan.size == MAX_SIZE
    assert load_dataset(_spec(tmp_path), "test").images.shape[-2:] == (MAX_SIZE, MAX_SIZE)


def test_variants_apply_to_folders(tmp_path: Path) -> None:
    _two_classes(tmp_path, 5, size=(32, 32))
    plain = load_dataset(_spec(tmp_path), "train")
    low = load_dataset(_spec(tmp_path) + "+lowres(8)", "train")
    assert low.images.shape == plain.images.shape and not torch.equal(low.images, plain.images)
    assert low.name == _spec(tmp_path) + "+lowres(8)"


def test_hidden_files_are_ignored(tmp_path: Path) -> None:
    _two_classes(tmp_path, 5)
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\0\1junk")
    (tmp_path / ".git").mkdir()
    assert scan_folder(tmp_path).classes == ("cat", "dog")


# --- bad input: one line each ------------------------------------------------------------------------------------
def _missing(root: Path) -> Path:
    return root / "nope"


def _a_file(root: Path) -> Path:
    _rgb(4, 4).save(root / "one.png")
    return root / "one.png"


def _no_classes(root: Path) -> Path:
    _images(root, 3)  # images but no class folders
    return root


def _empty_class(root: Path) -> Path:
    _two_classes(root, 4)
    (root / "empty").mkdir()
    return root


def _one_class(root: Path) -> Path:
    _images(root / "only", 4)
    return root


def _train_only(root: Path) -> Path:
    _two_classes(root / "train", 4)
    return root


def _different_classes(root: Path) -> Path:
    _two_classes(root / "train", 4)
    _images(root / "test" / "cat", 2)
    _images(root / "test" / "cow", 2)
    return root


def _too_few_to_split(root: Path) -> Path:
    _two_classes(root, 4)
    _images(root / "lonely", 1)
    return root


@pytest.mark.parametrize(("make", "message"), [
    (_missing, r"does not exist; check the path"),
    (_a_file, r"is a file, not a folder"),
    (_no_classes, r"has no class folders; lay it out as .*/CLASS/IMAGE"),
    (_empty_class, r"empty class folder\(s\) in .*: empty; add images"),
    (_one_class, r"has one class folder \(only\); a classifier needs at least 2"),
    (_train_only, r"has train/ but no test/; add .*/test/CLASS/IMAGE"),
    (_different_classes, r"hold different class folders \(cow, dog\)"),
    (_too_few_to_split, r"lonely .* fewer than 2 readable images, too few to split \(20% of each class to test \(seed 0\)\)"),
])
def test_bad_layouts_are_one_line(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(RtxError, match=message) as err:
        load_dataset(_spec(path), "train")
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def _with_bad_files(root: Path) -> Path:
    _two_classes(root, 5)
    (root / "cat" / "notes.txt").write_text("not an image")
    good = root / "dog" / "img000.png"
    (root / "dog" / "half.png").write_bytes(good.read_bytes()[:12])  # header cut: unreadable
    return root


def test_bad_files_are_refused_with_their_list(tmp_path: Path) -> None:
    root = _with_bad_files(tmp_path)
    with pytest.raises(BadImagesError) as err:
        load_dataset(_spec(root), "train")
    text = str(err.value)
    assert "\n" not in text and "2 file(s)" in text and "--skip-bad-images" in text
    assert err.value.files == ("cat/notes.txt (not an image)", "dog/half.png (unreadable or truncated)")


def test_truncated_pixel_data_is_caught_when_decoding(tmp_path: Path) -> None:
    _two_classes(tmp_path, 5, size=(64, 64), ext="jpg")
    whole = (tmp_path / "cat" / "img000.jpg").read_bytes()
    for i in range(5):  # every cat image loses its second half: headers read fine, pixels do not
        (tmp_path / "cat" / f"img{i:03d}.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BadImagesError, match=r"cat/img00\d\.jpg \(truncated or corrupt\)"):
        load_dataset(_spec(tmp_path), "train")
    scan = scan_folder(tmp_path)
    images, labels = load_split(scan, "train", skip_bad_images=True)  # left out, with a note on stderr
    assert labels.tolist() == [1] * 4 and images.shape == (4, 3, 64, 64)


SKIP_ENV = "RTX_SKIP_BAD_IMAGES"  # a default for Settings.skip_bad_images (compute.settings.Settings.from_env)


def test_bad_files_can_be_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _with_bad_files(tmp_path)
    monkeypatch.setenv(SKIP_ENV, "1")  # read by Settings.from_env only: below the edge the argument decides
    with pytest.raises(BadImagesError):
        scan_folder(root)
    scan = scan_folder(root, skip_bad_images=True)
    assert scan.skipped == ("cat/notes.txt (not an image)", "dog/half.png (unreadable or truncated)")
    assert len(scan.files["train"]) + len(scan.files["test"]) == 10
    assert "2 bad files skipped" in scan.describe()


def test_skipping_every_image_of_a_class_is_still_an_error(tmp_path: Path) -> None:
    _images(tmp_path / "cat", 4)
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "a.txt").write_text("x")
    (tmp_path / "dog" / "b.txt").write_text("y")
    with pytest.raises(RtxError, match=r"class folder\(s\) dog in .* hold fewer than 2 readable images"):
        scan_folder(tmp_path, skip_bad_images=True)


# --- caltech101 ------------------------------------------------------------------------------------------------
def test_caltech101_offline_names_data_root_and_download(tmp_path: Path) -> None:
    with pytest.raises(RtxError, match=r"Caltech101 not found under .*--data-root DIR .*--download") as err:
        load_dataset("caltech101", "train", root=tmp_path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "caltech101").exists()  # nothing created on the way


@pytest.mark.slow
def test_caltech101_layout_loads_with_30_per_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's unpacked layout, made here with tiny images: 31 per class (the smallest real class)."""
    monkeypatch.setattr(caltech_module, "IMAGE_SIZE", 8)
    folder = tmp_path / "caltech101" / "101_ObjectCategories"
    image = _rgb(10, 12)
    for name in (*caltech_module.CLASSES, caltech_module.BACKGROUND):
        (folder / name).mkdir(parents=True)
        for i in range(31):
            image.save(folder / name / f"image_{i + 1:04d}.jpg")
    test = load_dataset("caltech101", "test", root=tmp_path)
    assert test.images.shape == (101, 3, 8, 8) and test.labels.tolist() == list(range(101))
    assert test.classes == caltech_module.CLASSES and "30 train images per class" in test.source
    train_scan = scan_folder(folder, caltech_module.CALTECH101_SPLIT, exclude=(caltech_module.BACKGROUND,))
    assert len(train_scan.files["train"]) == 30 * 101


@pytest.mark.parametrize("executor", [("--workers", "1"), ("--workers", "2"), ("--executor", "engine")],
                         ids=["in-process", "worker-processes", "engine"])
def test_cli_skip_bad_images_flag_fine_tunes_the_runs_bad_files_failed(
        source_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        executor: tuple[str, str]) -> None:
    """`rtx finetune --targets folder:PATH` with bad files: refused before any run with the one-line reason naming
    --skip-bad-images (the plan check scans the folder, issue 23); the same command with the flag fine-tunes on the
    readable images, in this process, in worker processes and in the engine (each loads the folder itself)."""
    from compute.cache import CacheReader
    from compute.cli import main

    monkeypatch.delenv(SKIP_ENV, raising=False)
    root = _with_bad_files(tmp_path / "pets")
    argv = ["--cache", str(source_cache), "finetune", "--preset", "tiny", "--targets", _spec(root), "--sizes", "4",
            "--epochs", "1", "--test-every", "1", *executor, "--device", "cpu", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--skip-bad-images" in err and CacheReader(source_cache).runs().empty
    assert main([*argv, "--skip-bad-images"]) == 0
    assert "4 planned, 0 already cached, 4 run, 0 failed" in capsys.readouterr().out
    assert SKIP_ENV not in os.environ  # the flag travels in Settings (to worker processes and Ray tasks alike)


def test_settings_take_skip_bad_images_from_the_environment_as_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """RTX_SKIP_BAD_IMAGES is read once, at the edge (Settings.from_env); an explicit value wins."""
    from compute.settings import Settings

    monkeypatch.delenv(SKIP_ENV, raising=False)
    assert not Settings.from_env(device="cpu").skip_bad_images
    monkeypatch.setenv(SKIP_ENV, "yes")
    assert Settings.from_env(device="cpu").skip_bad_images
    assert not Settings.from_env(device="cpu", skip_bad_images=False).skip_bad_images
    monkeypatch.setenv(SKIP_ENV, "0")
    assert not Settings.from_env(device="cpu").skip_bad_images


def test_train_source_on_a_folder_with_bad_files_follows_the_environment_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """`rtx train-source --dataset folder:PATH` has no --skip-bad-images flag; $RTX_SKIP_BAD_IMAGES (read once by
    Settings.from_env) decides, and reaches the loaders as an argument: refused without it, trained with it."""
    from compute.cli import main

    root = _with_bad_files(tmp_path / "pets")
    argv = ["--cache", str(tmp_path / "cache"), "train-source", "--name", "pets", "--arch", "small_resnet",
            "--dataset", _spec(root), "--epochs", "1", "--device", "cpu", "--no-progress"]
    monkeypatch.delenv(SKIP_ENV, raising=False)
    assert main(argv) == 2
    assert "--skip-bad-images" in capsys.readouterr().err
    monkeypatch.setenv(SKIP_ENV, "1")
    assert main(argv) == 0
    assert "pets: clean accuracy" in capsys.readouterr().out
