"""On-demand influence of a new image against every training image of a fine-tuned model.

The stage stored what a query needs (`QueryMatrix.arrays()`): Q_j = H^+ g_j for every training point j as
a (C, D) array and, for the eigen routes, the factors of H^+. A new image costs one forward pass (features
z, probabilities p) plus one structured product, no backward pass: its gradient is g = r z~^T with
r = p - e_label, so score_j = r^T Q_j z~ ((Q reshaped (n C, D)) @ z~, then a C-term sum per j: n C D
multiply-adds), or with the factors E^T g (r (C-1) m) and an (n, m) product; the cheaper one is used.
An unlabeled image's gradient uses its predicted label (the loss of the model's own answer), so its scores
say which training images support that prediction; pass `labels` to use others (a dataset test image with
its true label gets exactly the stored matrix's column).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compute.cache import CacheReader
from compute.data import load_dataset, to_model_input
from compute.errors import RtxError
from compute.influence import QueryMatrix, probabilities, query_scores
from compute.models import Classifier, load_checkpoint


@dataclass(frozen=True)
class NeighbourResult:
    """One image's answer: what the model saw and predicted, and its k most influential training images."""

    model_input: torch.Tensor  # (3, S, S) in [0, 1], the image as the model sees it
    probs: np.ndarray  # (C,)
    predicted: int
    train_positions: np.ndarray  # (k,) rows of the fine-tuning subset, most influential first
    train_indices: np.ndarray  # (k,) indices into the target's training split
    train_labels: np.ndarray  # (k,)
    scores: np.ndarray  # (k,) influence scores, highest (most helpful) first


class InfluenceIndex:
    """A loaded influence result ready for queries: the fine-tuned model and its query matrix."""

    def __init__(self, key: str, run_key: str, source: str, target: str, method: str, classes: tuple[str, ...],
                 input_channels: int, native_size: int, model: Classifier, query: QueryMatrix,
                 train_indices: np.ndarray, train_labels: np.ndarray, device: torch.device):
        self.key, self.run_key, self.source, self.target, self.method = key, run_key, source, target, method
        self.classes = classes
        self.input_channels, self.native_size = input_channels, native_size
        self.model = model.to(device).eval()
        self.device = device
        self.train_indices, self.train_labels = train_indices, train_labels
        self._query = query
        fc = self.model.fc
        self._weight = fc.weight.detach().double()
        self._bias = None if fc.bias is None else fc.bias.detach().double()

    @classmethod
    def load(cls, root: Path, influence_key: str, device: str | torch.device = "cpu") -> InfluenceIndex:
        reader = CacheReader(Path(root))
        try:
            row = reader.influence(influence_key)
            if row is None:
                raise RtxError(f"no influence result {influence_key!r} in the cache at {root}; run `rtx influence`")
            run = reader.done_run(row.run_key)
        finally:
            reader.close()
        if run is None or not run.model_path:
            raise RtxError(f"influence result {influence_key}: its fine-tuned model ({row.run_key}) is gone "
                           "from the cache; re-run `rtx precompute`")
        query_file = Path(root) / row.query_path
        if not query_file.exists():
            raise RtxError(f"influence result {influence_key}: {query_file} is missing; re-run `rtx influence`")
        meta = row.meta
        if "classes" in meta:
            classes, channels, size = tuple(meta["classes"]), int(meta["input_channels"]), int(meta["native_size"])
        else:  # results written before the meta carried the target's format
            data = load_dataset(run.target, "test")
            classes, channels, size = data.classes, data.channels, data.size
        model, _ = load_checkpoint(Path(root) / run.model_path)
        with np.load(query_file) as stored:
            query = QueryMatrix.from_arrays(stored, row.method, row.cutoff, device)
            train_indices, train_labels = stored["train_indices"], stored["train_labels"]
        return cls(influence_key, run.key, run.source, run.target, row.method, classes, channels,
                   size, model, query, train_indices, train_labels, torch.device(device))

    @torch.no_grad()
    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != self.input_channels:
            raise RtxError(f"expected images (N, {self.input_channels}, H, W) in [0, 1] like {self.target}, "
                           f"got {tuple(images.shape)}")
        x = to_model_input(images.to(self.device, torch.float32), self.model.input_size)  # (N, 3, S, S)
        z = self.model.features(x).double()  # (N, d)
        return x, z, probabilities(z, self._weight, self._bias)

    @torch.no_grad()
    def _scores(self, z: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, n) scores of images with features z (N, d), probabilities (N, C), gradient labels (N,)."""
        return query_scores(self._query, z, probs, labels, self._bias is not None).T

    def scores(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> np.ndarray:
        """(N, n_train) influence of every training image on each image (predicted labels unless given)."""
        _, z, probs = self._forward(images)
        labels = probs.argmax(1) if labels is None else torch.as_tensor(labels, device=self.device)
        return self._scores(z, probs, labels).cpu().numpy()

    def query(self, images: torch.Tensor, k: int = 5, labels: torch.Tensor | None = None) -> list[NeighbourResult]:
        """The k most influential training images for each image (N, C, H, W) in the target's native format."""
        x, z, probs = self._forward(images)
        predicted = probs.argmax(1)
        scores = self._scores(z, probs, predicted if labels is None else torch.as_tensor(labels, device=self.device))
        k = max(1, min(k, scores.shape[1]))
        best = torch.topk(scores, k, dim=1)  # sorted, highest first
        out = []
        for i in range(scores.shape[0]):
            pos = best.indices[i].cpu().numpy()
            out.append(NeighbourResult(x[i].cpu(), probs[i].cpu().numpy(), int(predicted[i]), pos,
                                       self.train_indices[pos], self.train_labels[pos], best.values[i].cpu().numpy()))
        return out
