"""captum's ArnoldiInfluenceFunction as an influence method: our query matrix reads captum's projections right,
and with the exact routes' cut-off it ranks training images as the exact method does."""

from __future__ import annotations

import numpy as np
import torch

from app.influence_compare import spearman_per_test
from compute.influence import FCProblem, get_method, influence_fast, influence_scores
from compute.influence.arnoldi import arnoldi_captum_matrix, arnoldi_query
from compute.influence.methods import method_names


def _problem(n: int = 80, d: int = 12, classes: int = 4, seed: int = 0) -> tuple[FCProblem, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n + 30,), generator=g)
    z = (torch.randn(classes, d, generator=g)[y] + 0.7 * torch.randn(n + 30, d, generator=g)).relu()
    weight, bias = 0.5 * torch.randn(classes, d, generator=g), 0.1 * torch.randn(classes, generator=g)
    return FCProblem.create(z[:n], y[:n], weight, bias), z[n:], y[n:]


def test_arnoldi_is_registered_and_approximate() -> None:
    assert "arnoldi" in method_names() and get_method("arnoldi").exact is False


def test_query_matrix_matches_captums_own_influence_without_cutoff() -> None:
    problem, z_test, y_test = _problem()
    ours = influence_scores(arnoldi_query(problem, 0.0), z_test, y_test)
    theirs = arnoldi_captum_matrix(problem, z_test, y_test)
    assert ours.shape == theirs.shape == (80, 30)
    assert float((ours - theirs).abs().max() / theirs.abs().max()) < 1e-4


def test_with_the_cutoff_it_ranks_as_the_exact_route() -> None:
    problem, z_test, y_test = _problem()
    exact_query = influence_fast(problem, 0.05)
    query = arnoldi_query(problem, 0.05)
    assert query.rank == exact_query.rank
    rho = spearman_per_test(influence_scores(query, z_test, y_test).numpy(),
                            influence_scores(exact_query, z_test, y_test).numpy())
    assert np.nanmean(rho) > 0.99
