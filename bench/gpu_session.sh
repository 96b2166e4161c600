#!/usr/bin/env bash
# Issue 11's GPU figures in as few device calls as possible (the device tool: /work/.library/device/README.md).
#
# The GPU machine has python3 with torch 2.11 / torchvision 0.26, pytest, pandas and safetensors, but no duckdb
# (tests/conftest.py and the sweep tests need it) and no network. So, on this machine, once:
#     bash bench/gpu_session.sh prepare          # duckdb's wheel for the device's Python 3.12 into .whl/ (ignored)
# then two device calls (each well inside the 10-minute limit), naming `.whl` in carry:
#     run(command="bash bench/gpu_session.sh bench", carry=[".whl"])   # bench/gpu_finetune.py at full size
#     run(command="bash bench/gpu_session.sh tests", carry=[".whl"])   # pytest -m gpu: engine on CUDA vs CPU
# and, with device time left, whether `--compile` pays (frozen-BatchNorm rows, eager vs compiled):
#     run(command="bash bench/gpu_session.sh compile")
# Each writes what it prints under $OUT (bench.txt, gpu-tests.txt, compile.txt, gpu.txt); paste bench.txt's `### <device>`
# table into bench/RESULTS.md with the date. GPU_SESSION_QUICK=1 runs `bench` at CPU sizes (to try this script).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

carried_wheels() {  # install what was carried, without the network; the device's own torch stays
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
}

case "${1:-}" in
prepare)
    exclude=$(git rev-parse --git-path info/exclude)  # ignored here, still carried by `carry`
    mkdir -p "$(dirname "$exclude")"
    grep -qx "/.whl/" "$exclude" 2>/dev/null || echo "/.whl/" >>"$exclude"
    version=$(.venv/bin/python -c "import duckdb; print(duckdb.__version__)") || { echo "run make setup first" >&2; exit 1; }
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "duckdb==$version"
    ls -l .whl
    ;;
bench)
    carried_wheels
    { nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true; } \
        | tee "$OUT/gpu.txt"
    python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
        | tee -a "$OUT/gpu.txt"
    timeout 560 python3 bench/gpu_finetune.py ${GPU_SESSION_QUICK:+--quick --blocks 0} 2>&1 | tee "$OUT/bench.txt"
    ;;
compile)
    timeout 560 python3 bench/gpu_finetune.py --compile --blocks 3 9 ${GPU_SESSION_QUICK:+--quick} 2>&1 \
        | tee "$OUT/compile.txt"
    ;;
tests)
    carried_wheels
    timeout 560 python3 -m pytest -q -p no:cacheprovider -m gpu -o addopts="-ra" \
        tests/test_engine.py tests/test_sweep_engine.py 2>&1 | tee "$OUT/gpu-tests.txt"
    ;;
*)
    echo "usage: bash bench/gpu_session.sh prepare|bench|tests|compile (see the top of this file)" >&2
    exit 2
    ;;
esac
