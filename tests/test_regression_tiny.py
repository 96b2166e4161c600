"""The `tiny` preset's results do not change: every accuracy, learning curve and influence matrix equals the
fixtures in tests/fixtures/tiny/ (recorded from commit 75bda3b by `python -m tests.helpers.tiny_fixture DIR`).

Comparisons are exact (==): the arithmetic of training, fine-tuning, robustness evaluation and influence is
unchanged by refactoring, and one torch thread (tests/conftest.py) keeps CPU reductions in a fixed order.
The influence matrices are float32 files compared bit for bit too.
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
