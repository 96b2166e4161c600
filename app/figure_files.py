"""A chart as a file (SVG, PNG, PDF) with its provenance: shared by the explorer's downloads and `rtx figures`.

vl-convert renders Vega-Lite in-process (its own Vega engine and fonts; no browser, no network), so a figure can
be written on a cluster's login node or in the container. The provenance line (what is plotted and how many runs
back it, which cache snapshot, which command) travels inside the file where the format has a place for it: an
SVG `<metadata>`/`<desc>` element and PNG text chunks. PDFs get it in a caption file beside them (`rtx figures`
writes one per figure for every format).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from compute.cache import snapshot_path
from compute.errors import RtxError

FORMATS = ("svg", "png", "pdf")
MIME = {"svg": "image/svg+xml", "png": "image/png", "pdf": "application/pdf", "csv": "text/csv"}
PNG_SCALE = 2  # device pixels per CSS pixel: sharp on a slide or a retina screen (a 900 px wide chart -> 1800 px)


def provenance(root: Path | str, caption: str, command: str) -> str:
    """One line: what the chart shows (its caption, with the runs behind it), the cache snapshot, the command."""
    path = snapshot_path(Path(root))
    try:
        published = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except FileNotFoundError:
        published = "none published"
    return f"{caption.strip()} Cache: {Path(root)} (snapshot {published}). Command: {command}"


def _svg_with(svg: str, line: str) -> str:
    """The SVG with the provenance as `<desc>` (shown by viewers as a description) and Dublin Core metadata."""
    text = escape(line)
    head_end = svg.index(">", svg.index("<svg")) + 1
    meta = (f"<desc>{text}</desc><metadata><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" "
            f"xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><rdf:Description><dc:source>{text}</dc:source>"
            "</rdf:Description></rdf:RDF></metadata>")
    return svg[:head_end] + meta + svg[head_end:]


def _png_with(png: bytes, line: str) -> bytes:
    """The PNG re-saved with `Description` and `Source` text chunks (exiftool, `identify -verbose`, PIL read them)."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Description", line)
    info.add_text("Software", "Robust Transfer Explorer (vl-convert)")
    out = io.BytesIO()
    with Image.open(io.BytesIO(png)) as image:
        image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def render(spec: dict[str, Any], fmt: str, line: str) -> bytes:
    """The Vega-Lite `spec` (an Altair chart's `to_dict()`, data inline) as `fmt` bytes, provenance embedded."""
    import vl_convert as vlc  # here, not at import: the explorer's pages import this module on every run

    if fmt == "svg":
        return _svg_with(vlc.vegalite_to_svg(spec), line).encode()
    if fmt == "png":
        return _png_with(vlc.vegalite_to_png(spec, scale=PNG_SCALE), line)
    if fmt == "pdf":
        return vlc.vegalite_to_pdf(spec)
    raise RtxError(f"unknown figure format {fmt!r}; choose from {', '.join(FORMATS)}")


def embedded_provenance(data: bytes, fmt: str) -> str | None:
    """The provenance line `render` embedded (None for PDF or a file without one): what the tests read back."""
    if fmt == "png":
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.info.get("Description")
    if fmt == "svg":
        from html import unescape

        text = data.decode()
        start = text.find("<desc>")
        return unescape(text[start + 6: text.index("</desc>", start)]) if start >= 0 else None
    return None
