"""A writer process for cache tests: records `count` runs, one every `delay` seconds, then exits."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from compute.cache import CacheWriter


def main(root: str, count: int, delay: float) -> None:
    with CacheWriter(Path(root), publish_every=0.0) as writer:
        for i in range(count):
            run = {"key": f"run{i}", "status": "done", "source": "natural", "target": "t", "n_train": 10, "seed": i,
                   "blocks": 1, "epochs": 3, "config": {"i": i}, "subset_indices": list(range(10)),
                   "final_test_acc": 0.5}
            curve = [{"epoch": e, "test_acc": 0.1 * e, "train_loss": 1.0 / e} for e in (1, 2, 3)]
            writer.record_run(run, curve)
            print(f"recorded {i}", flush=True)
            time.sleep(delay)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
