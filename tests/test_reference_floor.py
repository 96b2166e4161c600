"""`reference` at cut-off 0 (or the paper's 1e-20) is exact: its numerical-rank floor drops the Hessian's null space."""

from __future__ import annotations

import pytest
import torch

from compute.influence import influence_fast, influence_scores
from compute.influence.fast import influence_dense
from compute.influence.reference import (
    autograd_gradients,
    autograd_hessian,
    influence_reference,
    rank_floor,
    svd_pinv,
)
from tests.test_influence import random_problem, rel_err


@pytest.mark.parametrize("cutoff", [0.0, 1e-20])
@pytest.mark.parametrize(("n", "d", "classes"), [(9, 20, 3), (40, 6, 10)])
def test_reference_equals_fast_and_dense_at_cutoff_zero_on_a_singular_hessian(cutoff: float, n: int, d: int,
                                                                               classes: int) -> None:
    """Both problems have a singular H (P = C (d + 1)): the class-sum direction of every feature, and with 9 points
    in 21 dimensions the directions no training point spans. Tolerance: in float64 a pseudo-inverse restricted to
    the kept spectrum is accurate to about eps * kappa (kappa = s_max / smallest kept s: 4.5e5 and 3.3e2 here, so
    1e-10 and 7e-14; measured 3e-11 and 1e-14); 100 * eps * kappa leaves room for the gradients' rounding. Without
    the floor the round-off directions (s of 1e-16 * s_max) are inverted too: 54% and 2% off."""
    problem, z_test, y_test = random_problem(n, d, classes, seed=1)
    hessian = autograd_hessian(problem)
    s = torch.linalg.svdvals(hessian)
    assert (s < 1e-12 * s.max()).any(), "the problem must have a singular Hessian"
    ref = influence_reference(problem, z_test, y_test, cutoff=cutoff)
    fast_q, dense_q = influence_fast(problem, cutoff=cutoff), influence_dense(problem, cutoff=cutoff)
    _, rank, s_max = svd_pinv(hessian, cutoff)
    kept = s[:rank]
    kappa = float(s_max / kept.min())
    tolerance = 100 * torch.finfo(torch.float64).eps * kappa
    for exact in (fast_q, dense_q):
        assert exact.rank == rank  # the same directions kept
        assert rel_err(ref, influence_scores(exact, z_test, y_test)) < tolerance
    # without the floor: the null space's round-off singular values are inverted as if they were signal
    pinv, raw_rank, _ = svd_pinv(hessian, cutoff, floor=False)
    train = autograd_gradients(problem, problem.features, problem.labels)
    test = autograd_gradients(problem, z_test.to(problem.features), y_test)
    assert raw_rank > rank
    assert rel_err(train @ pinv @ test.T, influence_scores(fast_q, z_test, y_test)) > 1e-3


def test_the_floor_is_lapacks_numerical_rank_rule() -> None:
    """eps * size: what torch.linalg.matrix_rank uses by default (rtol = eps * max(m, n)), so 'rank' here and
    there agree on a singular Hessian."""
    problem, _, _ = random_problem(9, 20, 3, seed=1)
    hessian = autograd_hessian(problem)
    assert rank_floor(hessian.shape[0], hessian.dtype) == torch.finfo(torch.float64).eps * hessian.shape[0]
    assert svd_pinv(hessian, 0.0)[1] == int(torch.linalg.matrix_rank(hessian))
    assert svd_pinv(hessian, 0.5)[1] < svd_pinv(hessian, 0.0)[1]  # a cut-off above the floor still rules
