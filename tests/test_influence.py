"""compute.influence: exact routes agree with the paper's route and with re-training; stored results are consistent."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from scipy.stats import pearsonr

from compute.cache import CacheReader, CacheWriter
from compute.data import load_dataset
from compute.errors import RtxError
from compute.influence import (
    METHODS,
    FCProblem,
    QueryMatrix,
    get_method,
    influence_fast,
    influence_iterative,
    influence_reference,
    influence_scores,
    label_match_curve,
    penultimate,
    sorted_standardized,
    top_k,
    tracincp_matrix,
)
from compute.influence.tracin import identity_query
from compute.influence_index import InfluenceIndex
from compute.models import build_model
from compute.presets import get_preset
from compute.settings import Settings
from compute.stages.finetune import finetune_stage
from compute.stages.influence import influence_stage


def random_problem(n: int, d: int, classes: int, bias: bool = True, n_test: int = 12, seed: int = 0,
                   damping: float = 0.0) -> tuple[FCProblem, torch.Tensor, torch.Tensor]:
    """ReLU-like features with class-dependent directions and a W that roughly fits them (trained-ish logits)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g)
    y = torch.randint(0, classes, (n + n_test,), generator=g)
    z = (centres[y] + torch.randn(n + n_test, d, generator=g)).relu()
    weight = 0.5 * centres + 0.3 * torch.randn(classes, d, generator=g)
    b = 0.5 * torch.randn(classes, generator=g) if bias else None
    problem = FCProblem.create(z[:n], y[:n], weight, b, damping=damping)
    return problem, z[n:].double(), y[n:]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# --- exact routes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("classes", [2, 3, 10])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("n", "d"), [(40, 6), (9, 20)])  # more points than features, and fewer (feature span)
def test_fast_equals_the_papers_route(classes: int, bias: bool, n: int, d: int) -> None:
    problem, z_test, y_test = random_problem(n, d, classes, bias, seed=classes + 7 * d)
    ref = influence_reference(problem, z_test, y_test, cutoff=5e-2)
    fast = influence_scores(influence_fast(problem, cutoff=5e-2), z_test, y_test)
    assert fast.shape == (n, len(y_test))
    assert rel_err(fast, ref) < 1e-6
    assert ref.abs().max() > 0


@pytest.mark.parametrize("cutoff", [1e-3, 0.3])
def test_fast_equals_reference_at_other_cutoffs_and_registry_reference(cutoff: float) -> None:
    problem, z_test, y_test = random_problem(30, 5, 4, seed=3)
    ref = influence_reference(problem, z_test, y_test, cutoff=cutoff)
    via_registry = get_method("reference").solve(problem, cutoff)
    assert rel_err(influence_scores(via_registry, z_test, y_test), ref) < 1e-10
    fast = influence_fast(problem, cutoff=cutoff)
    assert rel_err(influence_scores(fast, z_test, y_test), ref) < 1e-6
    assert fast.rank == via_registry.rank


def test_fast_equals_reference_on_a_real_small_resnet() -> None:
    """A small_resnet's penultimate features (128) on digits 0-4, an FC trained on them by L-BFGS (frozen
    features, as fine-tuning with 0 blocks): P = 5 x 129 = 645 parameters for the autograd route."""
    torch.manual_seed(0)
    model = build_model("small_resnet", 10, seed=0).eval()
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    pick_train, pick_test = torch.nonzero(train.labels < 5)[:40, 0], torch.nonzero(test.labels < 5)[:12, 0]
    z_train, y_train = penultimate(model, train.images[pick_train]), train.labels[pick_train]
    z_test, y_test = penultimate(model, test.images[pick_test]), test.labels[pick_test]
    fc = torch.nn.Linear(model.num_features, 5)
    opt = torch.optim.LBFGS(fc.parameters(), max_iter=50)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(fc(z_train), y_train) + 1e-3 * fc.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert (fc(z_train).argmax(1) == y_train).float().mean() > 0.9  # the FC fits its training points
    problem = FCProblem.create(z_train, y_train, fc.weight, fc.bias)
    ref = influence_reference(problem, z_test, y_test, cutoff=5e-2)
    fast = influence_scores(influence_fast(problem, cutoff=5e-2), z_test, y_test)
    assert rel_err(fast, ref) < 1e-6


def test_influence_predicts_the_effect_of_upweighting_a_training_point() -> None:
    """Re-solve the (L2-regularised) FC problem with one point upweighted by +-eps: the change in test loss
    is -eps * score (score = g_t^T (H + lambda I)^-1 g_j, H including the regulariser)."""
    lam, eps = 0.05, 1e-3
    problem, z_test, y_test = random_problem(20, 4, 3, seed=11)
    z, y = problem.features.numpy(), problem.labels.numpy()
    c, d = problem.num_classes, z.shape[1]
    z1, zt1 = np.hstack([z, np.ones((len(z), 1))]), np.hstack([z_test.numpy(), np.ones((len(z_test), 1))])

    def losses(theta: np.ndarray, feats: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = theta.reshape(c, d + 1)
        logits = feats @ params.T
        logits -= logits.max(1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        resid = np.exp(logp)
        resid[np.arange(len(labels)), labels] -= 1
        return -logp[np.arange(len(labels)), labels], resid[:, :, None] * feats[:, None, :]  # (n,), (n, C, D)

    def objective(theta: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
        value, grads = losses(theta, z1, y)
        return (float(weights @ value + 0.5 * lam * theta @ theta),
                np.einsum("i,icd->cd", weights, grads).reshape(-1) + lam * theta)

    def solve(weights: np.ndarray, start: np.ndarray) -> np.ndarray:
        result = minimize(objective, start, args=(weights,), jac=True, method="L-BFGS-B",
                          options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 10_000})
        return result.x

    theta0 = solve(np.ones(len(z)), np.zeros(c * (d + 1)))
    params = torch.from_numpy(theta0.reshape(c, d + 1))
    fitted = FCProblem.create(problem.features, problem.labels, params[:, :d], params[:, d], damping=lam)
    scores = influence_scores(influence_fast(fitted, cutoff=0.0), z_test, y_test).numpy()  # (n, m)
    ref = influence_reference(fitted, z_test, y_test, cutoff=0.0).numpy()
    np.testing.assert_allclose(scores, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())
    measured = np.zeros_like(scores)
    for j in range(len(z)):
        up, down = np.ones(len(z)), np.ones(len(z))
        up[j] += eps
        down[j] -= eps
        loss_up = losses(solve(up, theta0), zt1, y_test.numpy())[0]
        loss_down = losses(solve(down, theta0), zt1, y_test.numpy())[0]
        measured[j] = (loss_up - loss_down) / (2 * eps)
    for t in range(scores.shape[1]):
        assert pearsonr(-scores[:, t], measured[:, t]).statistic > 0.99
    assert np.abs(-scores - measured).max() < 5e-3 * np.abs(measured).max()  # measured: 5e-4


def test_iterative_equals_dense_fast_on_a_medium_problem() -> None:
    problem, z_test, y_test = random_problem(300, 40, 10, n_test=30, seed=5)
    dense = influence_fast(problem, cutoff=5e-2)
    iterative = influence_iterative(problem, cutoff=5e-2, first_k=8)  # forces the doubling of k
    assert iterative.route == "iterative-eigsh" and dense.route == "dense-eigh"
    assert iterative.rank == dense.rank and 2 * 9 < dense.rank < 9 * 41 // 2  # Lanczos had to double k
    assert rel_err(influence_scores(iterative, z_test, y_test), influence_scores(dense, z_test, y_test)) < 1e-6
    assert abs(iterative.eigenvalue_max - dense.eigenvalue_max) < 1e-9 * dense.eigenvalue_max


@pytest.mark.parametrize("route", [influence_fast, influence_iterative])
def test_eigen_factors_and_query_matrix_give_the_same_scores(route) -> None:
    """Batch matrices use the eigen factors when cheaper; on-demand queries use the (n, C, D) query matrix."""
    problem, z_test, y_test = random_problem(120, 30, 5, n_test=20, seed=6)
    query = route(problem, cutoff=5e-2)
    assert query.factors is not None and query.factors.cost() < query.matrix.numel()
    via_factors = influence_scores(query, z_test, y_test)
    via_matrix = influence_scores(replace(query, factors=None), z_test, y_test)
    assert rel_err(via_factors, via_matrix) < 1e-10
    unlabeled = influence_scores(query, z_test)  # predicted labels
    assert unlabeled.shape == via_matrix.shape


def test_large_layers_keep_only_the_factors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above MATRIX_LIMIT (100 classes x 2048 features) the dense (n, C, D) query matrix is never formed."""
    import compute.influence._structure as structure

    problem, z_test, y_test = random_problem(60, 12, 4, seed=8)
    full = influence_fast(problem, cutoff=5e-2)
    monkeypatch.setattr(structure, "MATRIX_LIMIT", 10)
    compact = influence_fast(problem, cutoff=5e-2)
    assert compact.matrix is None and compact.factors is not None
    assert rel_err(influence_scores(compact, z_test, y_test), influence_scores(full, z_test, y_test)) < 1e-12
    assert rel_err(compact.dense(), full.matrix) < 1e-12
    assert "query" not in compact.arrays() and "vectors" in compact.arrays()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_stored_query_data_round_trips(name: str) -> None:
    problem, z_test, y_test = random_problem(30, 5, 3, seed=12)
    query = get_method(name).solve(problem, 5e-2)
    loaded = QueryMatrix.from_arrays(query.arrays())  # float32 on disk
    assert rel_err(influence_scores(loaded, z_test, y_test), influence_scores(query, z_test, y_test)) < 1e-5
    with pytest.raises(RtxError, match="holds none of"):
        QueryMatrix.from_arrays({"weight": np.zeros((3, 5))})


def test_fast_hands_large_layers_to_the_iterative_route() -> None:
    problem, z_test, y_test = random_problem(200, 30, 6, seed=9)
    handed = influence_fast(problem, cutoff=5e-2, dense_limit=50)
    assert handed.route == "iterative-eigsh" and handed.method == "fast"
    dense = influence_fast(problem, cutoff=5e-2)
    assert dense.route == "dense-eigh"
    assert rel_err(influence_scores(handed, z_test, y_test), influence_scores(dense, z_test, y_test)) < 1e-6
    # from `lanczos_from` reduced dimensions Lanczos goes first, unless the cut-off keeps nearly everything
    assert influence_fast(problem, cutoff=5e-2, lanczos_from=100).route == "iterative-eigsh"
    assert influence_fast(problem, cutoff=1e-9, lanczos_from=100).route == "dense-eigh"


def test_damping_and_dead_features_are_handled() -> None:
    """Dead (always zero) features and a damping term: fast still equals the reference."""
    problem, z_test, y_test = random_problem(25, 8, 3, seed=4, damping=0.1)
    feats = problem.features.clone()
    feats[:, :3] = 0
    dead = FCProblem.create(feats, problem.labels, problem.weight, problem.bias, damping=0.1)
    z_test = z_test.clone()
    z_test[:, 0] = 1.0  # a test point outside the training span
    ref = influence_reference(dead, z_test, y_test, cutoff=1e-4)
    assert rel_err(influence_scores(influence_fast(dead, cutoff=1e-4), z_test, y_test), ref) < 1e-6


def test_tracincp_is_captums_gradient_inner_product() -> None:
    problem, z_test, y_test = random_problem(40, 6, 4, seed=2)
    captum = tracincp_matrix(problem, z_test, y_test)
    closed = influence_scores(identity_query(problem), z_test, y_test)
    assert rel_err(captum, closed) < 1e-10


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_gives_a_matrix_of_the_right_shape(name: str) -> None:
    problem, z_test, y_test = random_problem(20, 4, 3, seed=1)
    method = get_method(name)
    query = method.solve(problem, 5e-2)
    matrix = method.matrix(problem, query, z_test, y_test)
    assert matrix.shape == (20, len(y_test)) and torch.isfinite(matrix).all()
    # the query matrix reproduces the batch matrix (what on-demand queries rely on)
    assert rel_err(influence_scores(query, z_test, y_test), matrix) < 1e-8


def test_bad_inputs_raise_one_line_errors() -> None:
    with pytest.raises(RtxError, match="valid choices"):
        get_method("newton")
    with pytest.raises(RtxError, match="do not match"):
        FCProblem.create(torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), torch.zeros(2, 4))
    with pytest.raises(RtxError, match="labels must lie"):
        FCProblem.create(torch.zeros(2, 3), torch.tensor([0, 2]), torch.zeros(2, 3))


# --- derived results ---------------------------------------------------------------------------------------
def test_label_match_curve_and_top_k_by_hand() -> None:
    # 4 training images (labels 0, 0, 1, 1) x 2 test images (labels 0, 1); higher = more influential
    matrix = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.7], [0.1, 0.3]])
    train_labels, test_labels = np.array([0, 0, 1, 1]), np.array([0, 1])
    best = top_k(matrix, 2)
    np.testing.assert_array_equal(best.positions, [[0, 2], [1, 2]])
    np.testing.assert_allclose(best.scores, [[0.9, 0.5], [0.8, 0.7]])
    curve = label_match_curve(matrix, train_labels, test_labels, k_max=10)
    # k=1: test 0 -> train 0 (match), test 1 -> train 1 (no) = 0.5
    # k=2: test 0 {0: yes, 2: no}, test 1 {1: no, 2: yes} = 0.5; k=3: test 0 adds 1 (yes) -> 2/3, test 1 adds 3 (yes) -> 2/3
    np.testing.assert_allclose(curve, [0.5, 0.5, 2 / 3, 0.5])


def test_sorted_standardized_sorts_by_label_and_divides_by_the_norm() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(6, 4))
    train_labels, test_labels = np.array([2, 0, 1, 0, 2, 1]), np.array([1, 0, 1, 0])
    out = sorted_standardized(matrix, train_labels, test_labels)
    assert np.all(np.diff(out.train_labels) >= 0) and np.all(np.diff(out.test_labels) >= 0)
    np.testing.assert_allclose(np.linalg.norm(out.matrix), 1.0)
    np.testing.assert_allclose(out.matrix * np.linalg.norm(matrix), matrix[np.ix_(out.train_order, out.test_order)])
    with pytest.raises(RtxError):
        sorted_standardized(matrix, train_labels[:5], test_labels)


# --- the stage, the stored matrix, the on-demand index -----------------------------------------------------
@pytest.fixture(scope="module")
def influence_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset's influence runs (both sources, one subset) fine-tuned and their influence computed."""
    from tests.conftest import record_random_source

    root = tmp_path_factory.mktemp("influence-cache")
    preset = get_preset("tiny")
    spec = preset.influence
    with CacheWriter(root) as writer:
        record_random_source(writer, "natural", 0)
        record_random_source(writer, "l2_1.5", 1, "l2:1.5")
        finetune_stage(preset.with_overrides(sizes=(spec.n_train,), seeds=(spec.seed,)), writer,
                       Settings(progress=False))
        influence_stage(preset, writer, progress=False)
    return root


def test_stage_stores_matrix_topk_curve_and_thumbnails(influence_cache: Path) -> None:
    spec = get_preset("tiny").influence
    reader = CacheReader(influence_cache)
    results = reader.influence_results()
    results = results[results.method == "fast"]
    assert set(results.source) == set(spec.sources) and len(results) == 2
    for key in results.key:
        row = reader.influence(key)
        matrix = np.load(reader.artefact(row.matrix_path))
        assert matrix.shape == (spec.n_train, spec.n_test) == (row.n_train, row.n_test)
        train_labels, test_labels = np.asarray(row.train_labels), np.asarray(row.test_labels)
        # the curve and the top-k come from the stored matrix
        np.testing.assert_allclose(row.label_match, label_match_curve(matrix, train_labels, test_labels, 20),
                                   atol=1e-12)
        stored = reader.influence_topk(key)
        assert len(stored) == spec.n_test * spec.top_k
        best = top_k(matrix.astype(np.float64), spec.top_k)
        first = stored[stored.test_pos == 7].sort_values("rank")
        np.testing.assert_array_equal(first.train_pos, best.positions[7])
        np.testing.assert_allclose(first.score, matrix[best.positions[7], 7], rtol=1e-6)
        heat = sorted_standardized(matrix, train_labels, test_labels)
        assert heat.matrix.shape == matrix.shape
        assert len(row.test_pred) == spec.n_test and len(row.label_match) == 20
    thumbs = reader.thumbnails("digits", "train")
    assert set(np.asarray(row.train_indices).tolist()) <= set(thumbs.idx)
    assert set(range(spec.n_test)) <= set(reader.thumbnails("digits", "test").idx)


def test_stage_skips_what_the_cache_holds(influence_cache: Path) -> None:
    before = CacheReader(influence_cache).influence_results().query("method == 'fast'")
    with CacheWriter(influence_cache) as writer:
        influence_stage(get_preset("tiny"), writer, progress=False)
    after = CacheReader(influence_cache).influence_results().query("method == 'fast'")
    assert list(after.key) == list(before.key) and list(after.seconds) == list(before.seconds)


def test_a_new_image_gets_the_batch_matrix_column(influence_cache: Path) -> None:
    reader = CacheReader(influence_cache)
    test = load_dataset("digits", "test")
    for key in reader.influence_results().query("method == 'fast'").key:
        row = reader.influence(key)
        matrix = np.load(reader.artefact(row.matrix_path))
        index = InfluenceIndex.load(influence_cache, key)
        assert index.target == "digits" and index.input_channels == 1 and index.native_size == 8
        assert len(index.classes) == 10 and index.run_key == row.run_key
        images, labels = test.images[: row.n_test], test.labels[: row.n_test]
        scale = np.abs(matrix).max()
        # with the true label, a test image's scores are exactly its stored column
        np.testing.assert_allclose(index.scores(images, labels).T, matrix, atol=1e-5 * scale)
        # unlabeled: the predicted label is used, which is the true one where the model is right
        results = index.query(images, k=5)
        pred = np.array([r.predicted for r in results])
        np.testing.assert_array_equal(pred, row.test_pred)
        right = np.flatnonzero(pred == labels.numpy())
        assert len(right) > 0
        for t in right[:5]:
            best = np.argsort(-matrix[:, t], kind="stable")[:5]
            np.testing.assert_allclose(results[t].scores, matrix[best, t], atol=1e-5 * scale)
            np.testing.assert_array_equal(results[t].train_indices, np.asarray(row.train_indices)[results[t].train_positions])
        first = results[0]
        assert first.model_input.shape == (3, 28, 28) and first.probs.shape == (10,)
        assert abs(first.probs.sum() - 1) < 1e-9 and np.all(np.diff(first.scores) <= 0)


def test_index_rejects_wrong_images_and_unknown_keys(influence_cache: Path) -> None:
    key = CacheReader(influence_cache).influence_results().key[0]
    index = InfluenceIndex.load(influence_cache, key)
    with pytest.raises(RtxError, match="expected images"):
        index.query(torch.zeros(1, 3, 8, 8))
    with pytest.raises(RtxError, match="no influence result"):
        InfluenceIndex.load(influence_cache, "influence-0000")


def test_cli_computes_another_method_for_the_same_models(influence_cache: Path, capsys: pytest.CaptureFixture) -> None:
    from compute.cli import main

    assert main(["--cache", str(influence_cache), "influence", "--preset", "tiny", "--method", "tracincp",
                 "--no-progress"]) == 0
    reader = CacheReader(influence_cache)
    results = reader.influence_results()
    traced = results[results.method == "tracincp"]
    assert set(traced.source) == set(get_preset("tiny").influence.sources)
    fast = results[results.method == "fast"].set_index("run_key")
    test = load_dataset("digits", "test")
    for _, res in traced.iterrows():
        assert res.run_key in fast.index and res.key != fast.loc[res.run_key, "key"]
        row = reader.influence(res.key)
        matrix = np.load(reader.artefact(row.matrix_path))  # captum's matrix
        index = InfluenceIndex.load(influence_cache, res.key)  # closed-form query matrix G_train
        scores = index.scores(test.images[: row.n_test], test.labels[: row.n_test])
        np.testing.assert_allclose(scores.T, matrix, atol=1e-5 * np.abs(matrix).max())
    # the paper's route on the same fine-tuned models stores the same matrices as the fast route
    assert main(["--cache", str(influence_cache), "influence", "--preset", "tiny", "--method", "reference",
                 "--no-progress"]) == 0
    results = CacheReader(influence_cache).influence_results()
    for run_key, group in results.groupby("run_key"):
        paths = group.set_index("method").matrix_path
        fast_m, ref_m = np.load(influence_cache / paths["fast"]), np.load(influence_cache / paths["reference"])
        assert np.abs(fast_m - ref_m).max() < 1e-5 * np.abs(ref_m).max(), run_key
    assert main(["--cache", str(influence_cache), "influence", "--run", "finetune-nope"]) == 2
    assert "no completed run 'finetune-nope'" in capsys.readouterr().err
    assert main(["--cache", str(influence_cache), "influence", "--method", "newton"]) == 2
    assert "valid choices" in capsys.readouterr().err


# --- a run's problem from the outside (issue 21, item 8) ----------------------------------------------------------
def _page_labels(root: Path) -> dict[str, str]:
    """Run key -> the run's label as the Influence page names it: the model as the page shows it ('l2_1.5 · paper
    analogue'), then the cell's subset label (app.pairing, what the page's subset selector is built from)."""
    from app.pairing import influence_cells

    reader = CacheReader(root)
    results = reader.influence_results()
    cells = influence_cells(results[results.method == "fast"], reader.source_roles().naturals)
    run_of = dict(zip(results.key, results.run_key, strict=True))
    return {run_of[key]: f"{cell.name(source)} · {cell.subset_label}"
            for cell in cells for source, key in cell.members}


def test_the_public_problem_gives_the_stored_matrix(influence_cache: Path) -> None:
    from compute.influence_problem import LOSS, find_run, influence_problem

    reader = CacheReader(influence_cache)
    labels = _page_labels(influence_cache)
    fast = reader.influence_results().query("method == 'fast'")
    assert len(labels) == len(fast) == 2
    for key in fast.key:
        row = reader.influence(key)
        run = find_run(influence_cache, labels[row.run_key])  # as the page names it, role included
        assert run == find_run(influence_cache, row.run_key) == find_run(influence_cache, str(run.label))
        assert run.key == row.run_key
        problem = influence_problem(run, influence_cache, n_test=row.n_test)
        assert problem.loss == LOSS and problem.classes == tuple(row.meta["classes"])
        np.testing.assert_array_equal(problem.train_indices, row.train_indices)
        np.testing.assert_array_equal(problem.train_labels.numpy(), row.train_labels)
        np.testing.assert_array_equal(problem.test_labels.numpy(), row.test_labels)
        fc, method = problem.fc_problem(), get_method("fast")
        matrix = method.matrix(fc, method.solve(fc, row.cutoff), problem.test_features, problem.test_labels)
        stored = np.load(reader.artefact(row.matrix_path))
        # the same float64 computation on the same machine, stored as float32: equal up to float32 rounding
        np.testing.assert_allclose(matrix.numpy(), stored, rtol=0, atol=1e-6 * np.abs(stored).max())


def test_cli_takes_the_label_a_page_shows(influence_cache: Path, capsys: pytest.CaptureFixture) -> None:
    from compute.cli import main

    labels = _page_labels(influence_cache)
    (run_key, label), (other_key, _) = sorted(labels.items())
    argv = ["--cache", str(influence_cache), "influence", "--preset", "tiny", "--method", "dense", "--no-progress"]
    assert main([*argv, "--run", label, "--run", other_key]) == 0
    out = capsys.readouterr().out
    assert f"({run_key}) -> influence-" in out and f"({other_key}) -> influence-" in out and "computed" in out
    dense = CacheReader(influence_cache).influence_results().query("method == 'dense'")
    assert sorted(dense.run_key) == sorted([run_key, other_key])
    assert main([*argv, "--run", label]) == 0
    assert "already in the cache" in capsys.readouterr().out
    assert main(["--cache", str(influence_cache), "influence", "--list-runs"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert {line.split("\t")[1] for line in listed} >= set(labels)
    # an unknown label: one line naming valid labels and how to list them all; nothing computed
    wrong = re.sub(r"seed \d+", "seed 9", label)
    assert main([*argv, "--run", wrong]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{wrong!r}" in err and "rtx influence --list-runs" in err, err
    assert listed[0].split("\t")[0] in err
    # text that is no label at all is refused when the flag is parsed, with the format
    assert main([*argv, "--run", "l2_1.5 · digits · forty images"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run label" in err and "N images · seed S · B blocks" in err
