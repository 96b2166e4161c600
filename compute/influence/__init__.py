"""Influence of fine-tuning images on test predictions through the final FC layer (the paper's Section 6, A.9).

Influence of training image j on test image t (Koh & Liang, 2017) with gradients g and Hessian H of the
cross-entropy w.r.t. the FC weights and bias at the fine-tuned parameters, H summed over the fine-tuning
images (as the paper builds it) and pseudo-inverted with a relative cut-off (eigen/singular values at or
below cutoff * max dropped; default 5e-2 as the authors' script, the paper's text says 1e-20).

Sign convention: every stored matrix, top-k, curve and query score is
    score[j, t] = g_t^T H^+ g_j  = -(the paper's eq. 9, -g_t^T H^-1 g_j)
i.e. the first-order increase of test t's loss when training image j is removed (Koh & Liang's released
code: `predicted_loss_diffs`); upweighting j by epsilon changes the loss by -epsilon * score. Higher =
more helpful, so "most influential" = highest score; this is the ordering under which the paper's
Figure 7a shows dark diagonal blocks and 78.6% of robust top-1 images share the test label (and it is
captum's sign: positive = proponent).

Implementations, from reference to fast (registry: `METHODS`, `rtx influence --method NAME`):
- `reference`  (reference.py) the paper's route: autograd Hessian over batches of five + SVD pseudo-inverse.
               The test oracle; memory P^2 and time P^3 for P = C (d + 1) parameters.
- `dense`      (fast.py) closed-form Hessian (diag(p) - p p^T) (x) z~ z~^T built by GEMMs in the basis
               that drops its exact null space, then `torch.linalg.eigh`. Same numbers (tests: 1e-6).
- `iterative`  (iterative.py) Lanczos (ARPACK) for the eigenpairs above the cut-off, on structured
               Hessian-vector products that never form H (100 classes x 2048 features fit); exact up to
               the solver's tolerance.
- `fast`       (fast.py) the default: `dense` for small reduced problems, `iterative` for large ones.
- `tracincp`   (tracin.py) captum's TracInCPFast on the final layer: H replaced by I (approximate).
Derived results (derived.py) come from the stored matrix only; `query_scores` answers a new image with one
forward pass and one product with a stored query matrix. This package reads and writes no cache: the stage
that does is compute.stages.influence, compute.influence_problem builds a recorded run's `FCProblem` (for the
stage and for other libraries), and compute.influence_index serves stored results to queries.
"""

from compute.influence._fc import (
    FCProblem,
    QueryMatrix,
    influence_scores,
    probabilities,
    query_scores,
    train_gradients,
)
from compute.influence.derived import SortedMatrix, TopK, label_match_curve, sorted_standardized, top_k
from compute.influence.fast import influence_dense, influence_fast
from compute.influence.features import penultimate
from compute.influence.iterative import influence_iterative
from compute.influence.methods import METHODS, InfluenceMethod, get_method, method_names
from compute.influence.reference import influence_reference, reference_query
from compute.influence.tracin import tracincp_matrix

__all__ = [
    "METHODS",
    "FCProblem",
    "InfluenceMethod",
    "QueryMatrix",
    "SortedMatrix",
    "TopK",
    "get_method",
    "influence_dense",
    "influence_fast",
    "influence_iterative",
    "influence_reference",
    "influence_scores",
    "label_match_curve",
    "method_names",
    "penultimate",
    "probabilities",
    "query_scores",
    "reference_query",
    "sorted_standardized",
    "top_k",
    "tracincp_matrix",
    "train_gradients",
]
