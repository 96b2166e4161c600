"""An approximate alternative from captum: TracInCPFast on the final layer (Pruthi et al., 2020).

With the one checkpoint we keep (the fine-tuned model) and learning rate 1, TracIn's score is the plain
gradient inner product g_t^T g_j: influence with H replaced by the identity. captum's fast variant only
looks at the FC layer and ignores its bias, so we hand it the augmented features [z, 1] and a bias-free
layer [W | b], which gives the gradient over weights and bias exactly. Its sign matches ours (positive =
proponent = helpful), so the matrix, top-k and label-match curve compare directly with the exact routes.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compute.influence._fc import (
    FCProblem,
    GradientKernel,
    QueryMatrix,
    fc_params,
    probabilities,
    residuals,
    with_ones_column,
)

BATCH = 256


def identity_query(problem: FCProblem) -> QueryMatrix:
    """Q = G_train (H := I), kept as its factors r_j and z~_j: what an on-demand TracIn query needs."""
    start = time.perf_counter()
    probs = probabilities(problem.features, problem.weight, problem.bias)
    kernel = GradientKernel(residuals(probs, problem.labels), with_ones_column(problem.features, problem.bias is not None))
    return QueryMatrix(problem.weight, problem.bias, "tracincp", 0.0, "identity", 0, float("nan"),
                       time.perf_counter() - start, kernel=kernel)


def _layer(problem: FCProblem) -> nn.Linear:
    params = fc_params(problem.weight, problem.bias)  # (C, D)
    layer = nn.Linear(params.shape[1], params.shape[0], bias=False).to(params)
    with torch.no_grad():
        layer.weight.copy_(params)
    return layer


def tracincp_matrix(problem: FCProblem, test_features: torch.Tensor, test_labels: torch.Tensor) -> torch.Tensor:
    """(n_train, n_test) TracInCPFast scores from captum (one checkpoint, learning rate 1)."""
    from captum.influence import TracInCPFast

    has_bias = problem.bias is not None
    layer = _layer(problem)
    model = nn.Sequential(layer)
    train = TensorDataset(with_ones_column(problem.features, has_bias), problem.labels)
    tracin = TracInCPFast(
        model, layer, DataLoader(train, batch_size=BATCH), checkpoints=["fine-tuned"],
        checkpoints_load_func=lambda *_: 1.0, loss_fn=nn.CrossEntropyLoss(reduction="sum"),
    )
    test = with_ones_column(test_features.to(problem.features), has_bias)
    scores = tracin.influence((test, test_labels.to(problem.labels.device)))  # (n_test, n_train)
    return scores.T.to(torch.float64)
