"""The demo's backend: everything slow happens once, before the first request.

At start-up the cache's influence results are grouped into cells (`app.pairing`, the same cells the explorer
shows) and each cell into a comparison (the paper analogue, the best budget, natural), training thumbnails are
read, and the default comparison's `InfluenceIndex`es are loaded and warmed. A request only runs
`InfluenceIndex.query` once per model: a forward pass and one product with the stored query
matrix, well under a second on a CPU. No database access at request time (DuckDB connections are not shared
across the server's threads); lazy loads are guarded by one lock.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from app.demo.results import Example, Explanation, Neighbour, SideResult
from app.pairing import Comparison, comparisons, default_comparison, influence_cells
from app.uploads import PreparedImage, TargetFormat, open_image
from compute.cache import CacheReader
from compute.errors import RtxError
from compute.featviz import SEEDS_DIR
from compute.images import from_png
from compute.influence_index import InfluenceIndex
from compute.presets import get_preset

log = logging.getLogger(__name__)

DEFAULT_K = 5  # the paper's Figure 5 shows the top 5
MAX_K = 20
EXAMPLES_PER_CLASS = 2
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # shipped photos offered as examples (compute's seed folder)
EMPTY_CACHE = ("The cache at `{root}` holds no influence results yet. Run `rtx precompute --preset demo` "
               "(minutes on a CPU), then restart the demo.")


def preferred_cells() -> list[tuple[str, int, int, int, tuple[str, ...]]]:
    """The presets' influence cells (demo first): the comparison the page opens with when the cache has it."""
    specs = [get_preset(name).influence for name in ("demo", "tiny", "paper")]
    return [(s.target, s.n_train, s.seed, s.blocks, s.sources) for s in specs if s]


@dataclass
class DemoBackend:
    """Holds what requests need in memory: comparisons, thumbnails (PNG bytes), loaded influence indices."""

    root: Path
    comparisons: list[Comparison]
    default: Comparison | None
    thumbs: dict[tuple[str, str], pd.DataFrame]  # (target, split) -> idx-indexed frame of label, png
    _indices: dict[str, InfluenceIndex] = field(default_factory=dict)
    _images: dict[tuple[str, str, int], Image.Image] = field(default_factory=dict)
    _examples: dict[str, list[Example]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def open(cls, root: Path, warm: bool = True) -> DemoBackend:
        reader = CacheReader(root)
        try:
            cells = influence_cells(reader.influence_results(), reader.source_roles().naturals)
            choices = comparisons(cells)
            thumbs = {(target, split): reader.thumbnails(target, split)
                      for target in sorted({c.target for c in choices}) for split in ("train", "test")}
        finally:
            reader.close()
        thumbs = {key: frame.set_index("idx")[["label", "png"]] if not frame.empty else frame
                  for key, frame in thumbs.items()}
        backend = cls(Path(root), choices, default_comparison(choices, preferred_cells()), thumbs)
        if warm and backend.default is not None:
            backend.warm(backend.default)
        return backend

    @property
    def empty(self) -> bool:
        return not self.comparisons

    def targets(self) -> list[str]:
        return sorted({c.target for c in self.comparisons})

    def comparisons_for(self, target: str | None) -> list[Comparison]:
        return [c for c in self.comparisons if c.target == target]

    def comparison(self, label: str | None) -> Comparison:
        """The comparison whose label (the dropdown's, or the API's second input) is `label`; None: the default."""
        if self.empty:
            raise RtxError(EMPTY_CACHE.format(root=self.root))
        if not label:
            return self.default
        for choice in self.comparisons:
            if choice.label == label:
                return choice
        raise RtxError(f"unknown influence cell {label!r}; valid choices: "
                       + " | ".join(c.label for c in self.comparisons))

    def index(self, key: str) -> InfluenceIndex:
        with self._lock:
            if key not in self._indices:
                self._indices[key] = InfluenceIndex.load(self.root, key)
            return self._indices[key]

    def target_format(self, comparison: Comparison) -> TargetFormat:
        """The input every model of the comparison takes (one target, so one format)."""
        index = self.index(comparison.sides[0].key)
        return TargetFormat(int(index.input_channels), int(index.native_size))

    def warm(self, comparison: Comparison) -> None:
        """Load every model's index and run one query so the first user request pays no start-up cost."""
        fmt = self.target_format(comparison)
        for side in comparison.sides:
            self.index(side.key).query(torch.zeros(1, fmt.channels, fmt.size, fmt.size), k=1)

    def thumbnail_png(self, target: str, split: str, idx: int) -> bytes | None:
        """The stored PNG bytes of one target image, None when the cache holds none."""
        frame = self.thumbs.get((target, split))
        if frame is None or frame.empty or int(idx) not in frame.index:
            return None
        return bytes(frame.at[int(idx), "png"])

    def thumbnail(self, target: str, split: str, idx: int) -> Image.Image | None:
        key = (target, split, int(idx))
        with self._lock:
            if key not in self._images:
                data = self.thumbnail_png(target, split, idx)
                if data is None:
                    return None
                image = from_png(data)
                image.load()
                self._images[key] = image
            return self._images[key]

    def examples(self, target: str | None) -> list[Example]:
        """Test images of the target (a few per class, from the stored thumbnails) and the shipped photos."""
        with self._lock:
            if target not in self._examples:
                self._examples[target] = self._collect_examples(target)
            return self._examples[target]

    def _collect_examples(self, target: str | None, per_class: int = EXAMPLES_PER_CLASS) -> list[Example]:
        out: list[Example] = []
        choices = self.comparisons_for(target)
        frame = self.thumbs.get((target, "test"))
        if choices and frame is not None and not frame.empty:
            classes = self.index(choices[0].sides[0].key).classes
            chosen = frame.sort_index().groupby("label", sort=True).head(per_class).sort_values("label", kind="stable")
            for idx, label in chosen["label"].items():
                name = classes[int(label)] if int(label) < len(classes) else str(label)
                out.append(Example(f"{name} #{idx}", self.thumbnail(target, "test", int(idx))))
        for path in sorted(SEEDS_DIR.glob("*")) if SEEDS_DIR.is_dir() else []:
            if path.suffix.lower() in PHOTO_SUFFIXES:
                try:
                    out.append(Example(f"photo · {path.stem}", _open_photo(path)))
                except RtxError as err:  # a broken shipped photo is skipped, not fatal
                    log.warning("skipping %s: %s", path, err)
        return out

    def explain(self, image: PreparedImage, comparison: Comparison, k: int = DEFAULT_K) -> Explanation:
        """Every model's prediction and its k most influential training images for one prepared image."""
        start = time.perf_counter()
        sides = []
        for side in comparison.sides:
            index = self.index(side.key)
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
            model_input = result.model_input
            model_input = model_input.detach().cpu().float().numpy() if hasattr(model_input, "detach") \
                else np.asarray(model_input, np.float32)
            sides.append(SideResult(side, model_input,
                                    {c: float(p) for c, p in zip(classes, probs, strict=True)},
                                    predicted, classes[predicted], neighbours))
        return Explanation(comparison, image, tuple(sides), time.perf_counter() - start)


def _open_photo(path: Path) -> Image.Image:
    image = open_image(path)
    image.thumbnail((512, 512))
    return image.convert("RGB")


__all__ = ["DEFAULT_K", "EMPTY_CACHE", "MAX_K", "DemoBackend", "preferred_cells"]
