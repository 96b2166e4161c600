"""bench/gpu_finetune.py runs on a CPU at small sizes, importing nothing the GPU machine lacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("duckdb", "streamlit", "gradio", "pandas")
# A meta-path finder whose modules fail to load, as on the GPU machine where these packages are absent. It answers
# find_spec (torch._dynamo probes optional packages with importlib.util.find_spec) but every import raises.
SITECUSTOMIZE = f"""
import importlib.machinery
import sys
class _Blocked:
    def create_module(self, spec):
        raise ModuleNotFoundError('blocked for the test: ' + spec.name, name=spec.name)
    def exec_module(self, module):
        pass
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            return importlib.machinery.ModuleSpec(name, _Blocked())
        return None
sys.meta_path.insert(0, _Block())
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_finetune.py"), *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_blocker_blocks(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "import pandas"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "blocked for the test" in out.stderr


@pytest.mark.slow
def test_quick_bench_runs_without_app_packages(tmp_path: Path) -> None:
    out = _run(tmp_path, "--quick", "--blocks", "3", "--device", "cpu")
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for row in ("naive | colour", "naive | grey", "engine-1 train-bn", "engine-R train-bn", "engine-R frozen-bn",
                "pil-augment"):
        assert row in text
    assert "EXTRAPOLATED" in text and "bf16 peak: unknown for this device" in text
    assert "GFLOP per image at 64x64" in text


def _bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_finetune", ROOT / "bench" / "gpu_finetune.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_finetune"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_row_that_runs_out_of_memory_is_recorded_and_the_next_runs() -> None:
    bench = _bench_module()

    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 30.00 GiB")

    row = bench._measured(9, "engine-R train-bn", "colour", 20, oom, torch.device("cpu"))
    assert row.status == "out of memory" and row.rate is None
    assert "| 9 | engine-R train-bn | colour | 20 | out of memory |" in row.table_line()
    with pytest.raises(ValueError):  # anything else is a bug, not a measurement
        bench._measured(9, "naive", "colour", 1, lambda: (_ for _ in ()).throw(ValueError("bug")), torch.device("cpu"))


def test_extrapolations_include_fixed_costs_and_name_what_is_missing(tmp_path: Path, capsys) -> None:
    bench = _bench_module()
    work = bench.GridWork(train=0.0, eval=0.0, cell_runs=(20, 5))
    rate = bench.Rate(train=100.0, eval=100.0, strategy="vmap", setup=10.0, fill=1.0)
    assert bench.hours(work, rate, runs=8) == pytest.approx((3 * 10 + 1 + 1 * 10 + 1) / 3600)  # groups of <= 8 runs
    log = bench.RowLog(str(tmp_path / "rows.jsonl"), {"device_name": "Test GPU", "line": "device: test"})
    log.add(bench.Row(0, "naive", "colour", 1, "ok", bench.Rate(50.0, 100.0)))
    log.add(bench.Row(0, "engine-R train-bn", "colour", 20, "ok", rate, probe=2.5))
    log.add(bench.Row(9, "engine-R train-bn", "colour", 20, "cut by the deadline"))
    meta, rows = bench.read_rows(str(tmp_path / "rows.jsonl"))
    assert meta["device_name"] == "Test GPU" and rows == log.rows
    capsys.readouterr()
    bench.extrapolate(rows, "Test GPU")
    text = capsys.readouterr().out
    assert "Test GPU-hours, EXTRAPOLATED" in text and "0 blocks 2.5 s" in text
    assert "Not measured: 9/engine-R train-bn/colour (cut by the deadline)" in text
    small = 20 * (100 * 100 / 100.0 + 6 * bench.TEST_SET / 100.0) + 11.0  # R runs' work plus set-up and fill
    assert f"{small:.0f}" in text


@pytest.mark.slow
def test_a_zero_deadline_cuts_every_row_and_says_so(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    out = _run(tmp_path, "--quick", "--blocks", "0", "9", "--device", "cpu", "--deadline", "0", "--rows", str(rows))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Cut by the 0 s deadline (16 rows)" in out.stdout and "9/engine-R train-bn/colour" in out.stdout
    assert rows.read_text().count("cut by the deadline") == 16


@pytest.mark.slow  # about 3 minutes on a busy 2-core CPU
def test_the_gpu_session_runs_end_to_end_in_quick_mode_within_its_deadline(tmp_path: Path) -> None:
    """`GPU_SESSION_QUICK=1 bash bench/gpu_session.sh all` with the GPU machine's packages only (duckdb, pandas,
    streamlit, gradio blocked): env line, `pytest -m gpu` (skipped here), rows until the deadline, extrapolations."""
    import time

    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out_dir = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "CUDA_VISIBLE_DEVICES": "", "GPU_SESSION_QUICK": "1",
           "GPU_SESSION_DEADLINE": "170", "OUT": str(out_dir), "PYTHON": sys.executable}
    start = time.monotonic()
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_session.sh"), "all"], env=env, capture_output=True,
                          text=True, timeout=400)
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-2000:]
    assert elapsed < 170 + 15, elapsed  # the deadline holds (15 s: the shell's own start and the last echo)
    files = {p.name for p in out_dir.iterdir()}
    assert {"env.txt", "gpu-tests.txt", "bench.txt", "rates.jsonl", "extrapolation.txt"} <= files
    assert "torch" in (out_dir / "env.txt").read_text()
    assert "skipped" in (out_dir / "gpu-tests.txt").read_text()
    assert "| any | pil-augment (1 process) |" in (out_dir / "bench.txt").read_text()
    assert "EXTRAPOLATED" in (out_dir / "extrapolation.txt").read_text()
