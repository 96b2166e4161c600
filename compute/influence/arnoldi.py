"""An approximate baseline from captum: ArnoldiInfluenceFunction on the final layer (Schioppa et al., 2022).

Arnoldi iteration on Hessian-vector products of the summed cross-entropy (the H of the exact routes) finds its
top `PROJECTION_DIM` eigenpairs (l_i, v_i); captum keeps R = [v_i / sqrt(l_i)] and scores g_t^T R^T R g_j, i.e.
H^+ restricted to the top eigen-directions. Of those, `arnoldi_query` keeps the ones above the exact routes'
cut-off (l_i > cutoff * l_max): with captum's fixed rank 50 the small eigenvalues dominate the scores (1 / l)
and the ranking barely agrees with the exact one (Spearman 0.24 on the demo's subset, where the cut-off keeps
19 directions), with the cut-off it is the exact result up to the Arnoldi tolerance (bench/influence.py). As with TracIn, captum gets a bias-free layer
[W | b] on augmented features [z, 1], so its one parameter tensor is the FC's weight and bias; the query matrix
row j = R^T R g_j is formed from captum's R, so stored matrices, top-k and on-demand queries agree.
Its sign matches ours (g_t^T H^-1 g_j, positive = helpful).
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compute.influence._fc import DTYPE, FCProblem, QueryMatrix, fc_params, train_gradients, with_ones_column

PROJECTION_DIM = 50  # captum's default rank of the inverse-Hessian approximation
ARNOLDI_DIM = 200  # captum's default Krylov dimension
SEED = 0
BATCH = 512


def _captum(problem: FCProblem, projection_dim: int, arnoldi_dim: int):
    """captum's ArnoldiInfluenceFunction over the bias-free layer [W | b] and the augmented training features."""
    # captum 0.9 does not export it from captum.influence (its own tests import it from here)
    from captum.influence._core.arnoldi_influence_function import ArnoldiInfluenceFunction

    params = fc_params(problem.weight, problem.bias).float()  # (C, D)
    layer = nn.Linear(params.shape[1], params.shape[0], bias=False).to(params.device)
    with torch.no_grad():
        layer.weight.copy_(params)
    train = TensorDataset(with_ones_column(problem.features, problem.bias is not None).float(), problem.labels)
    torch.manual_seed(SEED)  # captum seeds the global generator itself too; set here so the call is reproducible
    return ArnoldiInfluenceFunction(
        nn.Sequential(layer), DataLoader(train, batch_size=BATCH), checkpoint="fine-tuned",
        checkpoints_load_func=lambda *_: 1.0, loss_fn=nn.CrossEntropyLoss(reduction="none"), batch_size=BATCH,
        projection_dim=min(projection_dim, problem.num_classes * problem.dim),
        arnoldi_dim=min(arnoldi_dim, problem.num_classes * problem.dim), seed=SEED, projection_on_cpu=True,
    )


def arnoldi_query(problem: FCProblem, cutoff: float, projection_dim: int = PROJECTION_DIM,
                  arnoldi_dim: int = ARNOLDI_DIM) -> QueryMatrix:
    """Q[j] = R^T R g_j (n, C, D) from captum's projections R (p, C, D)."""
    start = time.perf_counter()
    influence = _captum(problem, projection_dim, arnoldi_dim)
    r = torch.stack([p[0] for p in influence.R]).to(problem.features.device, DTYPE)  # (p, C, D)
    eigenvalues = r.flatten(1).norm(dim=1) ** -2  # |v_i / sqrt(l_i)| = l_i ** -0.5
    r = r[eigenvalues > cutoff * eigenvalues.max()]  # the exact routes' cut-off on the eigenvalues found
    grads = train_gradients(problem)  # (n, C, D)
    coords = torch.einsum("pcd,ncd->np", r, grads)  # (n, p): R g_j
    matrix = torch.einsum("np,pcd->ncd", coords, r)  # (n, C, D)
    eigenvalue_max = float(eigenvalues.max()) if len(eigenvalues) else float("nan")
    return QueryMatrix(problem.weight, problem.bias, "arnoldi", cutoff, "captum-arnoldi", int(r.shape[0]),
                       eigenvalue_max, time.perf_counter() - start, matrix=matrix)


def arnoldi_captum_matrix(problem: FCProblem, test_features: torch.Tensor, test_labels: torch.Tensor,
                          projection_dim: int = PROJECTION_DIM, arnoldi_dim: int = ARNOLDI_DIM) -> torch.Tensor:
    """(n_train, n_test) scores from captum's own `influence()`, all `projection_dim` directions (no cut-off):
    the check that `arnoldi_query` reads R right (equal to it with cutoff 0)."""
    influence = _captum(problem, projection_dim, arnoldi_dim)
    test = with_ones_column(test_features.to(problem.features), problem.bias is not None).float()
    scores = influence.influence((test, test_labels.to(problem.labels.device)))  # (n_test, n_train)
    return scores.T.to(DTYPE)


__all__ = ["ARNOLDI_DIM", "PROJECTION_DIM", "arnoldi_captum_matrix", "arnoldi_query"]
