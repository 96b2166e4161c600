"""One model's k neighbours as one picture: a row of tiles, each captioned with its label and influence score.

Why one file instead of k: each result file costs the server more than the model does. Under 60 concurrent
uploads (bench/demo.py --server-load, py-spy on the server) Gradio's per-file postprocessing (path resolution
against its static paths, the allowed-path check) was 27% of the server's CPU and serving each file over HTTP
another ~20%, while the model's forward pass and influence query were 15%. Two models with k = 5 were 12 files
per answer; as composites they are 4.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

TILE = 96  # px per neighbour: the stored 28-32 px thumbnails, nearest-upscaled
GAP = 6
BAND = 34  # px of caption under each tile: two lines of FONT_SIZE
FONT_SIZE = 13
MATCH_COLOUR = (0, 130, 60)  # a neighbour sharing the predicted label: green frame and label ("✓" in captions;
#                             the bundled font has no ✓ glyph)
FRAME = 3


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)  # Pillow's bundled font: no system fonts needed


def _fit(text: str, width: int, draw: ImageDraw.ImageDraw) -> str:
    """`text` shortened with '…' until it fits `width` pixels."""
    while text and draw.textlength(text, font=_font()) > width:
        text = text[:-2] + "…" if len(text) > 1 else ""
    return text


def neighbours_strip(tiles: Sequence[tuple[bytes, str, str, bool]]) -> bytes:
    """PNG of the neighbours side by side; each tile is (png, label line, score line, shares the prediction)."""
    width = len(tiles) * TILE + (len(tiles) - 1) * GAP
    strip = Image.new("RGB", (max(width, 1), TILE + BAND), "white")
    draw = ImageDraw.Draw(strip)
    for i, (png, label, score, match) in enumerate(tiles):
        x = i * (TILE + GAP)
        with Image.open(io.BytesIO(png)) as tile:
            strip.paste(tile.convert("RGB").resize((TILE, TILE), Image.NEAREST), (x, 0))
        colour = MATCH_COLOUR if match else (40, 40, 40)
        if match:
            draw.rectangle((x, 0, x + TILE - 1, TILE - 1), outline=MATCH_COLOUR, width=FRAME)
        draw.text((x + 2, TILE + 2), _fit(label, TILE - 4, draw), fill=colour, font=_font())
        draw.text((x + 2, TILE + 2 + FONT_SIZE + 2), _fit(score, TILE - 4, draw), fill=(90, 90, 90), font=_font())
    out = io.BytesIO()
    # zlib's fastest level: the default (6) made a strip of five noisy 28 px tiles take 15-18 ms instead of 12-14
    # (this machine, shared) for a file 13% smaller
    strip.save(out, format="PNG", compress_level=1)
    return out.getvalue()


__all__ = ["TILE", "neighbours_strip"]
