"""Turn whatever a user uploads or draws into one image in the target dataset's native format.

The demo's influence query expects a (C, S, S) float tensor in [0, 1] shaped like the target's own images
(e.g. 1 x 28 x 28 white-on-black digits for MNIST-5k, 1 x 8 x 8 for scikit-learn's digits). Uploads are
anything: photos, scans, drawings, 16-bit PNGs, CMYK JPEGs, animated GIFs, broken files, bombs. Every
refusal is an `UploadError` (an `RtxError`) with one sentence a user can act on; no Gradio here, so all of
it is unit-testable.

Decisions (documented in the demo's help text too):
- Size limit: images above `MAX_PIXELS` (50 megapixels, more than any phone photo) are refused from the
  header alone, before any pixel is decoded, so a 10,000 x 10,000 image or a decompression bomb costs
  nothing and cannot exhaust memory (refused, not downscaled: a PNG cannot be decoded at reduced scale).
  Pillow's own guard (warning above 89 MP, error above 179 MP) becomes the same message: its error is
  caught here, and the demo server turns its warning into an error (`strict_bomb_warnings`).
- Formats: only the common raster formats below are opened (Pillow's EPS/PSD/... plugins are not offered
  untrusted bytes).
- Conversion: first frame of animations; EXIF rotation applied; transparency composited on white; 16/32-bit
  grey scaled by its bit depth; CMYK, palette, YCbCr etc. through Pillow's RGB conversion; grey targets get
  ITU-R 601 luma. The image is scaled so its longer side is the native size (area averaging down, bilinear
  up; a 1 x 1 image becomes a flat square), then padded to a square with its own border colour, so nothing
  is cropped away. Digit-like (grey) targets have light ink on a dark ground, so a grey image whose border
  is mostly light (ink on paper) is inverted unless the caller says otherwise.
- A target's own thumbnails (stored nearest-upscaled by an integer factor) come back exactly: area
  averaging undoes integer nearest upscaling.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from compute.errors import RtxError

MAX_BYTES = 20 * 1024 * 1024  # the demo's upload limit; also passed to Gradio's `max_file_size`
MAX_PIXELS = 50_000_000  # width x height; refused from the header, before decoding
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")  # JPEG includes MPO, what many phones write
INVERT_CHOICES = ("auto", "yes", "no")
SKETCH_MARGIN = 4 / 28  # MNIST centres each digit in a 20 x 20 box inside 28 x 28
INK_THRESHOLD = 0.05  # a drawn pixel counts as ink above this (ink is in [0, 1])


class UploadError(RtxError):
    """The upload cannot be used; the message says why and what to send instead."""


@dataclass(frozen=True)
class TargetFormat:
    """The target dataset's native image format: `channels` (1 or 3) x `size` x `size`."""

    channels: int
    size: int

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or self.size < 1:
            raise ValueError(f"unsupported target format {self.channels} x {self.size} x {self.size}")


@dataclass(frozen=True)
class PreparedImage:
    """An upload converted to the target's format, with what was done to it (shown to the user)."""

    tensor: torch.Tensor  # (C, S, S) float32 in [0, 1]
    original_size: tuple[int, int]  # (width, height) as uploaded
    original_mode: str  # Pillow mode as uploaded, e.g. "RGBA", "I;16", "CMYK"
    notes: tuple[str, ...]  # e.g. ("first of 12 frames", "inverted: light background")

    @property
    def batch(self) -> torch.Tensor:
        """(1, C, S, S), what `InfluenceIndex.query` takes."""
        return self.tensor.unsqueeze(0)


def _human_pixels(count: int) -> str:
    return f"{count / 1e6:.1f} megapixels" if count >= 1e5 else f"{count:,} pixels"


def open_image(source: bytes | str | os.PathLike, max_pixels: int = MAX_PIXELS,
               max_bytes: int = MAX_BYTES, draft_size: int | None = None) -> Image.Image:
    """Bytes or a path -> a fully decoded Pillow image (first frame, EXIF rotation applied).

    `draft_size` lets JPEG decode at a reduced scale (1/2 .. 1/8) when only that many pixels per side are
    needed, which makes a 48 MP phone photo cheap.
    """
    if isinstance(source, bytes | bytearray):
        if len(source) == 0:
            raise UploadError("the upload is empty (0 bytes); choose an image file")
        if len(source) > max_bytes:
            raise UploadError(f"the file is {len(source) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
        stream = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise UploadError(f"no file at {path.name!r}; upload the image again")
        size = path.stat().st_size
        if size == 0:
            raise UploadError("the upload is empty (0 bytes); choose an image file")
        if size > max_bytes:
            raise UploadError(f"the file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
        stream = io.BytesIO(path.read_bytes())  # in memory: no file handle left open by lazy (GIF, TIFF) plugins
    try:
        image = Image.open(stream, formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:  # the latter when made an error
        raise _too_large(err, max_pixels) from err
    except UnidentifiedImageError as err:
        raise UploadError("this file is not an image the demo can read; use PNG, JPEG, GIF, BMP, WebP or TIFF"
                          ) from err
    except Exception as err:  # plugins raise OSError, SyntaxError, ValueError, struct.error, ...
        raise UploadError(f"the image is truncated or corrupt (unreadable header: {_first_line(err)}); "
                          "re-save it and retry") from err
    width, height = image.size
    if width < 1 or height < 1:
        raise UploadError(f"the image is {width} x {height} pixels; it needs at least one pixel")
    if width * height > max_pixels:
        raise UploadError(f"the image is too large: {width:,} x {height:,} pixels ({_human_pixels(width * height)}), "
                          f"over the limit of {_human_pixels(max_pixels)}; downscale it first")
    try:
        if draft_size and image.format in ("JPEG", "MPO"):
            image.draft(None, (draft_size, draft_size))  # decode at 1/2, 1/4 or 1/8 scale when that suffices
        image.seek(0)
        image.load()
        if image.getexif().get(0x0112, 1) != 1:  # 0x0112: EXIF orientation; 1 = upright
            image = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _too_large(err, max_pixels) from err
    except MemoryError as err:
        raise UploadError("the image is too large to decode; downscale it first") from err
    except Exception as err:  # truncated data: OSError; broken chunks: SyntaxError / zlib.error / ValueError
        raise UploadError(f"the image is truncated or corrupt ({_first_line(err)}); re-save it and retry") from err
    return image


def strict_bomb_warnings() -> None:
    """Make Pillow's DecompressionBombWarning an error, so `open_image` reports it; for server processes."""
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def _too_large(err: Exception, max_pixels: int) -> UploadError:
    """Pillow's decompression-bomb error or warning in our words (its message carries the pixel count)."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    size = _human_pixels(int(found.group(1))) if found else "more pixels than Pillow allows"
    return UploadError(f"the image is too large: {size}, over the limit of {_human_pixels(max_pixels)}; "
                       "downscale it first")


def _first_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:120]


def _normalise_mode(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit 'L', 'LA', 'RGB', 'RGBA', or 'F' (grey floats in [0, 1] from 16/32-bit data)."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        return image.convert("RGBA" if mode == "PA" or image.has_transparency_data else "RGB")
    if mode in ("La", "RGBa"):
        return image.convert(mode.upper())
    if mode.startswith("I;16"):
        return Image.fromarray(np.asarray(image).astype(np.float32) / 65535.0)  # 2-D float32: mode F
    if mode in ("I", "F"):
        array = np.asarray(image).astype(np.float64)
        top = 1.0 if mode == "F" and array.max() <= 1.0 else 65535.0 if array.max() <= 65535 else float(array.max())
        return Image.fromarray(np.clip(array / top, 0, 1).astype(np.float32))
    try:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        return image.convert("RGB")
    except ValueError as err:
        raise UploadError(f"images in Pillow mode {mode!r} are not supported; save it as an RGB PNG") from err


def _fit(image: Image.Image, size: int) -> Image.Image:
    """Scale so the longer side is `size` (area averaging down, bilinear up); keeps the aspect ratio."""
    width, height = image.size
    scale = size / max(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new == image.size:
        return image
    factor = width // new[0]
    exact = scale < 1 and width == new[0] * factor and height == new[1] * factor  # e.g. a stored thumbnail
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    premultiply = image.mode in ("LA", "RGBA")  # so transparent pixels do not bleed their colour
    work = image.convert("La" if image.mode == "LA" else "RGBa") if premultiply else image
    work = work.reduce(factor) if exact else work.resize(new, resample, reducing_gap=3.0)
    return work.convert(image.mode) if premultiply else work


def _to_array(image: Image.Image) -> np.ndarray:
    """A normalised-mode image -> (H, W, 1|3) float32 in [0, 1], transparency composited on white."""
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)[..., None]
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[..., None]
    if image.mode in ("LA", "RGBA"):
        colour, alpha = array[..., :-1], array[..., -1:]
        array = colour * alpha + (1.0 - alpha)  # on white paper, so dark ink on a transparent sheet stays visible
    return array


def _border(array: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (P, C) the pixels of the outermost ring."""
    return np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]], axis=0)


def _pad_square(array: np.ndarray, size: int, fill: np.ndarray) -> np.ndarray:
    """(h, w, C) with max(h, w) == size -> (size, size, C), centred, padded with `fill` (C,)."""
    h, w, c = array.shape
    if h == size and w == size:
        return array
    out = np.empty((size, size, c), dtype=np.float32)
    out[:] = fill
    top, left = (size - h) // 2, (size - w) // 2
    out[top:top + h, left:left + w] = array
    return out


def _match_channels(array: np.ndarray, channels: int) -> np.ndarray:
    if array.shape[-1] == channels:
        return array
    if channels == 1:  # ITU-R 601-2 luma, as Pillow's convert("L")
        return (array @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    return np.repeat(array, 3, axis=-1)


def prepare_image(image: Image.Image, target: TargetFormat, invert: str = "auto") -> PreparedImage:
    """A decoded Pillow image -> the target's native format (see the module docstring for each step)."""
    if invert not in INVERT_CHOICES:
        raise UploadError(f"invert must be one of {', '.join(INVERT_CHOICES)}, not {invert!r}")
    notes: list[str] = []
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        notes.append(f"first of {frames} frames")
    original_size, original_mode = image.size, image.mode
    normalised = _normalise_mode(image)
    if normalised.mode in ("LA", "RGBA") and normalised.getextrema()[-1][0] < 255:
        notes.append("transparency composited on white")
    array = _match_channels(_to_array(_fit(normalised, target.size)), target.channels)  # (h, w, C)
    border = _border(array)
    if target.channels == 1 and (invert == "yes" or (invert == "auto" and float(border.mean()) > 0.5)):
        array, border = 1.0 - array, 1.0 - border
        notes.append("inverted (light background; the target's digits are light on dark)")
    array = _pad_square(array, target.size, np.median(border, axis=0))
    if original_size != (target.size, target.size):
        notes.append(f"resized from {original_size[0]} x {original_size[1]} to {target.size} x {target.size}")
    tensor = torch.from_numpy(array.transpose(2, 0, 1).copy()).clamp_(0, 1)  # (C, S, S), owns its memory
    return PreparedImage(tensor, original_size, original_mode, tuple(notes))


def load_upload(source: bytes | str | os.PathLike, target: TargetFormat, invert: str = "auto",
                max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES) -> PreparedImage:
    """Bytes or a path -> `PreparedImage`; every unusable input raises `UploadError`."""
    image = open_image(source, max_pixels=max_pixels, max_bytes=max_bytes, draft_size=4 * target.size)
    return prepare_image(image, target, invert)


def sketch_ink(canvas: np.ndarray) -> np.ndarray:
    """A drawing canvas (H, W), (H, W, 3) or (H, W, 4) uint8 -> ink (H, W) float in [0, 1].

    Ink is darkness weighted by opacity, so dark strokes on a transparent or white canvas both count.
    """
    array = np.asarray(canvas, dtype=np.float32) / 255.0
    if array.ndim == 2:
        return 1.0 - array
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise UploadError(f"a drawing must be an H x W x 3 or x 4 image, not shape {tuple(array.shape)}")
    colour = array[..., :3] if array.shape[-1] >= 3 else array[..., :1]
    luma = colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32) if colour.shape[-1] == 3 else colour[..., 0]
    alpha = array[..., 3] if array.shape[-1] == 4 else 1.0
    return np.clip((1.0 - luma) * alpha, 0.0, 1.0)


def prepare_sketch(canvas: np.ndarray | None, target: TargetFormat, margin: float = SKETCH_MARGIN) -> PreparedImage:
    """A drawing -> the target's format, centred like MNIST: crop to the ink, pad to a square with a margin.

    Grey targets get light ink on black (as their digits are); colour targets dark ink on white.
    """
    if canvas is None:
        raise UploadError("nothing drawn yet; draw a digit on the canvas first")
    ink = sketch_ink(canvas)
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    if rows.size == 0:
        raise UploadError("the drawing is empty; draw a digit on the canvas first")
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]  # (h, w) bounding box of the strokes
    side = max(ink.shape)
    padded_side = max(side, round(side / (1 - 2 * margin)))
    square = _pad_square(ink[..., None], padded_side, np.zeros(1, np.float32))[..., 0]  # (P, P), ink centred
    fitted = np.array(_fit(Image.fromarray(np.ascontiguousarray(square)), target.size), dtype=np.float32)  # (S, S)
    if target.channels == 3:
        fitted = 1.0 - fitted
    tensor = torch.from_numpy(fitted).clamp_(0, 1).unsqueeze(0).expand(target.channels, -1, -1)
    notes = ("drawing cropped to its strokes and centred with a margin",)
    return PreparedImage(tensor.contiguous(), (int(canvas.shape[1]), int(canvas.shape[0])), "sketch", notes)
