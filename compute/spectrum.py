"""How much of an image's detail is fine texture: the share of its spectral energy above half the Nyquist frequency.

Why: the paper's Fig. 1b contrasts robust models, whose feature visualisations show shapes and strokes, with
natural ones, whose visualisations are high-frequency noise. This number says the same without the eye: the
share of an image's varying (non-constant) energy at radial frequencies above half the Nyquist frequency.

Spectrum: the 2-D type-II DCT (the spectrum of the mirror-extended image), so an image's borders are not
counted as edges the way a periodic DFT would count them (a smooth ramp stays smooth). DCT index k of an
N-pixel axis is frequency k / (2N) cycles per pixel, Nyquist being 1/2, so the radial frequency in units of
Nyquist is sqrt((kx / W)^2 + (ky / H)^2). The constant (DC) term is left out: a constant image has no
varying energy and scores 0; a 0/1 checkerboard puts all of it at the highest frequency and scores ~1.

Torch-free (numpy and scipy only), so the explorer can compute it on stored PNGs. Stored PNGs are upscaled
with nearest-neighbour replication for display; `native_pixels` undoes that before measuring, since the
replication's blocks would otherwise add edges the model never produced.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.fft import dctn

__all__ = ["high_frequency_share", "native_pixels", "png_high_frequency_share"]


def _channels_first(image: np.ndarray) -> np.ndarray:
    """(H, W) | (C, H, W) -> (C, H, W) float64."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return array
    raise ValueError(f"expected an (H, W) or (C, H, W) image, got shape {array.shape}")


def high_frequency_share(image: np.ndarray, cutoff: float = 0.5) -> float:
    """Share of the image's non-DC spectral energy at radial frequency > cutoff x Nyquist (0 for a constant image).

    `image` is (H, W) or (C, H, W); the channels' energies are summed.
    """
    chw = _channels_first(image)
    _, h, w = chw.shape
    energy = np.square(dctn(chw, type=2, axes=(1, 2), norm="ortho")).sum(axis=0)  # (H, W)
    energy[0, 0] = 0.0  # the mean: not detail
    ky, kx = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")  # (H, W) frequency / Nyquist per axis
    radial = np.sqrt(kx**2 + ky**2)
    total = float(energy.sum())
    if total <= 1e-12 * max(float(np.square(chw).sum()), 1.0):
        return 0.0
    return float(energy[radial > cutoff].sum() / total)


def native_pixels(image: np.ndarray) -> np.ndarray:
    """Undo an integer nearest-neighbour upscale: the largest f such that the (C, H, W) image is made of f x f
    constant blocks, sampled once per block ((C, H / f, W / f)); an image that is not upscaled comes back as is."""
    chw = _channels_first(image)
    _, h, w = chw.shape
    for f in range(min(h, w), 1, -1):
        if h % f or w % f:
            continue
        small = chw[:, ::f, ::f]
        if np.array_equal(np.repeat(np.repeat(small, f, axis=1), f, axis=2), chw):
            return small
    return chw


def png_high_frequency_share(png: bytes, cutoff: float = 0.5) -> float:
    """`high_frequency_share` of a stored PNG at the resolution it was computed at (grey or RGB, values in [0, 1])."""
    array = np.asarray(Image.open(io.BytesIO(png)).convert("RGB" if _is_colour(png) else "L"), dtype=np.float64) / 255
    chw = array.transpose(2, 0, 1) if array.ndim == 3 else array
    return high_frequency_share(native_pixels(chw), cutoff)


def _is_colour(png: bytes) -> bool:
    """True unless the PNG is grey (mode L/LA/I or an RGB whose three channels are equal)."""
    image = Image.open(io.BytesIO(png))
    if image.mode in ("L", "LA", "I", "I;16", "1"):
        return False
    rgb = np.asarray(image.convert("RGB"))
    return not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))
