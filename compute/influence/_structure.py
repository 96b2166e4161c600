"""The structure the exact fast routes exploit (closed form of the softmax cross-entropy Hessian of a linear layer).

Per example, with p = softmax(W z + b) and z~ = [z, 1]:
    gradient  g_i = r_i (x) z~_i                      r_i = p_i - e_y          (C,) (x) (D,)
    Hessian   H_i = (diag(p_i) - p_i p_i^T) (x) z~_i z~_i^T
and H = sum_i H_i (+ damping * I). diag(p) - p p^T kills the all-ones vector and every r_i sums to zero, so
with U (C, C-1) an orthonormal basis of 1^perp and V (D, r) one of the training features' span, everything
lives in the reduced space R^(C-1) (x) R^r:
    A~_i = U^T (diag(p_i) - p_i p_i^T) U,   z^_i = V^T z~_i,   H~ = sum_i A~_i (x) z^_i z^_i^T  (N = (C-1) r)
and g_t^T H^+ g_j = (U^T r_t (x) V^T z~_t)^T H~^+ (U^T r_j (x) z^_j) exactly (the parts dropped meet only
zero rows of H and H^+; with damping the dropped blocks are lambda * I and still meet zero gradient parts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from compute.influence._fc import (
    MATRIX_LIMIT,
    EigenFactors,
    FCProblem,
    QueryMatrix,
    class_basis,
    feature_basis,
    probabilities,
    project,
    residuals,
    with_ones_column,
)


@dataclass(frozen=True)
class Reduced:
    """The training problem in the reduced basis (see module docstring); all float64 on one device."""

    class_basis: torch.Tensor  # U (C, C-1)
    feature_basis: torch.Tensor | None  # V (D, r), None = identity (r = D)
    features: torch.Tensor  # z^ (n, r)
    probs: torch.Tensor  # p (n, C)
    residuals: torch.Tensor  # U^T r (n, C-1)
    damping: float

    @property
    def size(self) -> int:
        """N = (C-1) r, the side of the reduced Hessian."""
        return self.class_basis.shape[1] * self.features.shape[1]


def reduce(problem: FCProblem) -> Reduced:
    z = with_ones_column(problem.features, problem.bias is not None)  # (n, D)
    probs = probabilities(problem.features, problem.weight, problem.bias)
    basis_c = class_basis(problem.num_classes, z.device)
    basis_f = feature_basis(z) if z.shape[0] else None
    z_hat = z if basis_f is None else z @ basis_f
    return Reduced(basis_c, basis_f, z_hat, probs, residuals(probs, problem.labels) @ basis_c, problem.damping)


def class_hessians(reduced: Reduced) -> torch.Tensor:
    """A~_i = U^T (diag(p_i) - p_i p_i^T) U for every example: (n, C-1, C-1)."""
    u, p = reduced.class_basis, reduced.probs
    pu = p @ u  # (n, C-1)
    return torch.einsum("ca,ncb->nab", u, p[:, :, None] * u[None]) - pu[:, :, None] * pu[:, None, :]


def dense_hessian(reduced: Reduced) -> torch.Tensor:
    """H~ (N, N) by one GEMM per class row, filling the upper block triangle and mirroring it.

    H~[a, k, b, l] = sum_i A~_i[a, b] z^_ik z^_il: for row a, Z^T @ (Z scaled by A~[:, a, b]) for b >= a.
    Cost (C-1) C / 2 * 2 n r^2 flops instead of autograd's P backward passes per batch.
    """
    a_cls = class_hessians(reduced)  # (n, C-1, C-1)
    z = reduced.features  # (n, r)
    n, r = z.shape
    m = a_cls.shape[1]
    hessian = z.new_zeros(m, r, m, r)
    for a in range(m):
        scaled = z[:, None, :] * a_cls[:, a, a:, None]  # (n, m - a, r)
        block = (z.T @ scaled.reshape(n, -1)).view(r, m - a, r)  # block[k, b, l] = H~[a, k, a + b, l]
        hessian[a, :, a:, :] = block
        hessian[a + 1:, :, a, :] = block[:, 1:, :].permute(1, 2, 0)
    hessian = hessian.view(m * r, m * r)
    if reduced.damping:
        hessian.diagonal().add_(reduced.damping)
    return hessian


def hessian_matmat(reduced: Reduced, x: torch.Tensor) -> torch.Tensor:
    """H~ X without forming H~: (N, k) -> (N, k) in O(n C r k) flops, two GEMMs that read Z^ once each.

    For each column X = (C-1, r): M = Z^ (U X)^T (n, C), apply diag(p_i) - p_i p_i^T row-wise, then
    back: U^T M'^T Z^.
    """
    u, p, z = reduced.class_basis, reduced.probs, reduced.features
    c, m = u.shape
    r, k = z.shape[1], x.shape[1]
    full = (u @ x.T.reshape(k, m, r)).reshape(k * c, r)  # (k C, r)
    mm = (z @ full.T).view(-1, k, c)  # (n, k, C)
    pm = p[:, None, :] * mm
    mm = pm - p[:, None, :] * pm.sum(2, keepdim=True)
    back = (mm.reshape(-1, k * c).T @ z).view(k, c, r)  # (k, C, r)
    out = (u.T @ back).reshape(k, m * r).T  # (N, k)
    return out + reduced.damping * x if reduced.damping else out


def eigen_query(problem: FCProblem, reduced: Reduced, eigvals: torch.Tensor, eigvecs: torch.Tensor,
                lam_max: float, method: str, cutoff: float, route: str, start: float) -> QueryMatrix:
    """The query from the kept eigenpairs: factors E, G~ E diag(1/lambda), and the dense (n, C, D) matrix
    H^+ g_j = lift(E diag(1/lambda) E^T g~_j) when it is small enough to keep (MATRIX_LIMIT)."""
    coeff = project(reduced.features, reduced.residuals, eigvecs) / eigvals  # (n, m)
    factors = EigenFactors(reduced.class_basis, reduced.feature_basis, eigvecs, coeff)
    n, c = problem.features.shape[0], problem.num_classes
    matrix = factors.dense() if n * c * problem.dim <= MATRIX_LIMIT else None
    return QueryMatrix(problem.weight, problem.bias, method, cutoff, route, int(eigvals.numel()), lam_max,
                       time.perf_counter() - start, matrix, factors)
