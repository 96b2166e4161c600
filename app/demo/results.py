"""What one request answers: each model's prediction and its most influential training images, and the JSON
the API returns. Plain frozen data, no Gradio, so handlers, tests and the benchmark share one shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from app.influence_seeds import SeedGroup, label_match_over_seeds, seed_sentence
from app.pairing import Comparison, Side
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

    side: Side  # which model, and the part it plays ('paper analogue', 'best budget on <target>', 'natural')
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
    comparison: Comparison
    image: PreparedImage
    sides: tuple[SideResult, ...]  # in the comparison's order: robust models first, natural last
    seconds: float

    @property
    def summary(self) -> str:
        """How often each model's neighbours share its predicted label, each robust model against natural, e.g.
        "paper analogue (`l2_0.22`, predicts 7): 4 of 5 neighbours share the predicted label, 2 more than
        natural; best budget on mnist5k (...): 3 of 5, 1 more; natural (`natural`, predicts 7): 2 of 5"."""
        *robust, natural = self.sides
        parts = []
        for i, s in enumerate(robust):
            diff = s.matches - natural.matches
            versus = f"{abs(diff)} {'more' if diff > 0 else 'fewer'} than natural" if diff else "as many as natural"
            parts.append(f"{_who(s)}: {s.matches} of {len(s.neighbours)}"
                         f"{' neighbours share the predicted label' if i == 0 else ''}, {versus}")
        parts.append(f"{_who(natural)}: {natural.matches} of {len(natural.neighbours)}")
        text = "; ".join(parts) + " (this image only: one draw, no interval)."
        over_seeds = seed_sentence(self.seed_group) if self.seed_group else ""
        return text + (f"\n\n{over_seeds}" if over_seeds else "")

    @property
    def seed_group(self) -> SeedGroup | None:
        """This comparison's cell on every fine-tuning seed the cache scored (for label match over seeds)."""
        cells = self.comparison.seed_cells or (self.comparison.cell,)
        return SeedGroup(cells) if cells else None

    def label_match_over_seeds(self) -> list[dict[str, Any]]:
        """Each model's stored label match, k = 1..: mean and 95% interval over the group's seeds (the JSON's)."""
        group = self.seed_group
        frame = label_match_over_seeds(group, group.curves()) if group else None
        if frame is None or frame.empty:
            return []
        return [{"model": r.model, "source": r.source, "k": int(r.k), "mean": float(r.match),
                 "lo": None if np.isnan(r.lo) else float(r.lo), "hi": None if np.isnan(r.hi) else float(r.hi),
                 "n_seeds": int(r.n_seeds)} for r in frame.itertuples()]

    def as_json(self) -> dict[str, Any]:
        """The API's structured answer: everything the UI shows, as plain numbers and strings; `models` is keyed by
        role ('analogue', 'best_budget', 'natural'), in the page's column order."""
        return {
            "target": self.comparison.target,
            "cell": self.comparison.label,
            "method": self.comparison.method,
            "cutoff": self.comparison.cell.cutoff,
            "image": {"width": self.image.original_size[0], "height": self.image.original_size[1],
                      "mode": self.image.original_mode, "notes": list(self.image.notes)},
            "seconds": round(self.seconds, 4),
            "label_match_over_seeds": self.label_match_over_seeds(),
            "models": {s.side.role: {
                "source": s.side.source, "part": s.side.part, "note": s.side.note, "influence_key": s.side.key,
                "predicted": s.predicted, "predicted_label": s.predicted_name, "matches": s.matches,
                "top3": [{"label": name, "probability": round(p, 6)} for name, p in s.top(3)],
                "neighbours": [{"rank": n.rank, "train_pos": n.train_pos, "train_index": n.train_index,
                                "label": n.label, "label_name": n.label_name, "score": n.score,
                                "matches_prediction": n.matches_prediction} for n in s.neighbours],
            } for s in self.sides},
        }


def _who(result: SideResult) -> str:
    return f"**{result.side.part}** (`{result.side.source}`, predicts *{result.predicted_name}*)"


@dataclass(frozen=True)
class Example:
    caption: str
    image: Image.Image


__all__ = ["Example", "Explanation", "Neighbour", "SideResult"]
