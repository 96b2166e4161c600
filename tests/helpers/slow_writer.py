"""A writer process for cache tests: records `count` runs, one every `delay` seconds, then exits."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from compute.cache import CacheWriter
from compute.records import CurvePoint, RunRecord


def main(root: str, count: int, delay: float) -> None:
    with CacheWriter(Path(root), publish_every=0.0) as writer:
        for i in range(count):
            run = RunRecord(f"run{i}", "done", "natural", "t", 10, i, 1, 3, {"i": i}, tuple(range(10)), final_test_acc=0.5)
            curve = [CurvePoint(e, 0.1 * e, 1.0 / e) for e in (1, 2, 3)]
            writer.record_run(run, curve)
            print(f"recorded {i}", flush=True)
            time.sleep(delay)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
