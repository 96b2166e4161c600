"""The fast exact route: closed-form Hessian in the reduced basis and a symmetric eigendecomposition.

Same numbers as the paper's route (autograd Hessian + SVD pseudo-inverse; tests hold it to 1e-6) because
for the symmetric positive semi-definite H the singular values are its eigenvalues, and the reduced basis
(`_structure`) only drops directions where H is exactly zero. It replaces P autograd backward passes per
batch of five by (C-1) GEMMs and a P^3 SVD by an N^3 `eigh` with N = (C-1) * rank(features) < P.
Beyond `DENSE_LIMIT` reduced dimensions a dense `eigh` costs too much (memory N^2, time N^3), so the
route hands over to the iterative one (`compute.influence.iterative`) and says so in `QueryMatrix.route`.
"""

from __future__ import annotations

import time

import torch

from compute.influence._fc import FCProblem, QueryMatrix
from compute.influence._structure import dense_hessian, query_rows, reduce

DENSE_LIMIT = 12_000  # N above which a dense eigh (N^2 float64, N^3 flops) is handed to the iterative route


def influence_fast(problem: FCProblem, cutoff: float = 5e-2, dense_limit: int = DENSE_LIMIT) -> QueryMatrix:
    """H^+ G_train^T (the query matrix, (n, C, D)) with eigenvalues <= cutoff * max dropped."""
    start = time.perf_counter()
    reduced = reduce(problem)
    if reduced.size > dense_limit:
        from compute.influence.iterative import influence_iterative

        return influence_iterative(problem, cutoff, method="fast")
    hessian = dense_hessian(reduced)
    eigvals, eigvecs = torch.linalg.eigh(hessian)  # ascending
    lam_max = float(eigvals[-1]) if eigvals.numel() else 0.0
    keep = eigvals > cutoff * lam_max
    rows, factors = query_rows(reduced, eigvals[keep], eigvecs[:, keep])
    return QueryMatrix(reduced.lift(rows), problem.weight, problem.bias, "fast", cutoff, "dense-eigh",
                       int(keep.sum()), lam_max, time.perf_counter() - start, factors)
