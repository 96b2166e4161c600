"""The demo's neighbours picture (app/demo/composite.py): k tiles in one PNG, matches framed, captions inside."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from app.demo.composite import FRAME, MATCH_COLOUR, TILE, neighbours_strip
from compute.images import to_png


def _tile(value: float) -> bytes:
    return to_png(np.full((28, 28), value, np.float32), min_size=28)


def test_k_tiles_side_by_side_each_image_in_its_place() -> None:
    values = (0.0, 0.25, 0.5, 0.75, 1.0)
    png = neighbours_strip([(_tile(v), f"class {i}", f"#{i + 1} · 0.1", False) for i, v in enumerate(values)])
    with Image.open(io.BytesIO(png)) as strip:
        pixels = np.asarray(strip.convert("L"), np.float32)
    assert pixels.shape[1] == 5 * TILE + 4 * 6 and pixels.shape[0] > TILE
    for i, v in enumerate(values):  # the centre of tile i is neighbour i's grey (PNG rounding: 1 level)
        x = i * (TILE + 6) + TILE // 2
        assert abs(pixels[TILE // 2, x] - round(v * 255)) <= 1
    assert (pixels[TILE:, :] < 128).any(), "captions drawn under the tiles"


def test_a_neighbour_sharing_the_prediction_is_framed() -> None:
    png = neighbours_strip([(_tile(1.0), "a", "#1", True), (_tile(1.0), "b", "#2", False)])
    with Image.open(io.BytesIO(png)) as strip:
        rgb = np.asarray(strip.convert("RGB"))
    assert tuple(rgb[TILE // 2, FRAME - 1]) == MATCH_COLOUR  # left edge of the first tile
    assert tuple(rgb[TILE // 2, TILE + 6 + FRAME - 1]) == (255, 255, 255)  # the second tile: no frame
