"""The Gradio demo: upload, draw or pick an image; see which training images a robust and a natural model
lean on for their prediction (the paper's Section 6, on demand).

Everything slow happens before the first request: the cache's influence results are paired (robust and
natural fine-tunes on the same subset), each pair's `InfluenceIndex` is loaded, training thumbnails are
decoded. A request only converts the upload (`app.uploads`) and runs `InfluenceIndex.query` twice: a
forward pass and one product with the stored query matrix per model, well under a second on a CPU.

`build_demo(root)` builds the Blocks; `launch(root, ...)` serves them offline on 127.0.0.1. The same
function behind the UI is the API endpoint `/neighbours` (see `API_HELP`); bad input never raises to the
client, it comes back as a status line (and a toast in the browser).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from app.uploads import (
    FORMATS,
    INVERT_CHOICES,
    MAX_BYTES,
    MAX_PIXELS,
    PreparedImage,
    TargetFormat,
    load_upload,
    open_image,
    prepare_sketch,
    strict_bomb_warnings,
)
from compute.cache import CacheReader
from compute.errors import RtxError
from compute.images import from_png
from compute.influence_index import InfluenceIndex
from compute.presets import get_preset

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry, no version check
import gradio as gr  # noqa: E402  (after the environment above)

log = logging.getLogger(__name__)

DEFAULT_K = 5  # the paper's Figure 5 shows the top 5
MAX_K = 20
EXAMPLES_PER_CLASS = 2
VIEW_SIZE = 112  # the model's input is shown nearest-upscaled to at least this many pixels
CONCURRENCY = 2  # requests computed at once (the target machine has 2 cores) ...
TORCH_THREADS = 1  # ... one torch thread each: a single small image gains nothing from intra-op threads, and
#                    on a busy machine their spin-waits cost 10-30x (measured with bench/demo.py --threads 2)
QUEUE_SIZE = 64
SEEDS_DIR = Path(__file__).resolve().parent.parent / "assets" / "seeds"
SEED_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
PROMPT = "Upload an image, draw one, or click an example."
EMPTY_CACHE = ("The cache at `{root}` holds no influence results yet. Run `rtx precompute --preset demo` "
               "(minutes on a CPU), then restart the demo.")


# --- what the cache offers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelPair:
    """A robust and a natural fine-tune on the same target subset, each with an influence result."""

    target: str
    subset_size: int
    seed: int
    blocks: int
    robust_source: str
    natural_source: str
    robust_key: str  # influence keys
    natural_key: str

    @property
    def label(self) -> str:
        return (f"{self.robust_source} vs {self.natural_source} · {self.subset_size} images · seed {self.seed} "
                f"· {self.blocks} blocks")

    def sides(self) -> tuple[tuple[str, str, str], ...]:
        """(side, source, influence key) for the robust and the natural model, in display order."""
        return (("robust", self.robust_source, self.robust_key), ("natural", self.natural_source, self.natural_key))


def find_pairs(results: pd.DataFrame, sources: pd.DataFrame) -> list[ModelPair]:
    """Pair every robust influence result with the natural one on the same (target, subset, seed, blocks).

    A source is natural when its constraint is `none` (the `source_models` table), or when named `natural`.
    """
    if results.empty:
        return []
    constraints = dict(zip(sources.get("name", []), sources.get("constraint_", []), strict=False))
    natural = results["source"].map(lambda s: constraints.get(s, "none" if s == "natural" else "?") == "none")
    cell = ["target", "subset_size", "seed", "blocks", "method"]
    pairs = []
    for keys, group in results.assign(natural=natural).groupby(cell, sort=True):
        naturals = group[group["natural"]]
        if naturals.empty:
            continue
        nat = naturals.iloc[0]
        for _, rob in group[~group["natural"]].sort_values("source").iterrows():
            pairs.append(ModelPair(str(keys[0]), int(keys[1]), int(keys[2]), int(keys[3]), str(rob["source"]),
                                   str(nat["source"]), str(rob["key"]), str(nat["key"])))
    return pairs


def default_pair(pairs: list[ModelPair]) -> ModelPair | None:
    """The demo preset's influence run (robust vs natural) when the cache has it, else the first pair."""
    for preset in ("demo", "tiny", "paper"):
        spec = get_preset(preset).influence
        for pair in pairs:
            if spec and (pair.target, pair.subset_size, pair.seed, pair.blocks) == (
                    spec.target, spec.n_train, spec.seed, spec.blocks) and pair.robust_source in spec.sources:
                return pair
    return pairs[0] if pairs else None


# --- results ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Neighbour:
    rank: int
    train_pos: int  # row of the fine-tuning subset
    train_index: int  # index into the target's training split (the thumbnail's `idx`)
    label: int
    label_name: str
    score: float
    matches_prediction: bool


@dataclass(frozen=True)
class SideResult:
    """One model's answer: what it saw, what it predicted, which training images drove it."""

    side: str  # "robust" | "natural"
    source: str
    influence_key: str
    model_input: np.ndarray  # (S, S, 3) uint8, the image as the model sees it
    probabilities: dict[str, float]  # class name -> probability, every class
    predicted: int
    predicted_name: str
    neighbours: tuple[Neighbour, ...]

    @property
    def matches(self) -> int:
        return sum(n.matches_prediction for n in self.neighbours)

    def top(self, n: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:n]


@dataclass(frozen=True)
class Explanation:
    pair: ModelPair
    image: PreparedImage
    sides: tuple[SideResult, ...]
    seconds: float

    @property
    def summary(self) -> str:
        """E.g. "robust (l2_1.5, predicts 7): 4 of 5 neighbours share the predicted label; natural (...): 2 of 5"."""
        first, *rest = self.sides
        parts = [f"**{first.side}** (`{first.source}`, predicts *{first.predicted_name}*): {first.matches} of "
                 f"{len(first.neighbours)} neighbours share the predicted label"]
        parts += [f"**{s.side}** (`{s.source}`, predicts *{s.predicted_name}*): {s.matches} of {len(s.neighbours)}"
                  for s in rest]
        return "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        """The API's structured answer: everything the UI shows, as plain numbers and strings."""
        return {
            "target": self.pair.target,
            "pair": self.pair.label,
            "image": {"width": self.image.original_size[0], "height": self.image.original_size[1],
                      "mode": self.image.original_mode, "notes": list(self.image.notes)},
            "seconds": round(self.seconds, 4),
            "models": [{
                "side": s.side, "source": s.source, "influence_key": s.influence_key, "predicted": s.predicted,
                "predicted_label": s.predicted_name, "matches": s.matches,
                "top3": [{"label": name, "probability": round(p, 6)} for name, p in s.top(3)],
                "neighbours": [{"rank": n.rank, "train_pos": n.train_pos, "train_index": n.train_index,
                                "label": n.label, "label_name": n.label_name, "score": n.score,
                                "matches_prediction": n.matches_prediction} for n in s.neighbours],
            } for s in self.sides],
        }


@dataclass(frozen=True)
class Example:
    caption: str
    image: Image.Image


# --- the backend: cache reads at start-up, influence queries per request ----------------------------------
@dataclass
class DemoBackend:
    """Holds what requests need in memory; no database access at request time (DuckDB connections are not
    shared across the server's threads), lazy loads guarded by one lock."""

    root: Path
    pairs: list[ModelPair]
    default: ModelPair | None
    thumbs: dict[tuple[str, str], pd.DataFrame]  # (target, split) -> idx-indexed frame of label, png
    _indices: dict[str, InfluenceIndex] = field(default_factory=dict)
    _images: dict[tuple[str, str, int], Image.Image] = field(default_factory=dict)
    _examples: dict[str, list[Example]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def open(cls, root: Path, warm: bool = True) -> DemoBackend:
        reader = CacheReader(root)
        try:
            pairs = find_pairs(reader.influence_results(), reader.source_models())
            thumbs = {(target, split): reader.thumbnails(target, split)
                      for target in sorted({p.target for p in pairs}) for split in ("train", "test")}
        finally:
            reader.close()
        thumbs = {key: frame.set_index("idx")[["label", "png"]] if not frame.empty else frame
                  for key, frame in thumbs.items()}
        backend = cls(Path(root), pairs, default_pair(pairs), thumbs)
        if warm and backend.default is not None:
            backend.warm(backend.default)
        return backend

    @property
    def empty(self) -> bool:
        return not self.pairs

    def targets(self) -> list[str]:
        return sorted({p.target for p in self.pairs})

    def pairs_for(self, target: str) -> list[ModelPair]:
        return [p for p in self.pairs if p.target == target]

    def pair(self, label: str | None) -> ModelPair:
        if self.empty:
            raise RtxError(EMPTY_CACHE.format(root=self.root))
        if not label:
            return self.default
        for pair in self.pairs:
            if pair.label == label:
                return pair
        raise RtxError(f"unknown model pair {label!r}; valid choices: " + " | ".join(p.label for p in self.pairs))

    def index(self, key: str) -> InfluenceIndex:
        with self._lock:
            if key not in self._indices:
                self._indices[key] = InfluenceIndex.load(self.root, key)
            return self._indices[key]

    def target_format(self, pair: ModelPair) -> TargetFormat:
        index = self.index(pair.robust_key)
        return TargetFormat(int(index.input_channels), int(index.native_size))

    def warm(self, pair: ModelPair) -> None:
        """Load both indices and run one query so the first user request pays no start-up cost."""
        fmt = self.target_format(pair)
        for _, _, key in pair.sides():
            self.index(key).query(torch.zeros(1, fmt.channels, fmt.size, fmt.size), k=1)

    def thumbnail(self, target: str, split: str, idx: int) -> Image.Image | None:
        key = (target, split, int(idx))
        with self._lock:
            if key not in self._images:
                frame = self.thumbs.get((target, split))
                if frame is None or frame.empty or int(idx) not in frame.index:
                    return None
                image = from_png(bytes(frame.at[int(idx), "png"]))
                image.load()
                self._images[key] = image
            return self._images[key]

    def examples(self, target: str) -> list[Example]:
        """Test images of the target (a few per class, from the stored thumbnails) and the shipped photos."""
        with self._lock:
            if target not in self._examples:
                self._examples[target] = self._collect_examples(target)
            return self._examples[target]

    def _collect_examples(self, target: str, per_class: int = EXAMPLES_PER_CLASS) -> list[Example]:
        out: list[Example] = []
        pairs = self.pairs_for(target)
        frame = self.thumbs.get((target, "test"))
        if pairs and frame is not None and not frame.empty:
            classes = self.index(pairs[0].robust_key).classes
            chosen = frame.sort_index().groupby("label", sort=True).head(per_class).sort_values("label", kind="stable")
            for idx, label in chosen["label"].items():
                name = classes[int(label)] if int(label) < len(classes) else str(label)
                out.append(Example(f"{name} #{idx}", self.thumbnail(target, "test", int(idx))))
        for path in sorted(SEEDS_DIR.glob("*")) if SEEDS_DIR.is_dir() else []:
            if path.suffix.lower() in SEED_SUFFIXES:
                try:
                    out.append(Example(f"photo · {path.stem}", _open_seed(path)))
                except RtxError as err:  # a broken shipped photo is skipped, not fatal
                    log.warning("skipping %s: %s", path, err)
        return out

    def explain(self, image: PreparedImage, pair: ModelPair, k: int = DEFAULT_K) -> Explanation:
        """Both models' predictions and their k most influential training images for one prepared image."""
        start = time.perf_counter()
        sides = []
        for side, source, key in pair.sides():
            index = self.index(key)
            result = index.query(image.batch, k=k)[0]
            classes = tuple(str(c) for c in index.classes)
            predicted = int(result.predicted)
            neighbours = tuple(
                Neighbour(rank, int(pos), int(idx), int(label), classes[int(label)], float(score),
                          int(label) == predicted)
                for rank, (pos, idx, label, score) in enumerate(zip(
                    result.train_positions, result.train_indices, result.train_labels, result.scores, strict=True))
            )
            probs = np.asarray(result.probs, dtype=np.float64)
            sides.append(SideResult(side, source, key, _to_uint8(result.model_input),
                                    {c: float(p) for c, p in zip(classes, probs, strict=True)},
                                    predicted, classes[predicted], neighbours))
        return Explanation(pair, image, tuple(sides), time.perf_counter() - start)


def _to_uint8(image: Any) -> np.ndarray:
    """(3, S, S) float tensor in [0, 1] -> (S', S', 3) uint8, nearest-upscaled to at least VIEW_SIZE."""
    array = image.detach().cpu().float().numpy() if hasattr(image, "detach") else np.asarray(image, np.float32)
    array = (np.clip(array.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
    factor = max(1, -(-VIEW_SIZE // array.shape[0]))
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def _open_seed(path: Path) -> Image.Image:
    image = open_image(path)
    image.thumbnail((512, 512))
    return image.convert("RGB")


# --- requests: the function behind the UI and the API -----------------------------------------------------
OUTPUT_NAMES = ("status", "summary", "robust_view", "robust_label", "robust_gallery", "natural_view",
                "natural_label", "natural_gallery", "details")


def _message_outputs(message: str) -> tuple:
    return (f"⚠️ {message}", "", None, None, [], None, None, [], {"error": message})


def _render(backend: DemoBackend, explanation: Explanation) -> tuple:
    image = explanation.image
    notes = f" ({'; '.join(image.notes)})" if image.notes else ""
    what = "Drawing" if image.original_mode == "sketch" else "Image"
    mode = "" if image.original_mode == "sketch" else f" {image.original_mode}"
    status = (f"{what} {image.original_size[0]} x {image.original_size[1]}{mode}{notes}. "
              f"Answered in {explanation.seconds:.2f} s.")
    out: list[Any] = [status, explanation.summary]
    for side in explanation.sides:
        gallery = []
        for n in side.neighbours:
            thumb = backend.thumbnail(explanation.pair.target, "train", n.train_index)
            mark = "✓ " if n.matches_prediction else ""
            caption = f"{mark}{n.label_name} · {n.score:.2g}"  # two digits fit a thumbnail; the JSON has all
            gallery.append((thumb if thumb is not None else _missing(), caption))
        out += [side.model_input, dict(side.top(3)), gallery]
    out.append(explanation.as_json())
    return tuple(out)


def _missing() -> Image.Image:
    return Image.new("L", (56, 56), 128)


def _answer(backend: DemoBackend, prepare: Callable[[TargetFormat], PreparedImage], pair_label: str | None,
            k: Any, notify: bool) -> tuple:
    """Shared by uploads and drawings: every failure becomes a message (and a toast when `notify`), never a
    traceback."""
    try:
        pair = backend.pair(pair_label)
        k = min(MAX_K, max(1, int(float(k if k is not None else DEFAULT_K))))
        prepared = prepare(backend.target_format(pair))
        return _render(backend, backend.explain(prepared, pair, k))
    except RtxError as err:  # UploadError included
        message = str(err)
    except (TypeError, ValueError) as err:
        message = f"bad request ({err}); send an image file, a model pair from the list and k between 1 and {MAX_K}"
    except Exception:  # a bug: log it for the operator, tell the user something useful
        log.exception("demo request failed")
        message = "internal error while computing the neighbours; the server log has the details"
    if notify:
        gr.Warning(message)
    return _message_outputs(message)


def _upload_path(image: Any) -> str | None:
    """The uploaded file's path from a raw Gradio payload (dict / FileData) or a plain path."""
    if image is None:
        return None
    if isinstance(image, dict):
        return image.get("path")
    return str(getattr(image, "path", image))


def neighbours(backend: DemoBackend, image: Any, pair_label: str | None = None, k: Any = DEFAULT_K,
               invert: str = "auto", notify: bool = False) -> tuple:
    """An uploaded image (path or Gradio file payload) -> the nine outputs of `OUTPUT_NAMES`.

    `notify` also shows a bad input's message as a toast (only inside a Gradio request)."""
    path = _upload_path(image)
    if path is None:
        if backend.empty:
            return _message_outputs(EMPTY_CACHE.format(root=backend.root))
        return (PROMPT, "", None, None, [], None, None, [], {})
    return _answer(backend, lambda fmt: load_upload(path, fmt, invert=invert or "auto"), pair_label, k, notify)


def sketch_neighbours(backend: DemoBackend, sketch: Any, pair_label: str | None = None,
                      k: Any = DEFAULT_K, notify: bool = False) -> tuple:
    """A Sketchpad value (its `composite` canvas) -> the same outputs as `neighbours`."""
    canvas = sketch.get("composite") if isinstance(sketch, dict) else sketch
    return _answer(backend, lambda fmt: prepare_sketch(canvas, fmt), pair_label, k, notify)


# --- the page ----------------------------------------------------------------------------------------------
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
                                   value=pair.label if pair else None, label="Models (robust vs natural)", scale=3)
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
                examples = gr.Gallery(_gallery(backend.examples(first_target)) if pair else [], label="Examples",
                                      columns=6, height=220, allow_preview=False, object_fit="contain",
                                      format="png", elem_id="examples", elem_classes=["thumbs"])
                invert_radio = gr.Radio(list(INVERT_CHOICES), value="auto",
                                        label="Invert grey images (the target's digits are light on dark)")
            with gr.Column(scale=3):
                status = gr.Markdown(PROMPT, label="status", elem_id="status")
                summary = gr.Markdown("", label="summary", elem_id="summary")
                outputs: list[gr.components.Component] = [status, summary]
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
                            outputs += [view, label, gallery]
        with gr.Accordion("Raw result (JSON)", open=False):
            details = gr.JSON(label="details", elem_id="details")
        outputs.append(details)
        with gr.Accordion("API and input rules", open=False):
            gr.Markdown(API_HELP.replace("{mb}", str(MAX_BYTES // 2**20)).replace("{mp}", str(MAX_PIXELS // 10**6)))

        def on_image(image: Any, pair: str | None, k: Any, invert: str) -> tuple:
            """The most influential training images for an uploaded image, for the robust and the natural model."""
            return neighbours(backend, image, pair, k, invert, notify=True)

        def on_sketch(sketch: Any, pair: str | None, k: Any) -> tuple:
            """The same for a drawing (a Sketchpad value)."""
            return sketch_neighbours(backend, sketch, pair, k, notify=True)

        def on_target(target_value: str) -> tuple:
            pairs = backend.pairs_for(target_value)
            if not pairs:
                return gr.update(choices=[], value=None), [], gr.update(visible=False)
            fmt = backend.target_format(pairs[0])
            return (gr.update(choices=[p.label for p in pairs], value=pairs[0].label),
                    _gallery(backend.examples(target_value)), gr.update(visible=fmt.channels == 1))

        def on_pair(pair_label: str | None) -> tuple:
            try:
                chosen = backend.pair(pair_label)
            except RtxError:
                chosen = None
            return tuple(_header(chosen, side) for side in ("robust", "natural"))

        def on_example(target_value: str, evt: gr.SelectData) -> Image.Image | None:
            items = backend.examples(target_value)
            return items[evt.index].image if 0 <= evt.index < len(items) else None

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
    source = pair.robust_source if side == "robust" else pair.natural_source
    return f"### {side.capitalize()}: `{source}`"


def _gallery(examples: list[Example]) -> list[tuple[Image.Image, str]]:
    return [(e.image, e.caption) for e in examples]


THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # local fonts: no request to Google Fonts
# Gradio's gallery cells are at least 100 px wide: five neighbours would not fit a half-width column.
CSS = """
.thumbs .grid-container { grid-template-columns: repeat(auto-fill, minmax(84px, 1fr)) !important; gap: 6px !important; }
.thumbs .caption-label { max-width: 100% !important; font-size: 11px !important; padding: 1px 4px !important; }
"""


def launch(root: Path, host: str = "127.0.0.1", port: int = 7860, root_path: str | None = None,
           block: bool = True, backend: DemoBackend | None = None) -> gr.Blocks:
    """Serve the demo offline: no share link, no analytics, bound to `host` (loopback by default).

    `block=False` returns once the server is up (tests, benchmarks); `demo.close()` stops it.
    """
    strict_bomb_warnings()
    torch.set_num_threads(TORCH_THREADS)
    demo = build_demo(Path(root), backend)
    theme = gr.themes.Default(font=THEME_FONTS, font_mono=["ui-monospace", "monospace"])
    demo.launch(server_name=host, server_port=port, root_path=root_path, share=False, show_error=False,
                max_file_size=MAX_BYTES, ssr_mode=False, prevent_thread_lock=not block, quiet=not block,
                theme=theme, css=CSS, footer_links=["api"], favicon_path=None)
    return demo


__all__ = ["API_HELP", "FORMATS", "DemoBackend", "Explanation", "ModelPair", "OUTPUT_NAMES", "build_demo",
           "default_pair", "find_pairs", "launch", "neighbours", "sketch_neighbours"]
