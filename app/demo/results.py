"""What one request answers: each model's prediction and its most influential training images, and the JSON
the API returns. Plain frozen data, no Gradio, so handlers, tests and the benchmark share one shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from app.pairing import ModelPair
from app.uploads import PreparedImage


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
    model_input: np.ndarray  # (C, S, S) float in [0, 1], the image as the model sees it
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
            "method": self.pair.method,
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


__all__ = ["Example", "Explanation", "Neighbour", "SideResult"]
