"""A recorded fine-tune's influence problem, for the influence stage and for any other library.

Influence on a run needs its fine-tuned weights, its subset, the target's test images, and the penultimate features
of both through the fine-tuned model (the FC layer is the only part influence differentiates: the paper's Section 6
and A.9). `influence_problem` does that chain once (cache row -> checkpoint -> dataset -> subset -> test images ->
features) and returns an `InfluenceProblem`: the arrays `FCProblem.create` takes, the test side, and the loss
convention. compute.stages.influence builds every stored result from it, so a result computed elsewhere from the
same problem is comparable with the stored one:

    from compute.influence_problem import find_run, influence_problem
    problem = influence_problem(find_run(root, "l2_0.22 · mnist5k · 400 images · seed 0 · 3 blocks"), root)
    fc = problem.fc_problem()  # float64; or problem.train_features, .train_labels, .weight, .bias for captum & co.

`find_run` takes a run key or the label the explorer shows (compute.run_label); an unknown one raises one line
that names a few valid labels and `rtx influence --list-runs`, which prints them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from compute.cache import CacheReader
from compute.data import load_dataset
from compute.errors import RtxError
from compute.influence import FCProblem, penultimate
from compute.models import load_checkpoint
from compute.records import KeptRun
from compute.run_label import RunLabel, looks_like_label
from compute.settings import resolve_device

# The objective whose Hessian and gradients every influence route uses (compute.influence's docstring has the sign).
LOSS = ("softmax cross-entropy of the FC layer at the fine-tuned weights, summed over the fine-tuning subset (H = sum "
        "of per-image Hessians, no damping); score[j, t] = g_t^T H^+ g_j = -(paper eq. 9), higher = more helpful")
SHOWN = 5  # valid labels an unknown-run error names (`rtx influence --list-runs` prints them all)


@dataclass(frozen=True)
class InfluenceProblem:
    """One run's FC-layer influence problem: training and test features through the fine-tuned model, labels, the
    FC weights, and the convention they are scored under (`loss`). Features are float32 as the model computes them
    (on the device asked for); `fc_problem()` is the float64 problem every route solves."""

    run: KeptRun
    train_indices: np.ndarray  # (n,) int64 rows of the target's training split (= run.subset_indices)
    train_features: torch.Tensor  # (n, d) float32
    train_labels: torch.Tensor  # (n,) int64
    test_indices: np.ndarray  # (n_test,) int64: the first n_test test images
    test_features: torch.Tensor  # (n_test, d) float32
    test_labels: torch.Tensor  # (n_test,) int64
    weight: torch.Tensor  # (C, d) the fine-tuned FC weight
    bias: torch.Tensor | None  # (C,) or None for a bias-free layer
    classes: tuple[str, ...]
    input_channels: int  # the target's native format (what a query image must look like)
    native_size: int
    input_size: int  # the side the model resizes inputs to
    loss: str = LOSS

    def fc_problem(self, damping: float = 0.0) -> FCProblem:
        """The float64 problem on the features' device (`damping` > 0 departs from the paper, which uses none)."""
        return FCProblem.create(self.train_features, self.train_labels, self.weight, self.bias, damping,
                                device=self.train_features.device)


@torch.no_grad()
def influence_problem(run: KeptRun, root: Path, n_test: int = 500, device: str | torch.device | None = None,
                      data_root: str | None = None, skip_bad_images: bool = False) -> InfluenceProblem:
    """Load the run's fine-tuned model from the cache at `root` and compute the penultimate features of its subset
    and of the target's first `n_test` test images."""
    if not run.model_path:
        raise RtxError(f"run {run.key} ({run.label}) kept no weights; re-run its fine-tune with --keep-models")
    dev = resolve_device(device)
    model, _ = load_checkpoint(Path(root) / run.model_path)
    model = model.to(dev).eval()
    train, test = (load_dataset(run.target, split, data_root, skip_bad_images=skip_bad_images)
                   for split in ("train", "test"))
    if model.num_classes != len(train.classes):
        raise RtxError(f"run {run.key}: model has {model.num_classes} outputs, {run.target} has "
                       f"{len(train.classes)} classes")
    train_idx = np.asarray(run.subset_indices, dtype=np.int64)
    test_idx = np.arange(min(n_test, len(test)), dtype=np.int64)
    rows, test_rows = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    fc = model.fc
    return InfluenceProblem(
        run, train_idx, penultimate(model, train.images[rows], dev), train.labels[rows],
        test_idx, penultimate(model, test.images[test_rows], dev), test.labels[test_rows],
        fc.weight.detach(), None if fc.bias is None else fc.bias.detach(),
        tuple(train.classes), train.channels, train.size, model.input_size)


class LabelledRun(NamedTuple):
    label: str
    key: str


def kept_runs(reader: CacheReader) -> list[LabelledRun]:
    """Every completed run with kept weights, by label (what `rtx influence --run` accepts)."""
    return sorted(LabelledRun(str(run.label), run.key) for run in reader.runs_with_weights())


def find_run(root: Path, run: str) -> KeptRun:
    """The completed run named by a run key or by its label; among runs with one label (a re-run after a code
    change), the newest with kept weights, as the influence stage picks."""
    reader = CacheReader(Path(root))
    try:
        if looks_like_label(run):
            label = RunLabel.parse(run)
            found = reader.kept_by_source(label.target, label.n_train, label.seed, label.blocks).get(label.source)
        else:
            found = reader.done_run(run)
        if found is None:
            raise _unknown_run(run, root, kept_runs(reader))
    finally:
        reader.close()
    return found


def _unknown_run(run: str, root: Path, valid: list[LabelledRun]) -> RtxError:
    if not valid:
        return RtxError(f"no completed run {run!r} in the cache at {root}, and no run there kept its weights; run "
                        "`rtx precompute` (its influence runs keep theirs) or `rtx finetune --keep-models`")
    shown = "; ".join(f"'{r.label}'" for r in valid[:SHOWN])
    more = f" and {len(valid) - SHOWN} more" if len(valid) > SHOWN else ""
    return RtxError(f"no completed run {run!r} with kept weights in the cache at {root}; valid labels: {shown}{more} "
                    "(`rtx influence --list-runs` prints every label and key)")


__all__ = ["LOSS", "InfluenceProblem", "KeptRun", "LabelledRun", "find_run", "influence_problem", "kept_runs"]
