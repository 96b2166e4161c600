"""bench/gpu_finetune.py runs on a CPU at small sizes, importing nothing the GPU machine lacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    for row in ("naive", "engine-1 train-bn", "engine-R train-bn", "engine-R frozen-bn"):
        assert row in text
    assert "EXTRAPOLATED" in text and "bf16 peak: unknown for this device" in text
    assert "GFLOP per image at 64x64" in text
