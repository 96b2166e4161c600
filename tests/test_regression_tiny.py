"""The `tiny` preset's results do not change when the code is refactored, on any x86-64 machine.

Design (issue 25). The whole pipeline (train two sources, PGD robustness, eight fine-tunes, influence) runs in
float64 (`tiny_fixture.float64_default`), one torch thread, and is compared with tests/fixtures/tiny/:
- exactly, what is deterministic everywhere: which sources, attacks, runs (source, target, n, seed, blocks) and
  influence results exist, the epochs of every learning curve, the method and cut-off of each influence result,
  the shapes of the influence matrices.
- within tolerances, the numbers. Why float64: in float32 the CPU's kernel path (AVX2 vs AVX-512, MKL and oneDNN
  code paths, thread count) changes the last bit of the first steps and training amplifies it into other
  accuracies within an epoch (a source's clean accuracy 0.5429 on one path, 0.5479 on another, here). In float64
  the same change is ~1e-16 and stays far below every tolerance below; measured on an Intel Xeon (AVX-512):
  the default path and `ATEN_CPU_CAPABILITY=default` agree on every accuracy exactly, on losses to 1.2e-7
  relative and on influence matrices to 1.1e-7 of their largest entry: one float32 rounding step, because the
  cache stores losses and matrices as float32.

What it catches: any change of what the preset computes (learning rate, weight decay, schedule, freezing,
initialisation, augmentation, data order, subsets, PGD step, influence maths) moves the losses by far more than
1e-6 and the matrices by far more than 1e-5 (checked by changing the fine-tune's weight decay by 1%: losses
moved by ~1e-4 relative, and the test failed). What it cannot catch: a change that only shows in float32
(a dtype cast, a kernel choice, autocast); the engine's float32 tests cover those paths against their own
references, and `make test` re-runs this file under other kernel paths (`-m numerics`).

History of the fixtures:
- recorded from commit 75bda3b (float32, bit-exact); re-recorded with compute/training.py (one `evaluate`).
- re-recorded in float64 (issue 25): float32 fixtures held only on the machine that wrote them (an Intel
  machine failed three of these tests with the same code).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import tiny_fixture

pytestmark = [pytest.mark.slow, pytest.mark.numerics]

# The cache stores losses as float32 (2**-23 = 1.2e-7 relative spacing): the two kernel paths differed by one
# such step. 1e-6 is eight steps, and a real change of results moves a loss by 1e-4 or more.
LOSS_RTOL = 1e-6
# Influence matrices are stored as float32 too; entries are compared relative to the matrix's largest one.
MATRIX_RTOL = 1e-5
# Accuracies and label-match fractions are counts over n test images: equal unless a test image's margin is below
# float64 round-off amplified by training (~1e-10 here), so at most one image may flip anywhere.
MAX_FLIPPED = 1


def _close_counts(got: float, want: float, n: int) -> bool:
    return abs(got - want) <= MAX_FLIPPED / n + 1e-12


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tiny-regression")
    tiny_fixture.run_tiny(root)
    return (*tiny_fixture.collect(root), root)


def test_sources_and_robustness_unchanged(tiny_results) -> None:
    expected, _ = tiny_fixture.load()
    numbers, _, _ = tiny_results
    assert sorted(numbers["sources"]) == sorted(expected["sources"])
    assert sorted(numbers["robustness"]) == sorted(expected["robustness"])
    # Clean accuracy of the sources is over 10,000 test images (FashionMNIST's test split); robustness over 1,000.
    for name, want in expected["sources"].items():
        assert _close_counts(numbers["sources"][name], want, 10_000), (name, numbers["sources"][name], want)
    for name, want in expected["robustness"].items():
        assert _close_counts(numbers["robustness"][name], want, 1_000), (name, numbers["robustness"][name], want)


def test_finetunes_unchanged(tiny_results) -> None:
    expected, _ = tiny_fixture.load()
    numbers, _, _ = tiny_results
    assert sorted(numbers["runs"]) == sorted(expected["runs"])
    for run, want in expected["runs"].items():
        got = numbers["runs"][run]
        assert [e for e, _, _ in got["curve"]] == [e for e, _, _ in want["curve"]], run
        n_test = 360  # the tiny preset's digits test split
        for (_, acc, loss), (_, want_acc, want_loss) in zip(got["curve"], want["curve"], strict=True):
            assert _close_counts(acc, want_acc, n_test), (run, acc, want_acc)
            assert loss == pytest.approx(want_loss, rel=LOSS_RTOL), run
        assert _close_counts(got["final_test_acc"], want["final_test_acc"], n_test), run
        assert got["final_train_loss"] == pytest.approx(want["final_train_loss"], rel=LOSS_RTOL), run


def test_influence_unchanged(tiny_results) -> None:
    expected, expected_matrices = tiny_fixture.load()
    numbers, matrices, _ = tiny_results
    assert sorted(numbers["influence"]) == sorted(expected["influence"])
    for source, want in expected["influence"].items():
        got = numbers["influence"][source]
        assert (got["run"], got["method"], got["cutoff"]) == (want["run"], want["method"], want["cutoff"])
        n_test = len(want["test_pred"])
        assert len(got["test_pred"]) == n_test
        assert sum(a != b for a, b in zip(got["test_pred"], want["test_pred"], strict=True)) <= MAX_FLIPPED, source
        assert len(got["label_match"]) == len(want["label_match"])
        for k, (a, b) in enumerate(zip(got["label_match"], want["label_match"], strict=True), start=1):
            assert _close_counts(a, b, n_test * k), (source, k, a, b)
    assert sorted(matrices) == sorted(expected_matrices)
    for source, matrix in expected_matrices.items():
        assert matrices[source].dtype == matrix.dtype and matrices[source].shape == matrix.shape
        scale = float(np.abs(matrix).max())
        np.testing.assert_allclose(matrices[source], matrix, rtol=0, atol=MATRIX_RTOL * scale, err_msg=source)


def test_pipeline_ran_in_float64(tiny_results) -> None:
    """The tolerances above hold only if nothing casts back to float32: every saved model is float64."""
    from safetensors.torch import load_file

    _, _, root = tiny_results
    files = sorted(root.glob("**/*.safetensors"))
    assert len(files) >= 2 + 2, files  # two sources and the two fine-tunes influence reads (others keep none)
    for path in files:
        dtypes = {str(t.dtype) for t in load_file(path).values() if t.is_floating_point()}
        assert dtypes == {"torch.float64"}, (path.name, dtypes)
