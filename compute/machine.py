"""One line naming the machine a figure was measured on: CPU model, cores, torch's kernel path, GPU if any.

A speed figure is only comparable with one measured on the same processor (float32 kernels and their speed
differ between AMD AVX2 and Intel AVX-512 machines), so every benchmark prints this line beside its numbers.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The processor's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def describe() -> str:
    """e.g. 'Intel(R) Xeon(R) Processor, 2 cores (AVX512 kernels), torch 2.14.1, load 0.4'."""
    parts = [f"{cpu_model()}, {os.cpu_count()} cores ({torch.backends.cpu.get_cpu_capability()} kernels)",
             f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name())
    if hasattr(os, "getloadavg"):  # other jobs on the machine slow every figure: say how busy it was
        parts.append(f"load {os.getloadavg()[0]:.1f}")
    return ", ".join(parts)
