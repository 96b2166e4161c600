"""Results derived from a stored influence matrix (n_train, n_test): Figure 7a, Figure 7b, Figure 6.

All take the matrix as the cache stores it (scores, higher = more helpful: see compute.influence) and
never recompute anything from a model, so the explorer shows exactly what the matrix says.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from compute.errors import RtxError


class TopK(NamedTuple):
    positions: np.ndarray  # (n_test, k) training row positions, most influential first
    scores: np.ndarray  # (n_test, k)


class SortedMatrix(NamedTuple):
    matrix: np.ndarray  # (n_train, n_test) sorted by label and divided by the Frobenius norm
    train_order: np.ndarray  # (n_train,) original row of each sorted row
    test_order: np.ndarray  # (n_test,) original column of each sorted column
    train_labels: np.ndarray  # labels in sorted order
    test_labels: np.ndarray


def _check(matrix: np.ndarray, train_labels: np.ndarray, test_labels: np.ndarray) -> None:
    if matrix.ndim != 2 or matrix.shape != (len(train_labels), len(test_labels)):
        raise RtxError(f"influence matrix {matrix.shape} does not match {len(train_labels)} train x "
                       f"{len(test_labels)} test labels")


def top_k(matrix: np.ndarray, k: int) -> TopK:
    """Per test column, the k training rows with the highest scores (ties: lower row first)."""
    k = min(k, matrix.shape[0])
    order = np.argsort(-matrix, axis=0, kind="stable")[:k].T  # (n_test, k)
    return TopK(order, np.take_along_axis(matrix.T, order, 1))


def label_match_curve(matrix: np.ndarray, train_labels: np.ndarray, test_labels: np.ndarray,
                      k_max: int = 20) -> np.ndarray:
    """Figure 7b: for k = 1..k_max, the fraction of each test image's k most influential training images
    (highest scores, i.e. most helpful) that share its label, averaged over test images.

    Shape (min(k_max, n_train),), values in [0, 1]. At k = 1 it is the share of test images whose most
    influential training image has their label (the paper: 78.6% robust); for k > 1 we read the paper's
    "top-k influential images match the test label" as the share of matching images among the top k.
    """
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    _check(matrix, train_labels, test_labels)
    positions = top_k(matrix, k_max).positions
    matches = train_labels[positions] == test_labels[:, None]  # (n_test, k)
    return np.cumsum(matches.mean(0)) / np.arange(1, positions.shape[1] + 1)


def sorted_standardized(matrix: np.ndarray, train_labels: np.ndarray, test_labels: np.ndarray) -> SortedMatrix:
    """Figure 7a: rows and columns sorted by label (stable), divided by the matrix's Frobenius norm."""
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    _check(matrix, train_labels, test_labels)
    rows = np.argsort(train_labels, kind="stable")
    cols = np.argsort(test_labels, kind="stable")
    norm = float(np.linalg.norm(matrix))
    scaled = matrix[np.ix_(rows, cols)] / (norm if norm > 0 else 1.0)
    return SortedMatrix(scaled, rows, cols, train_labels[rows], test_labels[cols])
