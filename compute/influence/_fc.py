"""The final-layer problem every influence route shares: features, labels, FC parameters, gradients.

Layout: the FC parameters are one (C, D) array `[W | b]` (D = d + 1 with a bias, d without). The gradient of
the cross-entropy of an example with features z and label y is the outer product g = r z~^T with
r = softmax(W z + b) - e_y (C,) and z~ = [z, 1] (D,), so a gradient is never stored as a P = C * D vector
unless a route needs it. A query matrix Q holds H^+ g_j for each training point j as a (C, D) slice,
so the score of a test point t is <g_t, Q_j> = r_t^T Q_j z~_t.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compute.errors import RtxError

DTYPE = torch.float64  # every route computes in float64; stored artefacts are float32


@dataclass(frozen=True)
class FCProblem:
    """The FC layer at the fine-tuned parameters and the points it was fine-tuned on, in float64.

    `damping` adds lambda * I to H (an L2 term lambda / 2 |theta|^2 in the objective); the paper uses none.
    """

    features: torch.Tensor  # (n, d) penultimate features of the fine-tuning images
    labels: torch.Tensor  # (n,) int64 class indices
    weight: torch.Tensor  # (C, d)
    bias: torch.Tensor | None  # (C,), or None for a bias-free layer
    damping: float = 0.0

    @classmethod
    def create(cls, features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor | None = None, damping: float = 0.0,
               device: str | torch.device | None = None) -> FCProblem:
        """Validate shapes and move everything to float64 on `device` (default: the features' device)."""
        device = torch.device(device) if device is not None else features.device
        features, weight = torch.as_tensor(features), torch.as_tensor(weight)
        labels = torch.as_tensor(labels)
        if features.ndim != 2 or weight.ndim != 2 or features.shape[1] != weight.shape[1]:
            raise RtxError(f"features {tuple(features.shape)} and FC weight {tuple(weight.shape)} do not match: "
                           "need (n, d) and (C, d)")
        if labels.shape != (features.shape[0],):
            raise RtxError(f"need one label per training point: {tuple(labels.shape)} vs {features.shape[0]} points")
        if weight.shape[0] < 2:
            raise RtxError("influence needs at least 2 classes")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= weight.shape[0]):
            raise RtxError(f"labels must lie in 0..{weight.shape[0] - 1}")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise RtxError(f"FC bias {tuple(bias.shape)} does not match {weight.shape[0]} classes")
        if damping < 0:
            raise RtxError(f"damping must be >= 0, got {damping}")
        as64 = lambda t: torch.as_tensor(t).detach().to(device=device, dtype=DTYPE)  # noqa: E731
        return cls(as64(features), labels.detach().to(device=device, dtype=torch.long), as64(weight),
                   None if bias is None else as64(bias), float(damping))

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def dim(self) -> int:
        """D: parameters per class (features, plus one for the bias)."""
        return int(self.weight.shape[1]) + (self.bias is not None)

    @property
    def params(self) -> torch.Tensor:
        """[W | b] as one (C, D) array."""
        return fc_params(self.weight, self.bias)


@dataclass(frozen=True)
class EigenFactors:
    """H~^+ = E diag(1/lambda) E^T in the reduced basis (compute.influence._structure), kept by the eigen routes.

    With m kept eigenpairs a test point costs r (C-1) m + n m flops instead of the n C D of the query matrix
    (190x fewer at the paper's size with the 5e-2 cut-off), so batch matrices use these when cheaper.
    """

    class_basis: torch.Tensor  # U (C, C-1)
    feature_basis: torch.Tensor | None  # V (D, r), None = identity
    vectors: torch.Tensor  # E (N, m), N = (C-1) r
    train_coeff: torch.Tensor  # (n, m) = G~_train E diag(1/lambda)

    def flops_per_test(self) -> int:
        """Multiply-adds per test point: V^T z~, E^T (r (x) z^), and the (n, m) product."""
        basis = 0 if self.feature_basis is None else self.feature_basis.numel()
        return basis + self.vectors.numel() + self.train_coeff.numel()

    def project(self, z_aug: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """E^T g~ for test gradients g = r (x) z~: (b, D), (b, C) -> (b, m), never forming g."""
        u, e = self.class_basis, self.vectors
        a, m = u.shape[1], e.shape[1]
        z_hat = z_aug if self.feature_basis is None else z_aug @ self.feature_basis  # (b, r)
        width = z_hat.shape[1]
        per_class = (z_hat @ e.view(a, width, m).permute(1, 0, 2).reshape(width, a * m)).view(-1, a, m)
        return torch.einsum("bam,ba->bm", per_class, r @ u)


@dataclass(frozen=True)
class QueryMatrix:
    """What an influence query needs besides the model's features: H^+ g_j for every training point j.

    `matrix[j]` is H^+ g_j laid out as a (C, D) array like `[W | b]`; the score of a test point with
    gradient g_t = r_t z~_t^T is r_t^T matrix[j] z~_t (see `influence_scores`).
    """

    matrix: torch.Tensor  # (n, C, D) float64
    weight: torch.Tensor  # (C, d) the FC layer the gradients are taken at
    bias: torch.Tensor | None  # (C,) or None
    method: str
    cutoff: float
    route: str  # how H^+ was obtained: 'autograd-svd', 'dense-eigh', 'iterative-eigsh', 'identity'
    rank: int  # eigen-directions of H kept by the cut-off (0 for 'identity')
    eigenvalue_max: float  # largest eigenvalue of H (nan for 'identity')
    seconds: float
    factors: EigenFactors | None = None  # the eigen routes' factorisation, for cheaper batch matrices


def fc_params(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return weight if bias is None else torch.cat([weight, bias[:, None]], 1)


def augment(features: torch.Tensor, bias: bool) -> torch.Tensor:
    """z -> z~ = [z, 1] when the layer has a bias; (n, d) -> (n, D)."""
    if not bias:
        return features
    return torch.cat([features, features.new_ones(features.shape[0], 1)], 1)


def probabilities(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """softmax(z W^T + b); (n, d) -> (n, C)."""
    logits = features @ weight.T
    if bias is not None:
        logits = logits + bias
    return torch.softmax(logits, 1)


def residuals(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """r = p - e_y, the gradient of cross-entropy w.r.t. the logits; (n, C)."""
    return probs - torch.nn.functional.one_hot(labels, probs.shape[1]).to(probs)


def class_basis(num_classes: int, device: torch.device, dtype: torch.dtype = DTYPE) -> torch.Tensor:
    """(C, C-1) orthonormal basis of the complement of the all-ones vector.

    diag(p) - p p^T maps 1 to 0 and every residual r = p - e_y sums to 0, so H and all gradients live in
    (1^perp) (x) R^D: projecting classes onto this basis drops D exactly-zero directions of H.
    """
    ones = torch.ones(num_classes, 1, device=device, dtype=dtype)
    q, _ = torch.linalg.qr(torch.cat([ones, torch.eye(num_classes, device=device, dtype=dtype)[:, :-1]], 1))
    return q[:, 1:]


def feature_basis(features: torch.Tensor, rtol: float = 1e-12) -> torch.Tensor | None:
    """(D, r) orthonormal basis of the training features' row space when there are fewer points than
    dimensions (n < D), else None (work in R^D).

    H = sum_i A_i (x) z~_i z~_i^T lives in R^(C-1) (x) span{z~_i}, and a test gradient's part outside that
    span meets only zero rows of H^+; working in the span is exact and shrinks D to the rank r <= n. The
    span comes from the eigendecomposition of the n x n Gram matrix; directions with squared singular value
    below rtol * max carry at most that share of H, far below any sensible cut-off, so they are dropped.
    With n >= D the full space costs no more than the span would, and any null directions of H that
    remain (dead units) have zero eigenvalues, which the cut-off drops anyway.
    """
    n, d_aug = features.shape
    if n >= d_aug:
        return None
    vals, vecs = torch.linalg.eigh(features @ features.T)  # (n,), (n, n)
    keep = vals > rtol * vals.max()
    basis = features.T @ (vecs[:, keep] / vals[keep].sqrt())  # (D, r), orthonormal up to round-off
    return torch.linalg.qr(basis)[0]


def influence_scores(query: QueryMatrix, test_features: torch.Tensor, test_labels: torch.Tensor | None = None,
                     batch: int = 512) -> torch.Tensor:
    """Scores of every training point on every test point: (n_train, n_test), float64.

    score[j, t] = g_t^T H^+ g_j (see the sign convention in compute.influence). Without labels the test
    gradient uses the predicted class (an unlabeled image's loss at its own prediction).
    """
    q = query.matrix
    n, c, d_aug = q.shape
    test_features = test_features.to(device=q.device, dtype=q.dtype)
    factors = query.factors
    use_factors = factors is not None and factors.flops_per_test() < q.numel()
    flat = q.reshape(n * c, d_aug)  # (n C, D)
    out = []
    for i in range(0, test_features.shape[0], batch):
        z = test_features[i:i + batch]
        probs = probabilities(z, query.weight, query.bias)
        labels = probs.argmax(1) if test_labels is None else test_labels[i:i + batch].to(q.device)
        r = residuals(probs, labels)  # (b, C)
        z_aug = augment(z, query.bias is not None)  # (b, D)
        if use_factors:
            out.append(factors.train_coeff @ factors.project(z_aug, r).T)  # (n, m) @ (m, b)
        else:
            qz = (flat @ z_aug.T).view(n, c, -1)  # (n, C, b): Q_j z~_t
            out.append(torch.einsum("jct,tc->jt", qz, r))
    return torch.cat(out, 1) if out else q.new_zeros(n, 0)


def train_gradients(problem: FCProblem) -> torch.Tensor:
    """Per-example gradients of the training points as (n, C, D) arrays r_i z~_i^T."""
    probs = probabilities(problem.features, problem.weight, problem.bias)
    r = residuals(probs, problem.labels)
    z = augment(problem.features, problem.bias is not None)
    return r[:, :, None] * z[:, None, :]
