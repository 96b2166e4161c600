"""The registry of influence methods: every route the user can pick with `rtx influence --method`.

Each method turns an `FCProblem` into a `QueryMatrix` (what an on-demand query needs) and may compute the
batch train x test matrix its own way (captum's TracIn does); by default the matrix is `influence_scores`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from compute.errors import lookup
from compute.influence._fc import FCProblem, QueryMatrix, influence_scores
from compute.influence.arnoldi import arnoldi_query
from compute.influence.fast import influence_dense, influence_fast
from compute.influence.iterative import influence_iterative
from compute.influence.reference import reference_query
from compute.influence.tracin import identity_query, tracincp_matrix

Solver = Callable[[FCProblem, float], QueryMatrix]
BatchMatrix = Callable[[FCProblem, QueryMatrix, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class InfluenceMethod:
    name: str
    exact: bool  # True: the paper's -g_t H^+ g_j up to round-off / solver tolerance
    summary: str
    solve: Solver
    batch_matrix: BatchMatrix | None = None  # None: influence_scores(query, test features, test labels)

    def matrix(self, problem: FCProblem, query: QueryMatrix, test_features: torch.Tensor,
               test_labels: torch.Tensor) -> torch.Tensor:
        """(n_train, n_test) float64 scores."""
        if self.batch_matrix is None:
            return influence_scores(query, test_features, test_labels)
        return self.batch_matrix(problem, query, test_features, test_labels)


METHODS: dict[str, InfluenceMethod] = {}


def register(method: InfluenceMethod) -> InfluenceMethod:
    METHODS[method.name] = method
    return method


register(InfluenceMethod("reference", True, "the paper's route: autograd Hessian (batches of 5) + SVD pseudo-inverse; "
                         "small layers only", reference_query))
register(InfluenceMethod("fast", True, "closed-form Hessian in the reduced basis: dense eigh for small layers, "
                         "Lanczos (as 'iterative') for large ones", influence_fast))
register(InfluenceMethod("dense", True, "closed-form Hessian in the reduced basis + dense symmetric eigh, always",
                         influence_dense))
register(InfluenceMethod("iterative", True, "Lanczos (ARPACK) on structured Hessian-vector products: eigenpairs above "
                         "the cut-off, never forms H", influence_iterative))
register(InfluenceMethod("arnoldi", False, "captum ArnoldiInfluenceFunction on the FC layer: its top 50 Hessian "
                         "eigenpairs by Arnoldi iteration, those above the cut-off kept", arnoldi_query))
register(InfluenceMethod("tracincp", False, "captum TracInCPFast, final checkpoint, lr 1: g_t . g_j (H replaced by I)",
                         lambda problem, cutoff: identity_query(problem),
                         lambda problem, query, z, y: tracincp_matrix(problem, z, y)))


def method_names() -> list[str]:
    return sorted(METHODS)


def get_method(name: str) -> InfluenceMethod:
    return lookup("influence method", METHODS, name)
