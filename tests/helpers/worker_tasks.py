"""Module-level tasks for compute.workers.process_map tests (spawned workers import them by name)."""

from __future__ import annotations

import os
import time

from compute.workers import Report


def scale(item: int, factor: int, report: Report) -> int:
    report(f"item {item}", 1, 1)
    if item == 2:
        raise ValueError("item 2 is bad")
    return item * factor


def die_on(item: int, fatal: int, report: Report) -> int:
    """Like a worker killed by the OOM killer: the process vanishes without returning."""
    if item == fatal:
        time.sleep(0.3)  # long enough for the driver to learn which item this worker is on
        os._exit(9)
    return item


def _refuse_outside(driver: int) -> int:
    if os.getpid() != driver:
        raise RuntimeError("cannot be rebuilt in a worker process")
    return driver


class BreaksInWorkers:
    """A `shared` object that unpickles in the driver but not in a spawned worker: every worker dies starting."""

    def __reduce__(self) -> tuple:
        return _refuse_outside, (os.getpid(),)
