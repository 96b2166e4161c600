"""The `influence` stage: for the preset's fine-tunes of one subset (natural, the paper analogue, and the budget
that transferred best on the target: `compute.best_budget`), the train x test matrix of the run's problem
(`compute.influence_problem`, public: another library gets the same features and weights), its per-test top-k,
the label-match curve, the query matrix for on-demand queries, and thumbnails.

Stored per result (key = job_key('influence', {run_key, method, cutoff, n_test, code})):
- `influence/<key>.npy`: the (n_train, n_test) float32 score matrix (rows: the run's subset order),
- `influence_query/<key>.npz`: what a query needs (`QueryMatrix.arrays()`, float32): `query` (n_train, C, D) =
  H^+ g_j per training point when n C D is at most 1e8, the eigen factors (`class_basis`, `vectors`,
  `train_coeff`, `feature_basis`) or TracIn's gradient factors, `weight`, `bias`, `train_indices`, `train_labels`,
- one `influence` row (labels, predictions, label-match curve k = 1..20, timings, meta) and `influence_topk`
  rows (test_pos, rank, train_pos, score), the top-k computed from the matrix,
- in the meta, `cutoff_sweep`: the label-match curve of the exact `fast` route at every cut-off of `CUTOFF_SWEEP`
  (issue 24: the authors' relative cut-off 5e-2 keeps 11 of 360 Hessian directions on the tiny run and moves
  label match @5 from 0.55 to 0.70, so the paper's direction may depend on it). Computed here, not on the page:
  it needs the fine-tuned model's features (a forward pass through torch), which the torch-free explorer never
  loads; here the FC problem is already built and each cut-off costs one eigen-solve of the reduced Hessian and
  one (n_train, n_test) product, milliseconds on the demo's 400 x 500,
- thumbnails of every training image of the subset and every test image used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from compute import best_budget
from compute.cache import CacheWriter
from compute.data import load_dataset
from compute.images import to_png
from compute.influence import (
    FCProblem,
    QueryMatrix,
    get_method,
    label_match_curve,
    probabilities,
    top_k,
)
from compute.influence_problem import influence_problem
from compute.paths import artefact_path, job_key
from compute.presets import InfluenceSpec, Preset
from compute.records import InfluenceRecord, KeptRun, ThumbnailRecord
from compute.roles import BEST_ROLE
from compute.settings import Settings, resolve_device
from compute.stages.sources import record_roles

# Bump when a change to compute.influence changes stored results: it is part of every influence key.
CODE_VERSION = "influence-2"  # 2: the cut-off sweep in the meta
K_MAX = 20  # length of the stored label-match curve (Figure 7b: k = 1..20)
# Relative cut-offs of the sweep (fraction of the largest Hessian eigenvalue, as the authors' pinv rcond): 0 = exact
# pseudo-inverse (the null space dropped first), the paper's text's 1e-20 is the same here, up to 1e-1 (2x theirs).
CUTOFF_SWEEP = (0.0, 1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 2e-2, 5e-2, 1e-1)
SWEEP_METHOD = "fast"  # exact at every cut-off, and the cheapest
SIGN = "score = g_test^T H^+ g_train = -(paper eq. 9); higher = more helpful (removing it raises the test loss)"


@dataclass(frozen=True)
class InfluenceJob:
    """One influence result: which fine-tune, which method, which cut-off, how many test images."""

    run_key: str
    method: str = "fast"
    cutoff: float = 5e-2
    n_test: int = 500
    top_k: int = 10

    @property
    def key(self) -> str:
        # top_k is not part of the key: it only trims what is derived from the stored matrix.
        return job_key("influence", {"run_key": self.run_key, "method": self.method, "cutoff": self.cutoff,
                                     "n_test": self.n_test, "code": CODE_VERSION})


@dataclass(frozen=True)
class InfluenceOutcome:
    """Everything one job computed, before it is written."""

    job: InfluenceJob
    run: KeptRun
    matrix: np.ndarray  # (n_train, n_test) float64
    query: QueryMatrix
    train_indices: np.ndarray
    train_labels: np.ndarray
    test_indices: np.ndarray
    test_labels: np.ndarray
    test_pred: np.ndarray
    label_match: np.ndarray  # (min(K_MAX, n_train),)
    seconds: float
    meta: dict[str, Any]


class CutoffSweep(NamedTuple):
    """Label match of the exact route at each relative cut-off, and how many Hessian directions each keeps."""

    cutoffs: tuple[float, ...]
    ranks: tuple[int, ...]
    label_match: tuple[tuple[float, ...], ...]  # (cut-offs, min(K_MAX, n_train)) curves, k = 1..

    def meta(self) -> dict[str, Any]:
        return {"method": SWEEP_METHOD, "cutoffs": list(self.cutoffs), "ranks": list(self.ranks),
                "label_match": [list(c) for c in self.label_match]}


def cutoff_sweep(problem: FCProblem, z_test: torch.Tensor, y_test: torch.Tensor, cutoffs: tuple[float, ...] =
                 CUTOFF_SWEEP) -> CutoffSweep:
    """Solve `problem` by the exact `fast` route at each cut-off and score the test images: the label-match curve of
    each (issue 24, section 2)."""
    method = get_method(SWEEP_METHOD)
    train_labels, test_labels = problem.labels.cpu().numpy(), y_test.cpu().numpy()
    ranks, curves = [], []
    for cutoff in cutoffs:
        query = method.solve(problem, cutoff)
        matrix = method.matrix(problem, query, z_test, y_test).cpu().numpy()  # (n_train, n_test)
        ranks.append(int(query.rank))
        curves.append(tuple(float(v) for v in label_match_curve(matrix, train_labels, test_labels, K_MAX)))
    return CutoffSweep(tuple(float(c) for c in cutoffs), tuple(ranks), tuple(curves))


def compute_influence(kept: KeptRun, root: Path, job: InfluenceJob, device: str | torch.device | None = None,
                      data_root: str | None = None, skip_bad_images: bool = False) -> InfluenceOutcome:
    """Build the run's problem (compute.influence_problem: the same one any other library gets), solve it, and
    score the first n_test test images."""
    start = time.perf_counter()
    method = get_method(job.method)
    fc = influence_problem(kept, root, job.n_test, device, data_root, skip_bad_images)
    problem = fc.fc_problem()
    query = method.solve(problem, job.cutoff)
    matrix = method.matrix(problem, query, fc.test_features, fc.test_labels).cpu().numpy()
    test_pred = probabilities(fc.test_features.double(), problem.weight, problem.bias).argmax(1).cpu().numpy()
    y_train, y_test = fc.train_labels.numpy(), fc.test_labels.numpy()
    meta = {
        "source": kept.source, "target": kept.target, "route": query.route, "rank": query.rank,
        "eigenvalue_max": query.eigenvalue_max, "solve_seconds": query.seconds, "exact": method.exact,
        "features": int(fc.train_features.shape[1]), "bias": fc.bias is not None,
        "device": str(resolve_device(device)), "code": CODE_VERSION, "classes": list(fc.classes),
        "input_channels": fc.input_channels, "native_size": fc.native_size, "input_size": fc.input_size,
        "test_acc": float((test_pred == y_test).mean()) if len(y_test) else None, "top_k": job.top_k, "sign": SIGN,
        "cutoff_sweep": cutoff_sweep(problem, fc.test_features, fc.test_labels).meta(),
    }
    return InfluenceOutcome(job, kept, matrix, query, fc.train_indices, y_train, fc.test_indices, y_test, test_pred,
                            label_match_curve(matrix, y_train, y_test, K_MAX), time.perf_counter() - start, meta)


def _thumbnail_rows(writer: CacheWriter, target: str, split: str, indices: np.ndarray,
                    data_root: str | None = None, skip_bad_images: bool = False) -> list[ThumbnailRecord]:
    have = writer.thumbnail_indices(target, split)
    todo = [int(i) for i in indices if int(i) not in have]
    if not todo:
        return []
    data = load_dataset(target, split, data_root, skip_bad_images=skip_bad_images)
    return [ThumbnailRecord(target, split, i, int(data.labels[i]), to_png(data.images[i])) for i in todo]


def record_outcome(writer: CacheWriter, outcome: InfluenceOutcome, data_root: str | None = None,
                   skip_bad_images: bool = False) -> None:
    """Write the artefacts, then the thumbnails, then the row and top-k in one transaction (the row last, so a
    crash leaves no row pointing at missing files)."""
    root, job, key = writer.root, outcome.job, outcome.job.key
    matrix_path = artefact_path(root, "influence", key, "npy")
    np.save(matrix_path, outcome.matrix.astype(np.float32))
    query_path = artefact_path(root, "influence_query", key, "npz")
    arrays = {**outcome.query.arrays(), "train_indices": outcome.train_indices, "train_labels": outcome.train_labels}
    with open(query_path, "wb") as fh:
        np.savez(fh, **arrays)
    target = outcome.run.target
    thumbs = (_thumbnail_rows(writer, target, "train", outcome.train_indices, data_root, skip_bad_images)
              + _thumbnail_rows(writer, target, "test", outcome.test_indices, data_root, skip_bad_images))
    if thumbs:
        writer.record_thumbnails(thumbs)
    best = top_k(outcome.matrix, job.top_k)
    n_test, k = best.positions.shape
    topk = pd.DataFrame({
        "influence_key": key, "test_pos": np.repeat(np.arange(n_test), k).astype(np.int32),
        "rank": np.tile(np.arange(k), n_test).astype(np.int32),
        "train_pos": best.positions.reshape(-1).astype(np.int32), "score": best.scores.reshape(-1).astype(np.float64),
    })
    row = InfluenceRecord(
        key, job.run_key, job.method, job.cutoff, len(outcome.train_indices), len(outcome.test_indices),
        str(matrix_path.relative_to(root)), str(query_path.relative_to(root)), outcome.train_indices.tolist(),
        outcome.test_indices.tolist(), outcome.train_labels.tolist(), outcome.test_labels.tolist(),
        outcome.test_pred.tolist(), outcome.label_match.tolist(), outcome.seconds, outcome.meta,
    )
    writer.record_influence(row, topk)


def run_influence(writer: CacheWriter, kept: KeptRun, job: InfluenceJob,
                  device: str | torch.device | None = None, data_root: str | None = None,
                  skip_bad_images: bool = False) -> bool:
    """Compute and record one job unless the cache has it; returns True when it computed."""
    if writer.has_influence(job.key):
        return False
    outcome = compute_influence(kept, writer.root, job, device, data_root, skip_bad_images)
    record_outcome(writer, outcome, data_root, skip_bad_images)
    return True


def run(preset: Preset, writer: CacheWriter, settings: Settings) -> None:
    influence_stage(preset, writer, device=settings.device, progress=settings.progress, data_root=settings.data_root,
                    skip_bad_images=settings.skip_bad_images)


def influence_stage(preset: Preset, writer: CacheWriter, device: str | torch.device | None = None,
                    progress: bool = True, method: str = "fast", cutoff: float | None = None,
                    data_root: str | None = None, best: bool = True, skip_bad_images: bool = False) -> None:
    """Influence for each of `preset.influence.sources` fine-tuned on the same subset (the paper analogue vs
    natural) and, with `best`, for the budget that transferred best on that target (`compute.best_budget`),
    for every fine-tuning seed of the spec (`all_seeds`: label match over seeds has an interval); each result's
    meta records its part (`role`) and, for the best budget, why it was chosen (`role_note`)."""
    spec = preset.influence
    if spec is None:
        return
    if cutoff is not None:
        spec = replace(spec, cutoff=cutoff)
    get_method(method)  # fail fast on a typo
    record_roles(preset, writer)
    chosen = best_budget.find(writer, spec, preset.natural) if best else None
    if best and chosen is None:
        tqdm.write(f"[influence] best budget not compared: no robust-minus-natural result on {spec.target} "
                   f"blocks={spec.blocks} in the cache yet (run the finetune stage)")
    elif chosen is not None:
        tqdm.write(f"[influence] best budget {chosen.source}: {chosen.note}")
    for seed in tqdm(spec.all_seeds, desc="influence seeds", unit="seed", disable=not progress):
        _influence_subset(preset, writer, replace(spec, seed=seed, seeds=()), chosen, method, device, data_root,
                          skip_bad_images)


def _influence_subset(preset: Preset, writer: CacheWriter, spec: InfluenceSpec, chosen: best_budget.BestBudget | None,
                      method: str, device: str | torch.device | None, data_root: str | None,
                      skip_bad_images: bool = False) -> None:
    """The stage for one fine-tuning seed (`spec.seed`): natural, the analogue and the best budget, roles recorded."""
    by_source = writer.kept_by_source(spec.target, spec.n_train, spec.seed, spec.blocks)
    part = preset.roles().role_of  # the roles the sources stage records (compute.roles), from the same preset
    roles = {s: {"role": part(s)} for s in spec.sources}
    sources = list(spec.sources)
    if chosen is not None and chosen.source not in by_source:
        kept, why = best_budget.ensure_run(preset, writer, spec, chosen.source, device, data_root, skip_bad_images)
        if kept is None:
            tqdm.write(f"[influence] best budget {chosen.source} not compared on seed {spec.seed}: {why}")
            chosen = None
        else:
            by_source[chosen.source] = kept
            tqdm.write(f"[influence] best budget {chosen.source} on the influence subset (seed {spec.seed}): {why}")
    if chosen is not None:
        role = roles.get(chosen.source, {}).get("role")
        roles[chosen.source] = {"role": f"{role}, {BEST_ROLE}" if role else BEST_ROLE, "role_note": chosen.note,
                                "best_budget": chosen.meta()}
        sources += [chosen.source] if chosen.source not in sources else []
    done: dict[str, str] = {}
    for source in sources:
        kept = by_source.get(source)
        if kept is None:
            tqdm.write(f"[influence] no fine-tune of {source} on {spec.target} n={spec.n_train} seed={spec.seed} "
                       f"blocks={spec.blocks} with kept weights; run the finetune stage first")
            continue
        job = InfluenceJob(kept.key, method, spec.cutoff, spec.n_test, spec.top_k)
        if run_influence(writer, kept, job, device, data_root, skip_bad_images):
            tqdm.write(f"[influence] {source} seed {spec.seed}: {job.key} ({method}, cut-off {spec.cutoff:g})")
        done[source] = job.key
    writer.set_influence_roles([r.key for r in by_source.values()], method, spec.cutoff,
                               {key: {k: v for k, v in roles[s].items() if v is not None}
                                for s, key in done.items() if roles.get(s, {}).get("role")})
