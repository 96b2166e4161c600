"""Explorer render times on a demo-sized and a paper-sized cache (SYNTHETIC values, real schema).

Builds two caches with `CacheWriter` (the schema the precompute stages write) and times every page with
streamlit's AppTest (the page's Python run in-process: DuckDB aggregation, pandas, Altair spec building;
not the browser's drawing):
- demo-sized: the demo preset's grid (6 sources, 4 targets, 5 sizes, 3 seeds, 2 block settings = 360 runs),
  influence 400 x 500;
- paper-sized: the paper's grid (4 ResNet-50 sources x 4 block settings x 6 targets x 10 sizes x 15 seeds =
  14,400 runs, with learning curves on Table 4's schedule), influence 3,200 x 10,000 as in Section 6.
Accuracies are Table 7's numbers plus seed noise: they look like the paper but are made up. Per-run subset
indices are left out (the explorer never reads them; at paper size they would be about 1.4 GB).

`cold` = first render after a new snapshot (every st.cache_data read misses); `warm` = a rerun (cached).
Budgets: 2 s per page on the demo cache, 5 s on the paper-sized one. Usage: python bench/explorer.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from compute.cache import CacheWriter
from compute.data import paper_seeds
from compute.images import to_png
from compute.influence.derived import label_match_curve, top_k
from compute.paths import artefact_path, job_key, snapshot_path
from compute.records import (
    CurvePoint,
    FeatvizRecord,
    InfluenceRecord,
    RobustnessRecord,
    RunRecord,
    SourceRecord,
    ThumbnailRecord,
)
from compute.presets import paper_schedule

APP = Path(__file__).resolve().parents[1] / "app" / "explorer.py"
TABLE7 = Path(__file__).resolve().parents[1] / "assets" / "paper_table7.csv"
FULL = {"cifar100": 50_000, "cifar10": 50_000, "svhn": 73_257, "fmnist": 60_000, "kmnist": 60_000, "mnist": 60_000}
PAPER_SOURCES = (("natural", "none", 0, "natural"), ("l2_3", "l2:3", 20, "l2_eps3"),
                 ("linf_4", "linf:4/255", 20, "linf_eps4_255"), ("linf_8", "linf:8/255", 20, "linf_eps8_255"))
DEMO_SOURCES = (("natural", "none", 0, "natural"), ("l2_1.5", "l2:1.5", 3, "l2_eps3"),
                ("linf_0.1", "linf:0.1", 3, "linf_eps4_255"), ("linf_0.2", "linf:0.2", 3, "linf_eps8_255"),
                ("pgd1_l2_1.5", "l2:1.5", 1, "l2_eps3"), ("gaussian_0.054", "gaussian:0.054", 0, "natural"))


def _table7() -> dict[tuple[str, int, str], float]:
    wide = pd.read_csv(TABLE7, comment="#")
    long = wide.melt(id_vars=["target", "n_train"], var_name="model", value_name="pct")
    return {(r.target, int(r.n_train), r.model): r.pct / 100 for r in long.itertuples()}


def _base_acc(table: dict, target: str, n_train: int, model: str) -> float:
    """Table 7's accuracy for the nearest subset size of a paper target (synthetic targets fall back to mnist)."""
    paper_target = target if target in FULL else "mnist"
    sizes = sorted(n for (t, n, m) in table if t == paper_target and m == model)
    nearest = min(sizes, key=lambda n: abs(np.log(n) - np.log(n_train)))
    return table[(paper_target, nearest, model)]


def write_runs(writer: CacheWriter, arch: str, sources, targets, sizes, seeds: int, blocks, schedule) -> int:
    """Every (source, target, size, blocks, seed) run with a learning curve; returns the number of runs."""
    table, rng = _table7(), np.random.default_rng(0)
    for name, constraint, steps, _ in sources:
        writer.record_source_model(SourceRecord(name, arch, constraint, steps, "synthetic", f"synth-{name}",
                                                f"sources/{name}.safetensors", 0.7, 0.0, {"synthetic": True}))
    total = 0
    for target in targets:
        runs, curves = [], []
        for name, _, _, model in sources:
            for n_train in sizes(target):
                epochs, test_every = schedule(n_train)
                eval_at = sorted({*range(1, epochs + 1, test_every), epochs})
                for k in blocks:
                    base = _base_acc(table, target, n_train, model) - 0.01 * abs(k - 3) / 3
                    for seed in paper_seeds(seeds):
                        final = float(np.clip(base + rng.normal(0, 0.01), 0, 1))
                        key = job_key("finetune", {"synthetic": True, "source": name, "target": target, "n": n_train,
                                                   "blocks": k, "seed": seed})
                        runs.append(RunRecord(key, "done", name, target, n_train, seed, k, epochs, {"synthetic": True},
                                              final_test_acc=final, final_train_loss=0.1, wall_seconds=1.0,
                                              device="synthetic"))
                        curves.append([CurvePoint(e, final * (1 - 0.5 * np.exp(-e / (epochs / 8))), 1.0 / e)
                                       for e in eval_at[:-1]] + [CurvePoint(epochs, final, 1.0 / epochs)])
        writer.record_runs(runs, curves)
        total += len(runs)
    for name, constraint, *_ in sources:
        writer.record_robustness([RobustnessRecord(name, "synthetic", norm, eps, steps,
                                                   0.7 * (0.3 if constraint == "none" and norm != "none" else 1.0), 1000)
                                  for norm, eps, steps in (("none", 0.0, 0), ("l2", 3 / 32, 3))])
    return total


def write_influence(writer: CacheWriter, target: str, sources: tuple[str, str], n_train: int, n_test: int,
                    classes: int = 10) -> None:
    """A robust/natural pair on one subset: (n_train, n_test) float32 matrices, top-k, label match, thumbnails."""
    rng = np.random.default_rng(1)
    train_idx = np.sort(rng.choice(FULL.get(target, 4_000), n_train, replace=False))
    train_labels, test_labels = train_idx % classes, np.arange(n_test) % classes
    for name, strength in zip(sources, (1.0, 0.3), strict=True):
        matrix = rng.standard_normal((n_train, n_test), dtype=np.float32)
        matrix += strength * (train_labels[:, None] == test_labels[None, :])
        key = job_key("influence", {"synthetic": True, "source": name, "target": target})
        path = artefact_path(writer.root, "influence", key, "npy")
        np.save(path, matrix)
        top = top_k(matrix, 10)
        topk = pd.DataFrame({"influence_key": key, "test_pos": np.repeat(np.arange(n_test), 10),
                             "rank": np.tile(np.arange(10), n_test), "train_pos": top.positions.ravel(),
                             "score": top.scores.ravel()})
        run_key = writer.run_keys(name, target, n_train, 3)[0]
        match = label_match_curve(matrix, train_labels, test_labels).tolist()
        writer.record_influence(InfluenceRecord(
            key, run_key, "synthetic", 0.05, n_train, n_test, str(path.relative_to(writer.root)), None,
            train_idx.tolist(), list(range(n_test)), train_labels.tolist(), test_labels.tolist(), test_labels.tolist(),
            match, 0.0, {"synthetic": True}), topk)
        del matrix
    png = [to_png(rng.random((3, 32, 32))) for _ in range(classes)]  # one picture per label, reused
    writer.record_thumbnails([ThumbnailRecord(target, "train", int(i), int(i % classes), png[i % classes])
                              for i in train_idx])
    writer.record_thumbnails([ThumbnailRecord(target, "test", i, i % classes, png[i % classes]) for i in range(n_test)])
    writer.record_featviz([FeatvizRecord("featviz-synthetic", m, s, u, 64, 0.05, png[u], png[-1])
                           for m in sources for s in ("chelsea", "coffee", "rocket") for u in range(3)])


def build_demo(root: Path) -> int:
    with CacheWriter(root) as writer:
        n = write_runs(writer, "small_resnet", DEMO_SOURCES[:2], ("digits", "mnist5k+lowres(10)", "mnist5k+lowpass(400)"),
                       lambda t: (20, 50, 100, 200, 400), 3, (1, 3), lambda n: (20, 4))
        n += write_runs(writer, "small_resnet", DEMO_SOURCES, ("mnist5k",), lambda t: (20, 50, 100, 200, 400), 3, (1, 3),
                        lambda n: (20, 4))
        write_influence(writer, "mnist5k", ("l2_1.5", "natural"), 400, 500)
    return n


def build_paper(root: Path) -> int:
    def schedule(n: int) -> tuple[int, int]:
        s = paper_schedule(n)
        return s.epochs, s.test_every

    with CacheWriter(root) as writer:
        n = write_runs(writer, "resnet50", PAPER_SOURCES, tuple(FULL), lambda t: (100, 200, 400, 800, 1_600, 3_200, 6_400,
                                                                          12_800, 25_600, FULL[t]),
                       15, (0, 1, 3, 9), schedule)
        write_influence(writer, "cifar10", ("l2_3", "natural"), 3_200, 10_000)
    return n


def time_pages(root: Path) -> pd.DataFrame:
    """Cold and warm AppTest render seconds of every page on the cache at `root`."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app.explorer import PAGES

    os.environ["RTX_CACHE"] = str(root)
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    for path, _, _ in PAGES:  # warm-up pass: first-use costs of the process (imports, Altair schema) are not a page's
        at.switch_page(path).run()
    rows = []
    for path, title, _ in PAGES:
        st.cache_data.clear()
        t0 = time.perf_counter()
        at.switch_page(path).run()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.run()
        warm = time.perf_counter() - t0
        if at.exception:
            raise RuntimeError(f"{title}: {at.exception[0].value}")
        rows.append({"page": title, "cold_s": cold, "warm_s": warm})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the caches under this folder and keep them (reused if present)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import app.data, app.charts, app.paper, app.ui"], check=True,
                   capture_output=True)
    seconds = time.perf_counter() - t0
    print(f"one-off: a fresh Python importing the explorer's modules (streamlit, altair, duckdb, pandas) takes "
          f"{seconds:.1f} s; paid once per server, not in the timings below")
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        results = {}
        for name, build, budget in (("demo-sized", build_demo, 2.0), ("paper-sized", build_paper, 5.0)):
            root = base / name
            if not snapshot_path(root).exists():
                root.mkdir(parents=True, exist_ok=True)
                t0 = time.perf_counter()
                runs = build(root)
                print(f"built {name} SYNTHETIC cache: {runs:,} runs in {time.perf_counter() - t0:.1f} s at {root}")
            results[name] = time_pages(root).assign(budget_s=budget)
        demo, paper = results["demo-sized"], results["paper-sized"]
        table = demo[["page"]].assign(demo_cold_s=demo["cold_s"], demo_warm_s=demo["warm_s"],
                                      paper_cold_s=paper["cold_s"], paper_warm_s=paper["warm_s"],
                                      paper_over_demo=paper["cold_s"] / demo["cold_s"])
        print("\nAppTest render time per page (seconds; cold = new snapshot, caches empty; warm = rerun):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        over = [f"{r.page} ({n})" for n, f in results.items() for r in f.itertuples() if r.cold_s > r.budget_s]
        print("\nbudgets (2 s demo, 5 s paper, cold):", "all met" if not over else "OVER: " + ", ".join(over))


if __name__ == "__main__":
    main()
