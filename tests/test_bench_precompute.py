"""bench/precompute.py prints every stage's time beside the machine and a baseline from the same run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compute.machine import cpu_model, describe
from compute.stages import stage_names

ROOT = Path(__file__).resolve().parent.parent


def test_machine_line_names_the_cpu_and_kernel_path() -> None:
    import torch

    line = describe()
    assert cpu_model() in line and cpu_model()
    assert torch.backends.cpu.get_cpu_capability() in line


@pytest.mark.slow
def test_bench_prints_stage_times_with_the_machine(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "bench/precompute.py", "--preset", "tiny", "--cache", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, check=True).stdout
    report = out[out.index("precompute --preset tiny on "):]
    assert cpu_model() in report
    assert "baseline: small ResNet training" in report and "images/s" in report
    for stage in (*stage_names(), "total"):
        assert any(line.split()[:1] == [stage] and line.rstrip().endswith(" s") for line in report.splitlines()), stage
    assert (tmp_path / "rtx.duckdb").exists()
