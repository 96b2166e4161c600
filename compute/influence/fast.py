"""The fast exact route: closed-form Hessian in the reduced basis and a symmetric eigendecomposition.

Same numbers as the paper's route (autograd Hessian + SVD pseudo-inverse; tests hold it to 1e-6) because
for the symmetric positive semi-definite H the singular values are its eigenvalues, and the reduced basis
(`_structure`) only drops directions where H is exactly zero. It replaces P autograd backward passes per
batch of five by (C-1) GEMMs and a P^3 SVD by an N^3 `eigh` with N = (C-1) * rank(features) < P.
The truncated pseudo-inverse needs only the eigenpairs above cutoff * lambda_max, and with the authors'
relative cut-off (5e-2) those are few (tens out of thousands): from `LANCZOS_FROM` reduced dimensions `fast`
finds them by Lanczos on structured Hessian-vector products (`compute.influence.iterative`, which falls back
to the dense eigh when the cut-off keeps a large share of the spectrum); beyond `DENSE_LIMIT` a dense eigh
(memory N^2, time N^3) is never tried. `QueryMatrix.route` says which route ran; `dense` forces the eigh.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from compute.influence._fc import FCProblem, QueryMatrix
from compute.influence._structure import dense_hessian, eigen_query, reduce
from compute.influence.iterative import DENSE_LIMIT, influence_iterative

LANCZOS_FROM = 1_500  # N from which Lanczos is tried first: a relative cut-off keeps few eigenpairs
LANCZOS_CUTOFF = 1e-6  # below this cut-off nearly every eigenpair is kept, and Lanczos cannot win


def influence_dense(problem: FCProblem, cutoff: float = 5e-2) -> QueryMatrix:
    """H^+ G_train^T (the query matrix, (n, C, D)) from a dense eigh of the reduced Hessian."""
    start = time.perf_counter()
    reduced = reduce(problem)
    eigvals, eigvecs = torch.linalg.eigh(dense_hessian(reduced))  # ascending
    lam_max = float(eigvals[-1]) if eigvals.numel() else 0.0
    keep = eigvals > cutoff * lam_max
    return eigen_query(problem, reduced, eigvals[keep], eigvecs[:, keep], lam_max, "dense", cutoff, "dense-eigh",
                       start)


def influence_fast(problem: FCProblem, cutoff: float = 5e-2, dense_limit: int = DENSE_LIMIT,
                   lanczos_from: int = LANCZOS_FROM) -> QueryMatrix:
    """H^+ G_train^T (the query matrix, (n, C, D)) with eigenvalues <= cutoff * max dropped, by the cheaper
    exact route: dense eigh for small reduced problems, Lanczos for large ones (see module docstring)."""
    size = reduced_size(problem)
    if size > dense_limit or (size >= lanczos_from and cutoff >= LANCZOS_CUTOFF):
        return influence_iterative(problem, cutoff, method="fast")
    return replace(influence_dense(problem, cutoff), method="fast")


def reduced_size(problem: FCProblem) -> int:
    """N = (C-1) r without building the reduced problem (r = min(n, D), the span's size at most)."""
    return (problem.num_classes - 1) * min(problem.features.shape[0], problem.dim)
