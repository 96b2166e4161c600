"""The functions behind the page and the API: a request -> a `DemoOutputs`, every failure a message.

`DemoOutputs` names the outputs once: status, summary, three model columns (view, top-3, gallery each; the
paper analogue, the best budget, natural, in `Comparison.sides` order) and the JSON. The layout builds its
components in `OUTPUT_NAMES` order and the handlers return `outputs.values()`, so adding an output is one field
here, not three tuples kept in sync. A comparison of two models leaves the third column empty (the page hides it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import gradio as gr
import numpy as np

from app.demo.backend import DEFAULT_K, EMPTY_CACHE, MAX_K, DemoBackend
from app.demo.composite import neighbours_strip
from app.demo.files import ResultFiles
from app.demo.results import Explanation
from app.pairing import MAX_ROBUST
from app.uploads import PreparedImage, TargetFormat, load_upload, prepare_sketch
from compute.errors import RtxError
from compute.images import to_png

log = logging.getLogger(__name__)

VIEW_SIZE = 112  # the model's input is shown nearest-upscaled to at least this many pixels
MISSING_SIZE = 56
PROMPT = "Upload an image, draw one, or click an example."
COLUMNS = MAX_ROBUST + 1  # model columns: the paper analogue, the best budget, natural


@dataclass(frozen=True)
class DemoOutputs:
    """What one request shows, in the page's (and the API's) output order: column n (`model{n}_*`) is the
    comparison's n-th model. Images are file paths (`ResultFiles`); a gallery is one (path, caption) item, the
model's k neighbours as one picture (`composite.neighbours_strip`), an empty list for an unused column;
    `details` is the JSON answer (`models` keyed by role) or {"error": ...}."""

    status: str
    summary: str = ""
    model1_view: str | None = None
    model1_label: dict[str, float] | None = None
    model1_gallery: list[tuple[str, str]] = field(default_factory=list)
    model2_view: str | None = None
    model2_label: dict[str, float] | None = None
    model2_gallery: list[tuple[str, str]] = field(default_factory=list)
    model3_view: str | None = None
    model3_label: dict[str, float] | None = None
    model3_gallery: list[tuple[str, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def message(cls, message: str) -> DemoOutputs:
        return cls(f"⚠️ {message}", details={"error": message})

    def values(self) -> tuple:
        """The outputs as Gradio wants them: one value per component, in `OUTPUT_NAMES` order."""
        return tuple(getattr(self, name) for name in OUTPUT_NAMES)


OUTPUT_NAMES = tuple(f.name for f in fields(DemoOutputs))


def render(backend: DemoBackend, explanation: Explanation, files: ResultFiles) -> DemoOutputs:
    """An explanation -> the page's outputs, every picture a content-addressed file written once."""
    image = explanation.image
    notes = f" ({'; '.join(image.notes)})" if image.notes else ""
    what = "Drawing" if image.original_mode == "sketch" else "Image"
    mode = "" if image.original_mode == "sketch" else f" {image.original_mode}"
    status = (f"{what} {image.original_size[0]} x {image.original_size[1]}{mode}{notes}. "
              f"Answered in {explanation.seconds:.2f} s.")
    per_column: dict[str, Any] = {}
    for column, side in enumerate(explanation.sides, start=1):
        tiles, captions = [], []
        for n in side.neighbours:
            png = backend.thumbnail_png(explanation.comparison.target, "train", n.train_index) or _missing_png()
            mark = "✓ " if n.matches_prediction else ""
            tiles.append((png, n.label_name, f"#{n.rank + 1} · {n.score:.2g}", n.matches_prediction))
            captions.append(f"#{n.rank + 1} {mark}{n.label_name} · {n.score:.2g}")  # 2 digits fit; the JSON has all
        per_column[f"model{column}_view"] = files.png(to_png(side.model_input, min_size=VIEW_SIZE))
        per_column[f"model{column}_label"] = dict(side.top(3))
        # one picture of the k neighbours, not k files: app/demo/composite.py says why
        per_column[f"model{column}_gallery"] = [(files.png(neighbours_strip(tiles)), "   ".join(captions))] \
            if tiles else []
    return DemoOutputs(status, explanation.summary, details=explanation.as_json(), **per_column)


def _missing_png() -> bytes:
    return to_png(np.full((MISSING_SIZE, MISSING_SIZE), 0.5, np.float32))


def _answer(backend: DemoBackend, prepare: Callable[[TargetFormat], PreparedImage], cell_label: str | None,
            k: Any, notify: bool, files: ResultFiles | None) -> DemoOutputs:
    """Shared by uploads and drawings: every failure becomes a message (and a toast when `notify`), never a
    traceback."""
    try:
        comparison = backend.comparison(cell_label)
        k = min(MAX_K, max(1, int(float(k if k is not None else DEFAULT_K))))
        prepared = prepare(backend.target_format(comparison))
        return render(backend, backend.explain(prepared, comparison, k), files or ResultFiles())
    except RtxError as err:  # UploadError included
        message = str(err)
    except (TypeError, ValueError) as err:
        message = f"bad request ({err}); send an image file, an influence cell from the list and k between 1 and {MAX_K}"
    except Exception:  # a bug: log it for the operator, tell the user something useful
        log.exception("demo request failed")
        message = "internal error while computing the neighbours; the server log has the details"
    if notify:
        gr.Warning(message)
    return DemoOutputs.message(message)


def _upload_path(image: Any) -> str | None:
    """The uploaded file's path from a raw Gradio payload (dict / FileData) or a plain path."""
    if image is None:
        return None
    if isinstance(image, dict):
        return image.get("path")
    return str(getattr(image, "path", image))


def neighbours(backend: DemoBackend, image: Any, cell_label: str | None = None, k: Any = DEFAULT_K,
               invert: str = "auto", notify: bool = False, files: ResultFiles | None = None) -> DemoOutputs:
    """An uploaded image (path or Gradio file payload) -> the page's outputs.

    `notify` also shows a bad input's message as a toast (only inside a Gradio request)."""
    path = _upload_path(image)
    if path is None:
        if backend.empty:
            return DemoOutputs.message(EMPTY_CACHE.format(root=backend.root))
        return DemoOutputs(PROMPT)
    return _answer(backend, lambda fmt: load_upload(path, fmt, invert=invert or "auto"), cell_label, k, notify,
                   files)


def sketch_neighbours(backend: DemoBackend, sketch: Any, cell_label: str | None = None, k: Any = DEFAULT_K,
                      notify: bool = False, files: ResultFiles | None = None) -> DemoOutputs:
    """A Sketchpad value (its `composite` canvas) -> the same outputs as `neighbours`."""
    canvas = sketch.get("composite") if isinstance(sketch, dict) else sketch
    return _answer(backend, lambda fmt: prepare_sketch(canvas, fmt), cell_label, k, notify, files)


__all__ = ["COLUMNS", "OUTPUT_NAMES", "PROMPT", "DemoOutputs", "neighbours", "render", "sketch_neighbours"]
