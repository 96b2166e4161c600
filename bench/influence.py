"""Influence speed: the fast exact route vs the paper's route (autograd Hessian + SVD), and on-demand query latency.

The paper's FC size (Section 6): 2,048 penultimate features, 10 classes, 3,200 fine-tuning and 10,000 test
images, so H has P = 10 x 2,049 = 20,490 rows. Features are synthetic but shaped like a fine-tuned ResNet's:
non-negative (ReLU), a low-dimensional class-dependent latent part mixed into all 2,048 units with decaying
strength, plus noise; the FC layer is fit to them by L-BFGS (train accuracy printed), so p is neither
uniform nor one-hot.

1. Paper's route vs fast route at d = 64 / 128 / 256 on the full 3,200 x 10,000 problem, both measured in
   this run (the fast route best of three), with the largest relative difference between their matrices.
2. At d = 2,048 only the fast route runs here (it hands the 18,441-dimensional reduced problem to the
   iterative solver); the paper's route at that size is an EXTRAPOLATION from the largest size of step 1
   (Hessian time ~ P^2, SVD ~ P^3, products with the dense pinv ~ P^2), printed as such.
3. Query latency: one new image -> forward pass + product with the stored query matrix, at demo size
   (small_resnet, 400 training images, 128 features) and at the paper's (ResNet-50 at 224 px, 3,200 x 2,049).
4. captum's ArnoldiInfluenceFunction (`--method arnoldi`) at demo size (400 train x 500 test, 128 features x 10
   classes): time against the fast route in the same run, and the Spearman rank correlation of its scores with
   the fast (exact) route's per test image, with the cut-off and with captum's fixed rank 50 alone.

    python bench/influence.py [--threads 2] [--sizes 64,128,256] [--skip-full] [--full-dense] [--cifar100]
    python bench/influence.py --arnoldi-only
"""

from __future__ import annotations

import compute  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch starts its threads)
import argparse
import os
import statistics
import time

import numpy as np
import torch

from app.influence_compare import spearman_per_test
from compute.influence import FCProblem, QueryMatrix, influence_fast, influence_scores
from compute.influence.arnoldi import arnoldi_query
from compute.influence_index import InfluenceIndex
from compute.influence.reference import autograd_gradients, autograd_hessian, svd_pinv
from compute.models import build_model

N_TRAIN, N_TEST, CLASSES, FEATURES = 3_200, 10_000, 10, 2_048
CUTOFF = 5e-2  # the authors' script


def synthetic_problem(d: int, n_train: int = N_TRAIN, n_test: int = N_TEST, classes: int = CLASSES,
                      latent: int = 48, seed: int = 0) -> tuple[FCProblem, torch.Tensor, torch.Tensor, float]:
    """ReLU features with class structure, and an FC layer fit to them (L-BFGS, light L2)."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    y = torch.randint(0, classes, (n,), generator=g)
    means = 1.5 * torch.randn(classes, latent, generator=g)
    u = means[y] + torch.randn(n, latent, generator=g)  # (n, latent) class-dependent latent code
    strength = 1.0 / torch.arange(1, latent + 1).float().sqrt()  # decaying spectrum
    mix = torch.randn(latent, d, generator=g) * strength[:, None] / latent**0.5
    z = (u @ mix + 0.3 * torch.randn(n, d, generator=g) + 0.2).relu()  # (n, d) non-negative, ~half zeros
    fc = torch.nn.Linear(d, classes)
    opt = torch.optim.LBFGS(fc.parameters(), max_iter=60, history_size=20)
    z_train, y_train = z[:n_train], y[:n_train]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(fc(z_train), y_train) + 1e-4 * fc.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        acc = float((fc(z_train).argmax(1) == y_train).float().mean())
    problem = FCProblem.create(z_train, y_train, fc.weight.detach(), fc.bias.detach())
    return problem, z[n_train:].double(), y[n_train:], acc


def paper_route(problem: FCProblem, z_test: torch.Tensor, y_test: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The paper's route, timed per part: autograd Hessian (batches of 5), SVD pinv, autograd gradients."""
    t0 = time.perf_counter()
    hessian = autograd_hessian(problem)
    t1 = time.perf_counter()
    pinv, _, _ = svd_pinv(hessian, CUTOFF)
    t2 = time.perf_counter()
    g_train = autograd_gradients(problem, problem.features, problem.labels)
    g_test = autograd_gradients(problem, z_test, y_test)
    matrix = (g_train @ pinv) @ g_test.T
    t3 = time.perf_counter()
    return matrix, {"hessian": t1 - t0, "svd": t2 - t1, "grads+matrix": t3 - t2, "total": t3 - t0}


def fast_route(problem: FCProblem, z_test: torch.Tensor, y_test: torch.Tensor,
               dense_limit: int | None = None) -> tuple[torch.Tensor, dict, str, int]:
    t0 = time.perf_counter()
    query = influence_fast(problem, CUTOFF) if dense_limit is None else influence_fast(problem, CUTOFF, dense_limit)
    t1 = time.perf_counter()
    matrix = influence_scores(query, z_test, y_test)
    t2 = time.perf_counter()
    return matrix, {"solve": t1 - t0, "matrix": t2 - t1, "total": t2 - t0}, query.route, query.rank


def query_latency(arch: str, n_train: int, classes: int, repeats: int = 20) -> dict[str, float]:
    """Median seconds of one InfluenceIndex.query on one image, and of its two parts (forward, product)."""
    model = build_model(arch, classes, seed=0).eval()
    d_aug = model.num_features + 1
    rng = np.random.default_rng(0)
    fc = model.fc
    stored = {"query": rng.standard_normal((n_train, classes, d_aug)).astype(np.float32),
              "weight": fc.weight.detach().numpy(), "bias": fc.bias.detach().numpy()}
    query = QueryMatrix.from_arrays(stored)  # the dense layout, as the stage stores it at these sizes
    index = InfluenceIndex("bench", "run", "src", "target", "fast", tuple(map(str, range(classes))), 3,
                           model.input_size, model, query, np.arange(n_train), rng.integers(0, classes, n_train),
                           torch.device("cpu"))
    image = torch.rand(1, 3, model.input_size, model.input_size)
    index.query(image, k=5)  # warm-up
    times: dict[str, list[float]] = {"query": [], "forward": [], "product": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        index.query(image, k=5)
        t1 = time.perf_counter()
        _, z, probs = index._forward(image)
        t2 = time.perf_counter()
        index._scores(z, probs, probs.argmax(1))
        t3 = time.perf_counter()
        times["query"].append(t1 - t0)
        times["forward"].append(t2 - t1)
        times["product"].append(t3 - t2)
    return {**{k: statistics.median(v) for k, v in times.items()}, "mib": stored["query"].nbytes / 2**20}


def arnoldi_rows(threads: int) -> None:
    """Section 4: captum Arnoldi vs the fast route at demo size (both measured here, best of three)."""
    problem, z_test, y_test, acc = synthetic_problem(128, n_train=400, n_test=500)
    best = lambda fn: min((fn() for _ in range(3)), key=lambda r: r[1])  # noqa: E731  (result, seconds)

    def timed(solve):
        def run():
            t0 = time.perf_counter()
            query = solve()
            return (query, influence_scores(query, z_test, y_test)), time.perf_counter() - t0
        return run

    (fast_q, fast_m), fast_s = best(timed(lambda: influence_fast(problem, CUTOFF)))
    print(f"\n4. captum ArnoldiInfluenceFunction at demo size: 400 train x 500 test, d = 128, {CLASSES} classes "
          f"(MEASURED, best of 3, {threads} thread(s)); train acc {acc:.2f}")
    print(f"   fast route (exact): {fast_s:.2f} s, rank {fast_q.rank} above the cut-off {CUTOFF:g}")
    for label, cutoff in (("arnoldi, cut-off", CUTOFF), ("arnoldi, rank 50 (captum alone)", 0.0)):
        (query, matrix), seconds = best(timed(lambda c=cutoff: arnoldi_query(problem, c)))
        rho = spearman_per_test(matrix.numpy(), fast_m.numpy())
        print(f"   {label:<32} {seconds:5.2f} s ({seconds / fast_s:4.1f}x the fast route), rank {query.rank:>3}: "
              f"Spearman with fast {np.nanmean(rho):.4f} +- {np.nanstd(rho):.4f} over {len(rho)} test images")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, the target machine)")
    parser.add_argument("--sizes", default="64,128,256", help="feature sizes where both routes run")
    parser.add_argument("--skip-full", action="store_true", help="skip the d = 2,048 fast-route timing")
    parser.add_argument("--cifar100", action="store_true", help="also time 100 classes at d = 2,048 (iterative)")
    parser.add_argument("--full-dense", action="store_true",
                        help="also time the dense eigh at d = 2,048 (N = 18,441: minutes and 3 GB)")
    parser.add_argument("--arnoldi-only", action="store_true", help="only section 4 (captum Arnoldi at demo size)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.arnoldi_only:
        arnoldi_rows(args.threads)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    # Warm-up: first calls load LAPACK kernels and torch's forward-AD decompositions (seconds, once per process).
    problem, z_test, y_test, _ = synthetic_problem(16, n_train=50, n_test=50)
    paper_route(problem, z_test, y_test)
    fast_route(problem, z_test, y_test)
    fast_route(problem, z_test, y_test, dense_limit=10)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cut-off {CUTOFF:g}, "
          f"{N_TRAIN} train x {N_TEST} test, {CLASSES} classes; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores (other processes slow both routes alike)\n")

    print("1. paper's route vs fast route (both MEASURED, same problem, same run)")
    header = (f"{'d':>5} {'P':>6} {'acc':>5} | {'paper: hessian':>14} {'svd':>7} {'grads':>7} {'total':>8} | "
              f"{'fast: solve':>11} {'matrix':>7} {'total':>7} | {'speed-up':>8} {'rel.diff':>9} {'rank':>5}")
    print(header)
    print("-" * len(header))
    fits = []
    for d in sizes:
        problem, z_test, y_test, acc = synthetic_problem(d)
        fast_matrix, fast, _, rank = fast_route(problem, z_test, y_test)
        paper_matrix, paper = paper_route(problem, z_test, y_test)
        for _ in range(2):  # best of three for the short fast route (other processes share the CPU)
            again = fast_route(problem, z_test, y_test)[1]
            fast = again if again["total"] < fast["total"] else fast
        diff = float((fast_matrix - paper_matrix).abs().max() / paper_matrix.abs().max())
        p = CLASSES * (d + 1)
        fits.append((p, paper["hessian"], paper["svd"], paper["grads+matrix"]))
        print(f"{d:>5} {p:>6} {acc:>5.2f} | {paper['hessian']:>13.1f}s {paper['svd']:>6.1f}s "
              f"{paper['grads+matrix']:>6.1f}s {paper['total']:>7.1f}s | {fast['solve']:>10.2f}s {fast['matrix']:>6.2f}s "
              f"{fast['total']:>6.2f}s | {paper['total'] / fast['total']:>7.0f}x {diff:>9.1e} {rank:>5}")

    p_full = CLASSES * (FEATURES + 1)
    est = float("nan")
    if fits:
        # Anchor on the largest measured size: the Hessian has P^2 entries (P forward-mode passes of O(P) each
        # per batch), the SVD costs P^3, the products with the dense pinv P^2.
        p_max, hess, svd, rest = max(fits)
        scale = p_full / p_max
        est = hess * scale**2 + svd * scale**3 + rest * scale**2
        print(f"\n   paper's route at d = {FEATURES} (P = {p_full}): EXTRAPOLATED from P = {p_max} (not run): "
              f"Hessian {hess * scale**2 / 3600:.2f} h + SVD {svd * scale**3 / 3600:.2f} h + gradients/products "
              f"{rest * scale**2 / 60:.1f} min = {est / 3600:.1f} h; a dense H alone is {p_full**2 * 8 / 2**30:.1f} GiB")

    if not args.skip_full:
        print(f"\n2. fast route at the paper's size, d = {FEATURES} (MEASURED)")
        problem, z_test, y_test, acc = synthetic_problem(FEATURES)
        _, fast, route, rank = fast_route(problem, z_test, y_test)
        print(f"   train acc {acc:.2f}; route {route}, {rank} eigen-directions above the cut-off; "
              f"solve {fast['solve']:.1f} s + 3,200 x 10,000 matrix {fast['matrix']:.1f} s = {fast['total']:.1f} s")
        if est == est:
            print(f"   vs the paper's route (extrapolated): {est / fast['total']:.0f}x")
        if args.full_dense:
            _, dense, route, rank = fast_route(problem, z_test, y_test, dense_limit=10**9)
            print(f"   dense eigh variant ({route}, rank {rank}): solve {dense['solve']:.1f} s, total {dense['total']:.1f} s")

    if args.cifar100:
        print("\n2b. 100 classes (CIFAR-100's FC: P = 204,900), d = 2,048, 3,200 train x 1,000 test (MEASURED)")
        problem, z_test, y_test, acc = synthetic_problem(FEATURES, n_test=1_000, classes=100)
        _, fast, route, rank = fast_route(problem, z_test, y_test)
        print(f"   train acc {acc:.2f}; route {route}, {rank} eigen-directions above the cut-off; "
              f"solve {fast['solve']:.1f} s + matrix {fast['matrix']:.1f} s = {fast['total']:.1f} s")

    print("\n3. on-demand query latency, one image, median of 20 (MEASURED); 1 thread too, because OpenMP's")
    print("   2-thread barriers cost milliseconds per small op once other processes oversubscribe the cores")
    for label, arch, n_train, goal in (("demo size", "small_resnet", 400, 0.1), ("paper size", "resnet50", 3_200, 1.0)):
        for threads in sorted({1, args.threads}):
            torch.set_num_threads(threads)
            t = query_latency(arch, n_train, CLASSES)
            verdict = "ok" if t["query"] < goal else "over"
            print(f"   {label:<10} {arch:<12} {n_train:>5} train, {threads} thread(s), query matrix {t['mib']:6.1f} MiB: "
                  f"query {t['query'] * 1e3:7.1f} ms = forward {t['forward'] * 1e3:7.1f} ms + product "
                  f"{t['product'] * 1e3:6.2f} ms; goal < {goal * 1e3:.0f} ms: {verdict}")
    torch.set_num_threads(args.threads)
    arnoldi_rows(args.threads)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
