"""The demo's page: Blocks, their events, and the text around them (no computation here).

`build_demo(root)` lays out the choosers (target, cell, k), the inputs (upload, drawing, examples), one column per
model of the chosen influence cell (the paper analogue, the best budget when it is another model, natural; an unused
column is hidden) with outputs in `OUTPUT_NAMES` order, and the API help, then wires the events; the same handler
behind the UI is the API endpoint `/neighbours`. Requests run `CONCURRENCY` at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from app.demo.backend import DEFAULT_K, EMPTY_CACHE, MAX_K, DemoBackend
from app.demo.files import ResultFiles
from app.demo.handlers import COLUMNS, OUTPUT_NAMES, PROMPT, neighbours, sketch_neighbours
from app.demo.results import Example
from app.pairing import Comparison, Side
from app.uploads import INVERT_CHOICES, MAX_BYTES, MAX_PIXELS
from compute.errors import RtxError

CONCURRENCY = 2  # requests computed at once (the target machine has 2 cores; one torch thread each)
QUEUE_SIZE = 64
THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # local fonts: no request to Google Fonts
# Each model's gallery holds one picture, its k neighbours side by side (app/demo/composite.py): one cell as wide
# as the column.
CSS = """
.thumbs .grid-container { grid-template-columns: 1fr !important; gap: 6px !important; }
.thumbs .caption-label { max-width: 100% !important; font-size: 11px !important; padding: 1px 4px !important; }
.model-header { min-height: 6.5em; }  /* the best budget's reason under its name: keep the columns' rows aligned */
.model-header p { font-size: 12px !important; line-height: 1.35 !important; color: var(--body-text-color-subdued); }
"""


INTRO = """# Which training images explain a prediction?
Utrera et al. (ICLR 2021, Section 6) find that a model fine-tuned from an **adversarially robust** source
bases its predictions on training images of the *same class* more often than one fine-tuned from a
**natural** source. Upload, draw or pick an image: the paper's analogue of its robust source, the budget
that transferred best on the target (chosen from this cache's results) and the natural source each show
what they see, what they predict, and the training images with the largest influence (Koh & Liang's
influence functions on the last layer); ✓ marks neighbours whose label matches the prediction."""

API_HELP = """### API
The function behind this page is the endpoint `/neighbours` (inputs: image file, influence cell, k, invert).
```python
from gradio_client import Client, handle_file
client = Client("http://127.0.0.1:7860/")
status, summary, *_, details = client.predict(handle_file("digit.png"), None, 5, "auto", api_name="/neighbours")
print(summary); print(details["models"]["natural"]["neighbours"])   # None = the default cell
```
`details["models"]` holds every model of the cell, keyed by role: `analogue`, `best_budget` (when another model
than the analogue), `natural`; each says its `source`, `part` and `note` (why it is the best budget).
Bad input comes back as `status` starting with "⚠️" and `details == {"error": ...}`. Uploads: PNG, JPEG, GIF
(first frame), BMP, WebP or TIFF up to {mb} MB and {mp} megapixels (larger images are refused, not
downscaled); grey targets invert light-background images (invert="auto")."""


def build_demo(root: Path, backend: DemoBackend | None = None) -> gr.Blocks:
    """The demo's Blocks over the cache at `root` (an empty cache gives a page that says how to fill it)."""
    backend = backend or DemoBackend.open(Path(root))
    files = ResultFiles()
    with gr.Blocks(title="Robust transfer: influential training images", analytics_enabled=False, fill_width=True,
                   delete_cache=(3600, 3600)) as demo:  # uploads older than an hour are deleted hourly
        gr.Markdown(INTRO)
        if backend.empty:
            gr.Markdown(f"> ⚠️ {EMPTY_CACHE.format(root=backend.root)}", elem_id="empty-cache")
        choosers = _choosers(backend)
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                inputs = _inputs(backend, files)
            with gr.Column(scale=3):
                models = _model_columns(backend.default)
        outputs = models.outputs(_raw_result_and_help())
        _wire(backend, files, choosers, inputs, models, outputs)
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


@dataclass(frozen=True)
class _Choosers:
    """What to ask about: the target, the influence cell (its models side by side) and k."""

    target: gr.Dropdown
    cell: gr.Dropdown
    k: gr.Slider


@dataclass(frozen=True)
class _Inputs:
    """The image to explain: an upload, a drawing (grey targets only), or an example from the target's test set."""

    image: gr.Image
    sketch: gr.Sketchpad
    draw_tab: gr.Tab
    draw_button: gr.Button
    examples: gr.Gallery
    invert: gr.Radio


@dataclass(frozen=True)
class _ModelColumns:
    """The answer: status and summary, then one column per model (header, the image as it sees it, its prediction,
    its most influential training images)."""

    components: dict[str, gr.components.Component]  # every output but `details`, by `OUTPUT_NAMES` name
    headers: list[gr.Markdown]
    columns: list[gr.Column]

    def outputs(self, details: gr.JSON) -> list[gr.components.Component]:
        """The handlers' outputs, in `OUTPUT_NAMES` order."""
        return [{**self.components, "details": details}[name] for name in OUTPUT_NAMES]


def _choosers(backend: DemoBackend) -> _Choosers:
    chosen = backend.default
    first_target = chosen.target if chosen else None
    with gr.Row():
        target = gr.Dropdown(backend.targets(), value=first_target, label="Target dataset", scale=1)
        cell = gr.Dropdown([c.label for c in backend.comparisons_for(first_target)] if chosen else [],
                           value=chosen.label if chosen else None, elem_id="cell", scale=3,
                           label="Influence cell (target · subset · method): its models side by side")
        k = gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label="Neighbours (k)", scale=1)
    return _Choosers(target, cell, k)


def _inputs(backend: DemoBackend, files: ResultFiles) -> _Inputs:
    chosen = backend.default
    grey = bool(chosen) and backend.target_format(chosen).channels == 1
    with gr.Tabs():
        with gr.Tab("Upload"):
            image = gr.Image(type="filepath", format="png", label="Image", sources=["upload", "clipboard"],
                             height=260, elem_id="upload")
        with gr.Tab("Draw", visible=grey) as draw_tab:
            sketch = gr.Sketchpad(label="Draw a digit", type="numpy", canvas_size=(280, 280),
                                  brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"),
                                  layers=False, transforms=(), elem_id="sketch",
                                  placeholder="Click the brush on the left, then draw a digit")
            draw_button = gr.Button("Find neighbours of the drawing", variant="primary")
    examples = gr.Gallery(_gallery(backend.examples(chosen.target), files) if chosen else [], label="Examples",
                          columns=6, height=220, allow_preview=False, object_fit="contain",
                          format="png", elem_id="examples", elem_classes=["thumbs"])
    invert = gr.Radio(list(INVERT_CHOICES), value="auto",
                      label="Invert grey images (the target's digits are light on dark)")
    return _Inputs(image, sketch, draw_tab, draw_button, examples, invert)


def _model_columns(chosen: Comparison | None) -> _ModelColumns:
    status = gr.Markdown(PROMPT, label="status", elem_id="status")
    summary = gr.Markdown("", label="summary", elem_id="summary")
    components: dict[str, gr.components.Component] = {"status": status, "summary": summary}
    headers, columns = [], []
    with gr.Row():
        for n, side in enumerate(_columns(chosen), start=1):
            with gr.Column(min_width=240, visible=side is not None, elem_id=f"model-{n}") as column:
                headers.append(gr.Markdown(_header(side), elem_id=f"model-{n}-header", elem_classes=["model-header"]))
                with gr.Row():
                    view = gr.Image(label="as the model sees it", type="numpy", format="png",
                                    interactive=False, height=150, elem_id=f"model-{n}-view")
                    label = gr.Label(num_top_classes=3, label="prediction", elem_id=f"model-{n}-label")
                gallery = gr.Gallery(label="most influential training images", columns=1, height=230,
                                     object_fit="contain", format="png", allow_preview=True,
                                     elem_id=f"model-{n}-gallery", elem_classes=["thumbs"])
            columns.append(column)
            components.update({f"model{n}_view": view, f"model{n}_label": label, f"model{n}_gallery": gallery})
    return _ModelColumns(components, headers, columns)


def _raw_result_and_help() -> gr.JSON:
    """The answer as JSON (the API's `details`) and the API help, folded away; returns the JSON output."""
    with gr.Accordion("Raw result (JSON)", open=False):
        details = gr.JSON(label="details", elem_id="details")
    with gr.Accordion("API and input rules", open=False):
        gr.Markdown(API_HELP.replace("{mb}", str(MAX_BYTES // 2**20)).replace("{mp}", str(MAX_PIXELS // 10**6)))
    return details


def _wire(backend: DemoBackend, files: ResultFiles, choosers: _Choosers, inputs: _Inputs, models: _ModelColumns,
          outputs: list[gr.components.Component]) -> None:
    """The events: an image, k or invert change answers (the API endpoint `/neighbours`), a drawing answers
    (`/neighbours_sketch`), a new cell re-heads the columns then answers, a new target refills cells and examples."""

    def on_image(image: Any, cell: str | None, k: Any, invert: str) -> tuple:
        """The most influential training images for an uploaded image, for every model of the cell."""
        return neighbours(backend, image, cell, k, invert, notify=True, files=files).values()

    def on_sketch(sketch: Any, cell: str | None, k: Any) -> tuple:
        """The same for a drawing (a Sketchpad value)."""
        return sketch_neighbours(backend, sketch, cell, k, notify=True, files=files).values()

    def on_target(target_value: str) -> tuple:
        choices = backend.comparisons_for(target_value)
        if not choices:
            return gr.update(choices=[], value=None), [], gr.update(visible=False)
        fmt = backend.target_format(choices[0])
        return (gr.update(choices=[c.label for c in choices], value=choices[0].label),
                _gallery(backend.examples(target_value), files), gr.update(visible=fmt.channels == 1))

    def on_cell(cell_label: str | None) -> tuple:
        """Each column's header, and only as many columns as the cell has models."""
        try:
            sides = _columns(backend.comparison(cell_label))
        except RtxError:
            sides = _columns(None)
        return (*(_header(side) for side in sides), *(gr.update(visible=side is not None) for side in sides))

    def on_example(target_value: str, evt: gr.SelectData) -> str | None:
        items = backend.examples(target_value)
        return files.image(items[evt.index].image) if 0 <= evt.index < len(items) else None

    asked = [inputs.image, choosers.cell, choosers.k, inputs.invert]
    # preprocess=False: the handler decodes the upload itself (app.uploads), so a broken file gets our
    # message instead of Gradio's; uploaded paths are still confined to Gradio's upload folder.
    inputs.image.change(on_image, asked, outputs, api_name="neighbours", preprocess=False,
                        trigger_mode="always_last", concurrency_id="influence")
    for control in (choosers.k, inputs.invert):
        control.change(on_image, asked, outputs, preprocess=False, trigger_mode="always_last",
                       api_visibility="private", concurrency_id="influence")
    choosers.cell.change(on_cell, [choosers.cell], models.headers + models.columns, api_visibility="private",
                         queue=False).then(on_image, asked, outputs, preprocess=False, api_visibility="private",
                                           concurrency_id="influence")
    choosers.target.change(on_target, [choosers.target], [choosers.cell, inputs.examples, inputs.draw_tab],
                           api_visibility="private")
    inputs.examples.select(on_example, [choosers.target], [inputs.image], api_visibility="private")
    inputs.draw_button.click(on_sketch, [inputs.sketch, choosers.cell, choosers.k], outputs,
                             api_name="neighbours_sketch", concurrency_id="influence")


def _columns(comparison: Comparison | None) -> list[Side | None]:
    """The model of each of the `COLUMNS` columns, None for a column the comparison leaves empty."""
    sides = list(comparison.sides) if comparison else []
    return sides + [None] * (COLUMNS - len(sides))


def _header(side: Side | None) -> str:
    """'### Best budget on mnist5k: `linf_0.1`' and, under it, why that budget."""
    if side is None:
        return ""
    header = f"### {side.part[:1].upper()}{side.part[1:]}: `{side.source}`"
    return header + (f"\n{side.note}" if side.note else "")


def _gallery(examples: list[Example], files: ResultFiles) -> list[tuple[str, str]]:
    return [(files.image(e.image), e.caption) for e in examples]


__all__ = ["API_HELP", "CSS", "INTRO", "THEME_FONTS", "build_demo"]
