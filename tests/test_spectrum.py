"""compute.spectrum: the high-frequency share on images whose answer is known, and on stored (upscaled) PNGs."""

from __future__ import annotations

import numpy as np
import pytest

from compute.images import to_png
from compute.spectrum import high_frequency_share, native_pixels, png_high_frequency_share


def _checkerboard(n: int = 28) -> np.ndarray:
    return (np.indices((n, n)).sum(axis=0) % 2).astype(float)


def test_known_images() -> None:
    assert high_frequency_share(np.full((28, 28), 0.7)) == 0.0
    assert high_frequency_share(np.zeros((3, 16, 16))) == 0.0
    assert high_frequency_share(_checkerboard()) > 0.99
    ramp = np.tile(np.linspace(0, 1, 28), (28, 1))
    assert high_frequency_share(ramp) < 0.01
    smooth = np.outer(np.sin(np.linspace(0, np.pi, 32)), np.cos(np.linspace(0, np.pi, 32)))
    assert high_frequency_share(smooth) < 0.01
    noise = np.random.default_rng(0).random((64, 64))
    assert 0.6 < high_frequency_share(noise) < 0.9  # white noise: energy spread evenly over the frequency square


def test_channels_add_up_and_cutoff_moves_the_share() -> None:
    board = _checkerboard()
    assert high_frequency_share(np.stack([board] * 3)) == pytest.approx(high_frequency_share(board))
    noise = np.random.default_rng(1).random((32, 32))
    assert high_frequency_share(noise, cutoff=0.9) < high_frequency_share(noise, cutoff=0.5)
    with pytest.raises(ValueError, match="image"):
        high_frequency_share(np.zeros(5))


def test_stored_pngs_are_measured_at_their_own_resolution() -> None:
    rng = np.random.default_rng(2)
    image = rng.random((28, 28)).astype(np.float32)
    png = to_png(image, 112)  # nearest x4, as the featviz stage stores it
    assert native_pixels(np.kron(image, np.ones((4, 4)))).shape == (1, 28, 28)
    quantised = np.round(image * 255) / 255
    assert png_high_frequency_share(png) == pytest.approx(high_frequency_share(quantised), abs=1e-9)
    colour = rng.random((3, 28, 28)).astype(np.float32)
    assert png_high_frequency_share(to_png(colour, 112)) == pytest.approx(
        high_frequency_share(np.round(colour * 255) / 255), abs=1e-9)
    assert png_high_frequency_share(to_png(np.full((28, 28), 0.5), 112)) == 0.0
