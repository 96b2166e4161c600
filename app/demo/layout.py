"""The demo's page: Blocks, their events, and the text around them (no computation here).

`build_demo(root)` lays out the inputs, the two models' outputs in `OUTPUT_NAMES` order and the API help; the
same handler behind the UI is the API endpoint `/neighbours`. Requests run `CONCURRENCY` at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app.demo.backend import DEFAULT_K, EMPTY_CACHE, MAX_K, DemoBackend
from app.demo.files import ResultFiles
from app.demo.handlers import OUTPUT_NAMES, PROMPT, neighbours, sketch_neighbours
from app.demo.results import Example
from app.pairing import ModelPair
from app.uploads import INVERT_CHOICES, MAX_BYTES, MAX_PIXELS
from compute.errors import RtxError

CONCURRENCY = 2  # requests computed at once (the target machine has 2 cores; one torch thread each)
QUEUE_SIZE = 64
THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # local fonts: no request to Google Fonts
# Gradio's gallery cells are at least 100 px wide: five neighbours would not fit a half-width column.
CSS = """
.thumbs .grid-container { grid-template-columns: repeat(auto-fill, minmax(84px, 1fr)) !important; gap: 6px !important; }
.thumbs .caption-label { max-width: 100% !important; font-size: 11px !important; padding: 1px 4px !important; }
"""


INTRO = """# Which training images explain a prediction?
Utrera et al. (ICLR 2021, Section 6) find that a model fine-tuned from an **adversarially robust** source
bases its predictions on training images of the *same class* more often than one fine-tuned from a
**natural** source. Upload, draw or pick an image: each model shows what it sees, what it predicts, and
the training images with the largest influence (Koh & Liang's influence functions on the last layer);
✓ marks neighbours whose label matches the prediction."""

API_HELP = """### API
The function behind this page is the endpoint `/neighbours` (inputs: image file, model pair, k, invert).
```python
from gradio_client import Client, handle_file
client = Client("http://127.0.0.1:7860/")
status, summary, *_, details = client.predict(handle_file("digit.png"), None, 5, "auto", api_name="/neighbours")
print(summary); print(details["models"][0]["neighbours"])   # None = the default model pair
```
Bad input comes back as `status` starting with "⚠️" and `details == {"error": ...}`. Uploads: PNG, JPEG, GIF
(first frame), BMP, WebP or TIFF up to {mb} MB and {mp} megapixels (larger images are refused, not
downscaled); grey targets invert light-background images (invert="auto")."""


def build_demo(root: Path, backend: DemoBackend | None = None) -> gr.Blocks:
    """The demo's Blocks over the cache at `root` (an empty cache gives a page that says how to fill it)."""
    backend = backend or DemoBackend.open(Path(root))
    files = ResultFiles()
    pair = backend.default
    targets = backend.targets()
    first_target = pair.target if pair else None
    grey = bool(pair) and backend.target_format(pair).channels == 1

    with gr.Blocks(title="Robust transfer: influential training images", analytics_enabled=False, fill_width=True,
                   delete_cache=(3600, 3600)) as demo:  # uploads older than an hour are deleted hourly
        gr.Markdown(INTRO)
        if backend.empty:
            gr.Markdown(f"> ⚠️ {EMPTY_CACHE.format(root=backend.root)}", elem_id="empty-cache")
        with gr.Row():
            target_box = gr.Dropdown(targets, value=first_target, label="Target dataset", scale=1)
            pair_box = gr.Dropdown([p.label for p in backend.pairs_for(first_target)] if pair else [],
                                   value=pair.label if pair else None, label="Models (robust: paper analogue or best budget, vs natural; influence method)", scale=3)
            k_slider = gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label="Neighbours (k)", scale=1)
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                with gr.Tabs():
                    with gr.Tab("Upload"):
                        image_box = gr.Image(type="filepath", format="png", label="Image", sources=["upload", "clipboard"],
                                             height=260, elem_id="upload")
                    with gr.Tab("Draw", visible=grey) as draw_tab:
                        sketch = gr.Sketchpad(label="Draw a digit", type="numpy", canvas_size=(280, 280),
                                              brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"),
                                              layers=False, transforms=(), elem_id="sketch",
                                              placeholder="Click the brush on the left, then draw a digit")
                        draw_button = gr.Button("Find neighbours of the drawing", variant="primary")
                examples = gr.Gallery(_gallery(backend.examples(first_target), files) if pair else [], label="Examples",
                                      columns=6, height=220, allow_preview=False, object_fit="contain",
                                      format="png", elem_id="examples", elem_classes=["thumbs"])
                invert_radio = gr.Radio(list(INVERT_CHOICES), value="auto",
                                        label="Invert grey images (the target's digits are light on dark)")
            with gr.Column(scale=3):
                status = gr.Markdown(PROMPT, label="status", elem_id="status")
                summary = gr.Markdown("", label="summary", elem_id="summary")
                components: dict[str, gr.components.Component] = {"status": status, "summary": summary}
                headers = []
                with gr.Row():
                    for side in ("robust", "natural"):
                        with gr.Column(min_width=300):
                            headers.append(gr.Markdown(_header(pair, side), elem_id=f"{side}-header"))
                            with gr.Row():
                                view = gr.Image(label="as the model sees it", type="numpy", format="png",
                                                interactive=False, height=150, elem_id=f"{side}-view")
                                label = gr.Label(num_top_classes=3, label="prediction", elem_id=f"{side}-label")
                            gallery = gr.Gallery(label="most influential training images", columns=5, height=210,
                                                 object_fit="contain", format="png", allow_preview=True,
                                                 elem_id=f"{side}-gallery", elem_classes=["thumbs"])
                            components.update({f"{side}_view": view, f"{side}_label": label,
                                               f"{side}_gallery": gallery})
        with gr.Accordion("Raw result (JSON)", open=False):
            details = gr.JSON(label="details", elem_id="details")
        components["details"] = details
        outputs = [components[name] for name in OUTPUT_NAMES]
        with gr.Accordion("API and input rules", open=False):
            gr.Markdown(API_HELP.replace("{mb}", str(MAX_BYTES // 2**20)).replace("{mp}", str(MAX_PIXELS // 10**6)))

        def on_image(image: Any, pair: str | None, k: Any, invert: str) -> tuple:
            """The most influential training images for an uploaded image, for the robust and the natural model."""
            return neighbours(backend, image, pair, k, invert, notify=True, files=files).values()

        def on_sketch(sketch: Any, pair: str | None, k: Any) -> tuple:
            """The same for a drawing (a Sketchpad value)."""
            return sketch_neighbours(backend, sketch, pair, k, notify=True, files=files).values()

        def on_target(target_value: str) -> tuple:
            pairs = backend.pairs_for(target_value)
            if not pairs:
                return gr.update(choices=[], value=None), [], gr.update(visible=False)
            fmt = backend.target_format(pairs[0])
            return (gr.update(choices=[p.label for p in pairs], value=pairs[0].label),
                    _gallery(backend.examples(target_value), files), gr.update(visible=fmt.channels == 1))

        def on_pair(pair_label: str | None) -> tuple:
            try:
                chosen = backend.pair(pair_label)
            except RtxError:
                chosen = None
            return tuple(_header(chosen, side) for side in ("robust", "natural"))

        def on_example(target_value: str, evt: gr.SelectData) -> str | None:
            items = backend.examples(target_value)
            return files.image(items[evt.index].image) if 0 <= evt.index < len(items) else None

        inputs = [image_box, pair_box, k_slider, invert_radio]
        # preprocess=False: the handler decodes the upload itself (app.uploads), so a broken file gets our
        # message instead of Gradio's; uploaded paths are still confined to Gradio's upload folder.
        image_box.change(on_image, inputs, outputs, api_name="neighbours", preprocess=False,
                     trigger_mode="always_last", concurrency_id="influence")
        for control in (k_slider, invert_radio):
            control.change(on_image, inputs, outputs, preprocess=False, trigger_mode="always_last",
                           api_visibility="private", concurrency_id="influence")
        pair_box.change(on_pair, [pair_box], headers, api_visibility="private", queue=False).then(
            on_image, inputs, outputs, preprocess=False, api_visibility="private", concurrency_id="influence")
        target_box.change(on_target, [target_box], [pair_box, examples, draw_tab], api_visibility="private")
        examples.select(on_example, [target_box], [image_box], api_visibility="private")
        draw_button.click(on_sketch, [sketch, pair_box, k_slider], outputs, api_name="neighbours_sketch",
                          concurrency_id="influence")
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def _header(pair: ModelPair | None, side: str) -> str:
    if pair is None:
        return f"### {side}"
    if side != "robust":
        return f"### {side.capitalize()}: `{pair.natural_source}`"
    header = f"### Robust: `{pair.robust_source}`" + (f" ({pair.robust_role})" if pair.robust_role else "")
    return header + (f"\n{pair.robust_note}" if pair.robust_note else "")


def _gallery(examples: list[Example], files: ResultFiles) -> list[tuple[str, str]]:
    return [(files.image(e.image), e.caption) for e in examples]


__all__ = ["API_HELP", "CSS", "INTRO", "THEME_FONTS", "build_demo"]
