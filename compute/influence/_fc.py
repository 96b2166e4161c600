"""The final-layer problem every influence route shares: features, labels, FC parameters, gradients.

Layout: the FC parameters are one (C, D) array `[W | b]` (D = d + 1 with a bias, d without). The gradient of
the cross-entropy of an example with features z and label y is the outer product g = r z~^T with
r = softmax(W z + b) - e_y (C,) and z~ = [z, 1] (D,), so a gradient is never stored as a P = C * D vector
unless a route needs it. A query matrix Q holds H^+ g_j for each training point j as a (C, D) slice,
so the score of a test point t is <g_t, Q_j> = r_t^T Q_j z~_t.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
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


MATRIX_LIMIT = 100_000_000  # n C D above which the dense query matrix is not formed (800 MB in float64)


def project(z_hat: torch.Tensor, r_reduced: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """E^T g~ for gradients g~ = r~ (x) z^ in the reduced basis, never forming g~: (b, r), (b, C-1) -> (b, m).

    E (N, m) is indexed (class a, feature k) a-major, so E viewed (C-1, r, m) contracts with z^ in one GEMM.
    """
    a, m = r_reduced.shape[1], vectors.shape[1]
    width = z_hat.shape[1]
    per_class = (z_hat @ vectors.view(a, width, m).permute(1, 0, 2).reshape(width, a * m)).view(-1, a, m)
    return torch.einsum("bam,ba->bm", per_class, r_reduced)


@dataclass(frozen=True)
class EigenFactors:
    """H~^+ = E diag(1/lambda) E^T in the reduced basis (compute.influence._structure), kept by the eigen routes.

    With m kept eigenpairs a test point costs about r (C-1) m + n m multiply-adds instead of the n C D of the
    dense query matrix (190x fewer at the paper's size with the 5e-2 cut-off), and it stays small at 100
    classes, where the dense query matrix would not fit.
    """

    class_basis: torch.Tensor  # U (C, C-1)
    feature_basis: torch.Tensor | None  # V (D, r), None = identity
    vectors: torch.Tensor  # E (N, m), N = (C-1) r
    train_coeff: torch.Tensor  # (n, m) = G~_train E diag(1/lambda)

    def cost(self) -> int:
        """Multiply-adds per test point: V^T z~, E^T (r (x) z^), and the (n, m) product."""
        basis = 0 if self.feature_basis is None else self.feature_basis.numel()
        return basis + self.vectors.numel() + self.train_coeff.numel()

    def scores(self, z_aug: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """(n, b) scores of test gradients r (x) z~ given as (b, D), (b, C)."""
        z_hat = z_aug if self.feature_basis is None else z_aug @ self.feature_basis
        return self.train_coeff @ project(z_hat, r @ self.class_basis, self.vectors).T

    def dense(self) -> torch.Tensor:
        """The (n, C, D) query matrix H^+ g_j, lifted from the reduced basis."""
        n, a = self.train_coeff.shape[0], self.class_basis.shape[1]
        rows = (self.train_coeff @ self.vectors.T).view(n, a, -1)  # (n, C-1, r)
        rows = self.class_basis @ rows  # (n, C, r)
        return rows if self.feature_basis is None else rows @ self.feature_basis.T


@dataclass(frozen=True)
class GradientKernel:
    """The training gradients as factors r_j (x) z~_j, for H = I (TracIn): g_t . g_j = (r_t . r_j)(z~_t . z~_j)."""

    residuals: torch.Tensor  # (n, C)
    features: torch.Tensor  # (n, D)

    def cost(self) -> int:
        return self.residuals.numel() + self.features.numel()

    def scores(self, z_aug: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return (self.residuals @ r.T) * (self.features @ z_aug.T)

    def dense(self) -> torch.Tensor:
        return self.residuals[:, :, None] * self.features[:, None, :]


# Stored arrays of each representation (float32 on disk), and how to rebuild them.
_ARRAYS = {
    "matrix": ("query",),
    "factors": ("class_basis", "vectors", "train_coeff", "feature_basis"),
    "kernel": ("train_residuals", "train_features"),
}


@dataclass(frozen=True)
class QueryMatrix:
    """What an influence query needs besides the model's features: H^+ g_j for every training point j.

    Held as the dense (n, C, D) array `matrix` (row j = H^+ g_j laid out like `[W | b]`; a test point with
    gradient g_t = r_t z~_t^T scores r_t^T matrix[j] z~_t), and/or as a compact factorisation (`factors` for
    the eigen routes, `kernel` for H = I) that gives the same scores for less work. Routes form `matrix`
    only when n C D <= MATRIX_LIMIT; `scores` uses the cheapest representation present.
    """

    weight: torch.Tensor  # (C, d) the FC layer the gradients are taken at
    bias: torch.Tensor | None  # (C,) or None
    method: str
    cutoff: float
    route: str  # how H^+ was obtained: 'autograd-svd', 'dense-eigh', 'iterative-eigsh', 'identity'
    rank: int  # eigen-directions of H kept by the cut-off (0 for 'identity')
    eigenvalue_max: float  # largest eigenvalue of H (nan for 'identity')
    seconds: float
    matrix: torch.Tensor | None = None  # (n, C, D) float64
    factors: EigenFactors | None = None
    kernel: GradientKernel | None = None

    @property
    def num_train(self) -> int:
        for part in (self.matrix, self.factors and self.factors.train_coeff, self.kernel and self.kernel.residuals):
            if part is not None:
                return int(part.shape[0])
        raise ValueError("empty QueryMatrix")

    def dense(self) -> torch.Tensor:
        """The (n, C, D) query matrix, formed from the factors when it was not kept."""
        if self.matrix is not None:
            return self.matrix
        return (self.factors or self.kernel).dense()

    def scores(self, z_aug: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """(n, b) scores g_t^T H^+ g_j for test gradients r (x) z~ given as (b, D), (b, C)."""
        options = [(part.cost(), part.scores) for part in (self.factors, self.kernel) if part is not None]
        if self.matrix is not None:
            n, c, d_aug = self.matrix.shape
            options.append((self.matrix.numel(), lambda z, rr: torch.einsum(
                "jcb,bc->jb", (self.matrix.view(n * c, d_aug) @ z.T).view(n, c, -1), rr)))
        return min(options, key=lambda option: option[0])[1](z_aug, r)

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything a query needs, as float32 arrays for `np.savez` (names in `_ARRAYS`)."""
        parts: dict[str, torch.Tensor | None] = {"weight": self.weight, "bias": self.bias, "query": self.matrix}
        if self.factors is not None:
            parts.update(class_basis=self.factors.class_basis, vectors=self.factors.vectors,
                         train_coeff=self.factors.train_coeff, feature_basis=self.factors.feature_basis)
        if self.kernel is not None:
            parts.update(train_residuals=self.kernel.residuals, train_features=self.kernel.features)
        return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in parts.items() if v is not None}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], method: str = "", cutoff: float = float("nan"),
                    device: str | torch.device = "cpu") -> QueryMatrix:
        """Rebuild from `arrays()` output (e.g. an opened .npz), in float64 on `device`."""
        get = lambda name: (torch.as_tensor(np.asarray(arrays[name]), device=device).double()  # noqa: E731
                            if name in arrays else None)
        factors = kernel = None
        if "vectors" in arrays:
            factors = EigenFactors(get("class_basis"), get("feature_basis"), get("vectors"), get("train_coeff"))
        if "train_residuals" in arrays:
            kernel = GradientKernel(get("train_residuals"), get("train_features"))
        if "query" not in arrays and factors is None and kernel is None:
            raise RtxError("stored query data holds none of: " + ", ".join(n for names in _ARRAYS.values() for n in names))
        return cls(get("weight"), get("bias"), method, cutoff, "stored", 0, float("nan"), 0.0, get("query"), factors,
                   kernel)


def fc_params(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return weight if bias is None else torch.cat([weight, bias[:, None]], 1)


def with_ones_column(features: torch.Tensor, bias: bool) -> torch.Tensor:
    """z -> z~ = [z, 1] when the layer has a bias (so the bias is one more weight column); (n, d) -> (n, D)."""
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


def query_scores(query: QueryMatrix, features: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor,
                 bias: bool) -> torch.Tensor:
    """(n_train, N) scores of N new images with features (N, d), probabilities (N, C) and gradient labels (N,)
    against a stored query matrix: one structured product, no backward pass."""
    return query.scores(with_ones_column(features, bias), residuals(probs, labels))


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
    device = query.weight.device
    test_features = test_features.to(device=device, dtype=DTYPE)
    out = []
    for i in range(0, test_features.shape[0], batch):
        z = test_features[i:i + batch]
        probs = probabilities(z, query.weight, query.bias)
        labels = probs.argmax(1) if test_labels is None else test_labels[i:i + batch].to(device)
        out.append(query.scores(with_ones_column(z, query.bias is not None), residuals(probs, labels)))
    return torch.cat(out, 1) if out else torch.zeros(query.num_train, 0, dtype=DTYPE, device=device)


def train_gradients(problem: FCProblem) -> torch.Tensor:
    """Per-example gradients of the training points as (n, C, D) arrays r_i z~_i^T."""
    probs = probabilities(problem.features, problem.weight, problem.bias)
    r = residuals(probs, problem.labels)
    z = with_ones_column(problem.features, problem.bias is not None)
    return r[:, :, None] * z[:, None, :]
