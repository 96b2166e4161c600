"""app/uploads.py: every kind of upload either becomes a (C, S, S) image in [0, 1] or a one-line UploadError."""

from __future__ import annotations

import io
import re
import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from app.uploads import (
    MAX_PIXELS,
    TargetFormat,
    UploadError,
    load_upload,
    prepare_sketch,
    strict_bomb_warnings,
)
from compute.errors import RtxError
from compute.images import to_png
from tests.helpers.image_files import encode, png_header_only

MNIST = TargetFormat(1, 28)
DIGITS = TargetFormat(1, 8)
COLOUR = TargetFormat(3, 32)


def noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --- what works ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("target", "seed"), [(MNIST, 0), (DIGITS, 1)])
def test_stored_thumbnail_round_trips_exactly(target: TargetFormat, seed: int) -> None:
    """A target image stored by `to_png` (nearest-upscaled) comes back as the very same tensor."""
    pixels = torch.from_numpy(noise((1, target.size, target.size), seed)).float() / 255  # (1, S, S)
    pixels[:, 0, :] = 0  # a dark border so the grey-target auto-invert leaves it alone
    prepared = load_upload(to_png(pixels), target)
    assert prepared.tensor.shape == (1, target.size, target.size)
    assert torch.equal(prepared.tensor, pixels)
    assert prepared.batch.shape == (1, 1, target.size, target.size)


def test_light_background_is_inverted_for_grey_targets_only() -> None:
    paper = np.full((40, 40), 255, np.uint8)
    paper[10:30, 18:22] = 0  # a dark "1" on white paper
    grey = load_upload(encode(Image.fromarray(paper)), MNIST)
    assert grey.tensor[0, 0, 0] == 0 and grey.tensor[0, 14, 14] > 0.9
    assert any("inverted" in note for note in grey.notes)
    kept = load_upload(encode(Image.fromarray(paper)), MNIST, invert="no")
    assert kept.tensor[0, 0, 0] == 1
    colour = load_upload(encode(Image.fromarray(paper)), COLOUR)
    assert colour.tensor.shape == (3, 32, 32) and colour.tensor[:, 0, 0].eq(1).all()


def test_rgb_to_grey_uses_luma_and_grey_to_rgb_replicates() -> None:
    rgb = np.zeros((28, 28, 3), np.uint8)
    rgb[..., 1] = 200  # pure green: luma 0.587 * 200 / 255
    grey = load_upload(encode(Image.fromarray(rgb)), MNIST)
    assert torch.allclose(grey.tensor, torch.full((1, 28, 28), 0.587 * 200 / 255), atol=1e-5)
    replicated = load_upload(encode(Image.fromarray(np.full((32, 32), 77, np.uint8))), COLOUR)
    assert torch.allclose(replicated.tensor, torch.full((3, 32, 32), 77 / 255))


def test_rgba_dark_ink_on_transparent_sheet_is_visible() -> None:
    rgba = np.zeros((28, 28, 4), np.uint8)  # fully transparent black ...
    rgba[5:23, 12:16] = (0, 0, 0, 255)  # ... with an opaque black stroke
    prepared = load_upload(encode(Image.fromarray(rgba)), MNIST)
    assert prepared.tensor[0, 0, 0] == 0 and prepared.tensor[0, 14, 13] == 1  # composited on white, inverted
    assert "transparency composited on white" in prepared.notes


def test_palette_and_palette_with_transparency() -> None:
    palette = Image.fromarray(noise((20, 20, 3))).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert load_upload(encode(palette), COLOUR).tensor.shape == (3, 32, 32)
    transparent = Image.new("P", (10, 10), 0)
    transparent.putpalette([0, 0, 0, 255, 255, 255])
    transparent.info["transparency"] = 0
    prepared = load_upload(encode(transparent, transparency=0), COLOUR)
    assert prepared.tensor.eq(1).all()  # every pixel transparent -> white paper


def test_sixteen_bit_grey_is_scaled_by_its_depth() -> None:
    deep = np.full((28, 28), 65535, np.uint16)
    deep[:, 14:] = 32768
    image = Image.fromarray(deep)
    assert image.mode == "I;16"
    prepared = load_upload(encode(image), MNIST, invert="no")
    assert prepared.original_mode == "I;16"
    assert prepared.tensor[0, 0, 0] == pytest.approx(1.0)
    assert prepared.tensor[0, 0, 20] == pytest.approx(32768 / 65535, abs=1e-6)


def test_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (64, 48), (0, 255, 255, 0))  # red
    prepared = load_upload(encode(cmyk, "JPEG", quality=95), COLOUR)
    assert prepared.original_mode == "CMYK"
    red, green, blue = prepared.tensor[:, 16, 16].tolist()
    assert red > 0.9 and green < 0.1 and blue < 0.1


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("L", (28, 28), value) for value in (30, 220, 120)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    prepared = load_upload(buffer.getvalue(), MNIST, invert="no")
    assert prepared.tensor.mean().item() == pytest.approx(30 / 255, abs=2 / 255)
    assert "first of 3 frames" in prepared.notes


def test_one_pixel_image_becomes_a_flat_square() -> None:
    prepared = load_upload(encode(Image.new("L", (1, 1), 40)), MNIST)
    assert prepared.tensor.shape == (1, 28, 28)
    assert torch.allclose(prepared.tensor, torch.full((1, 28, 28), 40 / 255))


def test_extreme_aspect_ratio_is_padded_not_blown_up() -> None:
    strip = np.zeros((20_000, 2), np.uint8)
    strip[:, :] = 255
    start = time.perf_counter()
    prepared = load_upload(encode(Image.fromarray(strip)), MNIST, invert="no")
    assert time.perf_counter() - start < 2.0
    assert prepared.tensor.shape == (1, 28, 28)
    assert prepared.tensor[0, :, 14].min() > 0.5  # the strip stays in the middle column


def test_non_square_is_centred_and_padded_with_its_border_colour() -> None:
    wide = np.full((10, 40), 0, np.uint8)
    wide[3:7, 18:22] = 255
    prepared = load_upload(encode(Image.fromarray(wide)), MNIST)
    assert prepared.tensor[0, 0].eq(0).all() and prepared.tensor[0, 14, 14] > 0.5


def test_exif_rotation_is_applied() -> None:
    halves = np.zeros((20, 40), np.uint8)
    halves[:, :20] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the white half ends up on top
    image = Image.fromarray(halves)
    prepared = load_upload(encode(image, "JPEG", exif=exif.tobytes(), quality=95), MNIST, invert="no")
    top, bottom = prepared.tensor[0, 3:10, 10:18].mean(), prepared.tensor[0, 18:25, 10:18].mean()
    assert top > 0.8 and bottom < 0.2


def test_large_jpeg_decodes_quickly_at_reduced_scale() -> None:
    photo = encode(Image.new("RGB", (6000, 4000), (10, 200, 30)), "JPEG", quality=80)
    start = time.perf_counter()
    prepared = load_upload(photo, COLOUR)
    assert time.perf_counter() - start < 1.0
    assert prepared.tensor[:, 16, 16].tolist() == pytest.approx([10 / 255, 200 / 255, 30 / 255], abs=0.03)


def test_path_input(tmp_path) -> None:
    path = tmp_path / "digit.png"
    path.write_bytes(encode(Image.new("L", (28, 28), 0)))
    assert load_upload(path, MNIST).tensor.shape == (1, 28, 28)
    assert load_upload(str(path), MNIST).tensor.shape == (1, 28, 28)


# --- what is refused, and with which words --------------------------------------------------------------
BAD_INPUTS = {
    "text": (b"hello, I am not an image\n" * 10, "not an image"),
    "empty": (b"", "empty"),
    "html": (b"<html><body>nope</body></html>", "not an image"),
    "eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image"),
    "truncated_png": (encode(Image.fromarray(noise((64, 64, 3))))[:2000], "truncated or corrupt"),
    "truncated_jpeg": (encode(Image.fromarray(noise((64, 64, 3))), "JPEG")[:1500], "truncated or corrupt"),
    "header_only_jpeg": (encode(Image.fromarray(noise((64, 64, 3))), "JPEG")[:40], "truncated or corrupt"),
    "ten_thousand_square": (png_header_only(10_000, 10_000), "10,000 x 10,000 pixels (100.0 megapixels), over the"),
    "bomb_over_pillow_limit": (png_header_only(30_000, 30_000), "900.0 megapixels, over the limit of 50.0 megapixels"),
}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_line(case: str) -> None:
    data, words = BAD_INPUTS[case]
    start = time.perf_counter()
    with pytest.raises(UploadError, match=re.escape(words)) as info:
        load_upload(data, MNIST)
    assert time.perf_counter() - start < 1.0
    assert isinstance(info.value, RtxError) and "\n" not in str(info.value)


def test_corrupt_middle_of_png() -> None:
    data = bytearray(encode(Image.fromarray(noise((64, 64, 3)))))
    data[300:400] = bytes(100)
    with pytest.raises(UploadError, match="truncated or corrupt"):
        load_upload(bytes(data), MNIST)


def test_real_compressed_bomb_is_refused_before_decoding() -> None:
    """A real 8,000 x 8,000 PNG (64 MP, ~60 kB on disk) is refused from its header."""
    bomb = encode(Image.new("L", (8_000, 8_000), 0))
    assert len(bomb) < 200_000 and 8_000 * 8_000 > MAX_PIXELS
    start = time.perf_counter()
    with pytest.raises(UploadError, match="over the limit of 50.0 megapixels"):
        load_upload(bomb, MNIST)
    assert time.perf_counter() - start < 0.2


def test_pillow_bomb_warning_becomes_our_message() -> None:
    with warnings.catch_warnings():
        strict_bomb_warnings()
        with pytest.raises(UploadError, match="too large: 100.0 megapixels, over the limit of 1000.0 megapixels"):
            load_upload(png_header_only(10_000, 10_000), MNIST, max_pixels=10**9)


def test_byte_limit_and_missing_path(tmp_path) -> None:
    with pytest.raises(UploadError, match="limit is"):
        load_upload(encode(Image.fromarray(noise((64, 64)))), MNIST, max_bytes=1_000)
    with pytest.raises(UploadError, match="no file"):
        load_upload(tmp_path / "gone.png", MNIST)


def test_unknown_invert_choice() -> None:
    with pytest.raises(UploadError, match="invert must be one of"):
        load_upload(encode(Image.new("L", (4, 4))), MNIST, invert="maybe")


# --- drawings -------------------------------------------------------------------------------------------
def test_sketch_is_cropped_centred_and_light_on_dark() -> None:
    canvas = np.zeros((280, 280, 4), np.uint8)  # transparent canvas
    canvas[20:120, 200:220] = (0, 0, 0, 255)  # a black "1" drawn in the top-right corner
    prepared = prepare_sketch(canvas, MNIST)
    image = prepared.tensor[0]  # (28, 28)
    assert image.shape == (28, 28)
    assert image[:3].max() == 0 and image[-3:].max() == 0  # MNIST-like margin
    rows, cols = torch.nonzero(image > 0.5, as_tuple=True)
    assert abs(rows.float().mean() - 13.5) < 1.5 and abs(cols.float().mean() - 13.5) < 1.5
    assert image.max() == pytest.approx(1.0)


def test_sketch_on_white_rgb_canvas_and_colour_target() -> None:
    canvas = np.full((100, 100, 3), 255, np.uint8)
    canvas[40:60, 40:60] = 0
    grey = prepare_sketch(canvas, DIGITS)
    assert grey.tensor.shape == (1, 8, 8) and grey.tensor[0, 4, 4] > 0.9 and grey.tensor[0, 0, 0] == 0
    colour = prepare_sketch(canvas, COLOUR)
    assert colour.tensor.shape == (3, 32, 32) and colour.tensor[:, 0, 0].eq(1).all()


@pytest.mark.parametrize("canvas", [None, np.zeros((50, 50, 4), np.uint8), np.full((50, 50, 3), 255, np.uint8)])
def test_empty_sketch_is_refused(canvas: np.ndarray | None) -> None:
    with pytest.raises(UploadError, match="draw a digit"):
        prepare_sketch(canvas, MNIST)


def test_target_format_validation() -> None:
    with pytest.raises(ValueError):
        TargetFormat(2, 28)
