"""The `tiny` preset's results do not change: every accuracy, learning curve and influence matrix equals the
fixtures in tests/fixtures/tiny/ (recorded by `python -m tests.helpers.tiny_fixture DIR`).

Comparisons are exact (==): refactoring leaves the arithmetic unchanged, and one torch thread (tests/conftest.py)
keeps CPU reductions in a fixed order. The influence matrices are float32 files compared bit for bit too.

History of the fixtures (each re-recording was checked against the previous fixtures before it was made):
- recorded from commit 75bda3b.
- re-recorded with compute/training.py (one `evaluate`), on purpose, for two reasons:
  1. fine-tune accuracies are now correct / N in double precision; finetune.py's own evaluate returned a float32
     mean. Every count of correct test images, every training loss, every source, every influence matrix is
     unchanged; the accuracies moved by at most 7.3e-9 (the float32 rounding).
  2. PGD robust accuracies changed because a bug is fixed: the old `evaluate_robustness` put the Classifier in
     eval mode but not its `OnPixels` wrapper, so `perturb` restored the wrapper's train mode on the model and
     every batch after the first was attacked and scored with BatchNorm in train mode (batch statistics, and
     running statistics drifting during evaluation). Natural L2 1.5: 0.107 -> 0.078; l2_1.5: 0.263 -> 0.148.
     Clean accuracies (no perturbation) are unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import tiny_fixture


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tiny-regression")
    tiny_fixture.run_tiny(root)
    return tiny_fixture.collect(root)


@pytest.mark.slow
def test_sources_and_robustness_unchanged(tiny_results) -> None:
    expected, _ = tiny_fixture.load()
    numbers, _ = tiny_results
    assert numbers["sources"] == expected["sources"]
    assert numbers["robustness"] == expected["robustness"]


@pytest.mark.slow
def test_finetunes_unchanged(tiny_results) -> None:
    expected, _ = tiny_fixture.load()
    numbers, _ = tiny_results
    assert sorted(numbers["runs"]) == sorted(expected["runs"])
    for run, want in expected["runs"].items():
        assert numbers["runs"][run] == want, run


@pytest.mark.slow
def test_influence_unchanged(tiny_results) -> None:
    expected, expected_matrices = tiny_fixture.load()
    numbers, matrices = tiny_results
    assert numbers["influence"] == expected["influence"]
    assert sorted(matrices) == sorted(expected_matrices)
    for source, matrix in expected_matrices.items():
        assert matrices[source].dtype == matrix.dtype and matrices[source].shape == matrix.shape
        np.testing.assert_array_equal(matrices[source], matrix, err_msg=source)
