"""The paper's route (A.9), kept as the test oracle: autograd Hessian and a dense pseudo-inverse via SVD.

H = sum over batches of five fine-tuning images of the autograd Hessian of the batch's summed cross-entropy
w.r.t. the FC parameters theta = [vec(W), b] (P = C d + C values), then H^+ from `torch.linalg.svd` keeping
singular values above `cutoff` times the largest, and never below the numerical-rank floor `rank_floor`
(eps * P, LAPACK's and `torch.linalg.matrix_rank`'s rule): H is exactly singular (the class-sum direction of
every feature, and feature directions no training point spans) and an SVD returns those null directions as
singular values of round-off size (2.5e-19 on the tiny run) instead of zeros. At cut-off 0, or the paper's
literal 1e-20, inverting them added 4-6% of noise to the scores (issue 24); `fast`/`dense` never meet them,
because their reduced basis drops the null space exactly, so with the floor the three agree at every cut-off.
Gradients come from autograd too, so nothing here uses the closed forms of the fast routes. Memory and time grow as P^2 and P^3: only for small layers
(P up to a few thousand).
"""

from __future__ import annotations

import time
import warnings

import torch
import torch.nn.functional as F

from compute.influence._fc import FCProblem, QueryMatrix

BATCH = 5  # the paper sums the Hessians of batches of five images


def _batch_loss(problem: FCProblem):
    """theta, z (b, d), y (b,) -> summed cross-entropy of the batch; theta = [vec(W), b]."""
    c, d = problem.weight.shape
    has_bias = problem.bias is not None

    def loss(theta: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = features @ theta[: c * d].view(c, d).T + (theta[c * d:] if has_bias else 0.0)
        return F.cross_entropy(logits, labels, reduction="sum")

    return loss


def _theta(problem: FCProblem) -> torch.Tensor:
    parts = [problem.weight.reshape(-1)] + ([problem.bias] if problem.bias is not None else [])
    return torch.cat(parts)


def autograd_hessian(problem: FCProblem, batch: int = BATCH) -> torch.Tensor:
    """(P, P) sum of per-batch autograd Hessians, plus the damping term.

    `torch.func.hessian` (forward-over-reverse autograd, the same Hessian as
    `torch.autograd.functional.hessian` without its per-call set-up cost) makes this the fair baseline.
    """
    theta = _theta(problem)
    hessian_fn = torch.func.hessian(_batch_loss(problem))
    hessian = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype, device=theta.device)
    with warnings.catch_warnings():  # forward-mode AD loads torch's own jit-scripted decompositions once
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=FutureWarning)
        for i in range(0, problem.features.shape[0], batch):
            hessian += hessian_fn(theta, problem.features[i:i + batch], problem.labels[i:i + batch])
    if problem.damping:
        hessian.diagonal().add_(problem.damping)
    return hessian


def autograd_gradients(problem: FCProblem, features: torch.Tensor, labels: torch.Tensor,
                       chunk: int = 256) -> torch.Tensor:
    """(n, P) per-example gradients by autograd (vmap of grad over examples), `chunk` examples at a time."""
    theta = _theta(problem)
    loss = _batch_loss(problem)
    per_example = torch.func.vmap(torch.func.grad(lambda t, z, y: loss(t, z[None], y[None])), in_dims=(None, 0, 0))
    rows = [per_example(theta, features[i:i + chunk], labels[i:i + chunk]) for i in range(0, features.shape[0], chunk)]
    return torch.cat(rows) if rows else theta.new_zeros(0, theta.numel())


def rank_floor(size: int, dtype: torch.dtype) -> float:
    """Relative singular value below which an SVD of a (size, size) matrix cannot tell a direction from a null
    one: eps * size (the SVD's backward error is about eps * ||H||, so any smaller singular value may be zero).
    float64 and P = 360 (the tiny run): 8e-14."""
    return torch.finfo(dtype).eps * size


def svd_pinv(matrix: torch.Tensor, cutoff: float, floor: bool = True) -> tuple[torch.Tensor, int, float]:
    """Moore-Penrose pseudo-inverse keeping singular values > max(cutoff, rank_floor) * max; returns (pinv, rank,
    s_max). `floor=False` keeps everything above `cutoff` alone (only to show what the floor prevents)."""
    u, s, vh = torch.linalg.svd(matrix)
    relative = max(cutoff, rank_floor(matrix.shape[0], matrix.dtype)) if floor else cutoff
    keep = s > relative * s.max()
    pinv = vh[keep].T @ torch.diag(1.0 / s[keep]) @ u[:, keep].T
    return pinv, int(keep.sum()), float(s.max())


def reference_query(problem: FCProblem, cutoff: float = 5e-2) -> QueryMatrix:
    """H^+ G_train^T by the paper's route, reshaped to the shared (n, C, D) layout."""
    start = time.perf_counter()
    pinv, rank, s_max = svd_pinv(autograd_hessian(problem), cutoff)
    grads = autograd_gradients(problem, problem.features, problem.labels)  # (n, P)
    flat = grads @ pinv  # (n, P): rows are (H^+ g_j)^T, H^+ symmetric
    n, (c, d) = flat.shape[0], problem.weight.shape
    matrix = flat[:, : c * d].view(n, c, d)
    if problem.bias is not None:
        matrix = torch.cat([matrix, flat[:, c * d:, None]], 2)
    return QueryMatrix(problem.weight, problem.bias, "reference", cutoff, "autograd-svd", rank, s_max,
                       time.perf_counter() - start, matrix=matrix)


def influence_reference(problem: FCProblem, test_features: torch.Tensor, test_labels: torch.Tensor,
                        cutoff: float = 5e-2) -> torch.Tensor:
    """(n_train, n_test) scores g_t^T H^+ g_j, everything by autograd + SVD (the oracle for the fast routes)."""
    pinv, _, _ = svd_pinv(autograd_hessian(problem), cutoff)
    test_features = test_features.to(problem.features)
    train_grads = autograd_gradients(problem, problem.features, problem.labels)  # (n, P)
    test_grads = autograd_gradients(problem, test_features, test_labels.to(problem.labels.device))  # (m, P)
    return train_grads @ pinv @ test_grads.T
