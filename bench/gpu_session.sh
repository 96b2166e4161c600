#!/usr/bin/env bash
# The whole GPU session in ONE device call (the device tool: /work/.library/device/README.md):
#     run(command="bash bench/gpu_session.sh all", timeout_s=560)
# A GPU comes for about 15 minutes in all, 1-2 of them to start it, and it is released 30 s after each command,
# so everything happens in this one command, inside an internal deadline (GPU_SESSION_DEADLINE, 480 s):
#   1. env.txt: the device, driver, python, torch, torchvision;
#   2. gpu-tests.txt: `pytest -m gpu` first (correctness before speed): tests/test_engine_gpu.py, which needs no
#      conftest and no duckdb (the GPU machine has torch, torchvision, numpy, tqdm and pytest, not duckdb);
#   3. bench.txt + rates.jsonl: bench/gpu_finetune.py at full size, blocks 0 and 9 first, then 3, then 1 as time
#      allows; each row guarded against out-of-memory and appended to rates.jsonl as it is measured; rows the
#      deadline cuts are named;
#   4. extrapolation.txt: whole runs and the paper's grid in device-hours from whatever rows were measured
#      (a separate process: it runs even when the measurement was killed).
# Everything lands in $OUT (the device tool brings it back; /tmp/gpu_out when unset). Paste bench.txt's
# `### <device>` table into bench/RESULTS.md with the date. Nothing is installed.
#     GPU_SESSION_QUICK=1 bash bench/gpu_session.sh all     # the same path at CPU sizes (--quick), to try it here
#     bash bench/gpu_session.sh compile                     # extra, if device time is left: does --compile pay?
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}  # the project venv when there is one
DEADLINE=${GPU_SESSION_DEADLINE:-480}
START=$(date +%s)
QUICK=${GPU_SESSION_QUICK:+--quick}
left() { echo $((DEADLINE - ($(date +%s) - START))); }

case "${1:-}" in
all)
    {
        date -u +"%Y-%m-%dT%H:%M:%SZ"
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 || true
        $PY -c "import sys, torch, torchvision; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| torchvision', torchvision.__version__, '| cuda', torch.version.cuda, torch.cuda.is_available(),
'|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
    } 2>&1 | tee "$OUT/env.txt"
    # 2. correctness first; at most 150 s of the deadline
    timeout $(( $(left) < 150 ? $(left) : 150 )) $PY -m pytest --noconftest -p no:cacheprovider -q -m gpu \
        -o addopts="-ra" tests/test_engine_gpu.py 2>&1 | tee "$OUT/gpu-tests.txt"
    echo "pytest exit: ${PIPESTATUS[0]}" | tee -a "$OUT/gpu-tests.txt"
    # 3. rates: no row starts later than 30 s before the deadline (the extrapolation's margin, with torch's import
    #    on a busy machine) or when the longest row so far would not end before it; the timeout is the backstop
    budget=$(( $(left) - 30 ))
    rm -f "$OUT/rates.jsonl"
    if (( budget > 30 )); then
        timeout "$budget" $PY bench/gpu_finetune.py $QUICK --blocks 0 9 3 1 --deadline $(( budget - 5 )) \
            --rows "$OUT/rates.jsonl" 2>&1 | tee "$OUT/bench.txt"
        status=${PIPESTATUS[0]}
        (( status == 124 )) && echo "bench: killed at the deadline; the rows above were kept" | tee -a "$OUT/bench.txt"
    else
        echo "bench: no time left after the tests (${budget} s): not run" | tee "$OUT/bench.txt"
    fi
    # 4. extrapolations from whatever was measured
    if [[ -s "$OUT/rates.jsonl" ]]; then
        $PY bench/gpu_finetune.py --extrapolate "$OUT/rates.jsonl" 2>&1 | tee "$OUT/extrapolation.txt"
    else
        echo "no rows measured: nothing to extrapolate" | tee "$OUT/extrapolation.txt"
    fi
    echo "session: $(( $(date +%s) - START )) s of the ${DEADLINE} s deadline; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
    ;;
compile)
    timeout $(( $(left) )) $PY bench/gpu_finetune.py --compile --blocks 3 9 $QUICK 2>&1 | tee "$OUT/compile.txt"
    ;;
*)
    echo "usage: bash bench/gpu_session.sh all|compile (see the top of this file)" >&2
    exit 2
    ;;
esac
