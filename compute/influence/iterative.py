"""The iterative exact route for layers too large for a dense eigendecomposition (e.g. 100 classes x 2048).

H~ is never formed: ARPACK's Lanczos (`scipy.sparse.linalg.eigsh`) sees it only through the structured
product `hessian_matmat` (O(n C r) per vector). The truncated pseudo-inverse needs exactly the eigenpairs
above cutoff * lambda_max, so we ask for the top k, doubling k until the smallest one found falls below
the threshold. Exact up to the solver's tolerance for the truncated pseudo-inverse; the cost grows with the
number of kept eigenpairs, so it suits the authors' relative cut-off (5e-2), not the paper's 1e-20 (which
keeps nearly every direction: use the dense route for that).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

from compute.influence._fc import FCProblem, QueryMatrix
from compute.influence._structure import Reduced, dense_hessian, eigen_query, hessian_matmat, reduce

DENSE_LIMIT = 12_000  # N above which no route forms the dense N x N Hessian (2.7 GB at N = 18,441)

TOL = 1e-12  # ARPACK relative accuracy of the Ritz values
FIRST_K = 16  # at least this many eigenpairs asked for first; doubled until the cut-off is crossed


def _operator(reduced: Reduced) -> LinearOperator:
    device = reduced.features.device

    def matmat(x: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(x).reshape(reduced.size, -1), dtype=torch.float64, device=device)
        return hessian_matmat(reduced, x).cpu().numpy()

    return LinearOperator((reduced.size, reduced.size), matvec=matmat, matmat=matmat, dtype=np.float64)


class Spectrum(NamedTuple):
    values: torch.Tensor  # (m,) eigenvalues above the cut-off
    vectors: torch.Tensor  # (N, m)
    lambda_max: float
    route: str  # 'iterative-eigsh', or 'dense-eigh' when the cut-off kept too much for Lanczos to win


def top_eigenpairs(reduced: Reduced, cutoff: float, first_k: int = FIRST_K, tol: float = TOL) -> Spectrum:
    """All eigenpairs of H~ above cutoff * lambda_max."""
    n_dim, device = reduced.size, reduced.features.device
    op = _operator(reduced)
    v0 = np.random.default_rng(0).standard_normal(n_dim)
    # About one dominant direction per class pair stands above a relative cut-off, so ask for 2 (C-1) at once
    # rather than discovering them by doubling (each doubling restarts Lanczos).
    k, route = min(max(first_k, 2 * reduced.class_basis.shape[1]), n_dim - 1), "iterative-eigsh"
    while True:
        if k >= n_dim // 2 and n_dim <= DENSE_LIMIT:  # Lanczos for half the spectrum costs more than a dense eigh
            vals, vecs = torch.linalg.eigh(dense_hessian(reduced))
            route = "dense-eigh"
            break
        vals_np, vecs_np = eigsh(op, k=k, which="LA", tol=tol, v0=v0)
        vals, vecs = torch.as_tensor(vals_np, device=device), torch.as_tensor(vecs_np, device=device)
        if float(vals.min()) <= cutoff * float(vals.max()) or k == n_dim - 1:
            break
        k = min(2 * k, n_dim - 1)
    lam_max = float(vals.max())
    keep = vals > cutoff * lam_max
    return Spectrum(vals[keep], vecs[:, keep], lam_max, route)


def influence_iterative(problem: FCProblem, cutoff: float = 5e-2, first_k: int = FIRST_K,
                        method: str = "iterative") -> QueryMatrix:
    """H^+ G_train^T from the eigenpairs above the cut-off, found by Lanczos on Hessian-vector products."""
    start = time.perf_counter()
    reduced = reduce(problem)
    spectrum = top_eigenpairs(reduced, cutoff, first_k)
    return eigen_query(problem, reduced, spectrum.values, spectrum.vectors, spectrum.lambda_max, method, cutoff,
                       spectrum.route, start)
