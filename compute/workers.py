"""Worker processes for CPU-bound stages: one torch thread each, results streamed back to the driver.

Why processes: the models of the demo are small, and their convolutions do not get faster with a second
torch thread on a CPU (measured on 2 cores: 8.7 ms per fine-tuning step with 1 thread, 9.4 ms with 2),
while two processes run side by side at full speed. The driver (the only process that writes the cache)
receives each result as it finishes; Ctrl-C terminates the workers, and a worker whose driver was
killed (kill -9) exits within a second. Workers that die while starting (before their first item: e.g. a
`shared` object that cannot be rebuilt in a new process) would be replaced by the pool forever; after
`START_FAILURES` such deaths the remaining items come back as errors saying so.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

# fn(item, shared, report) -> result; report(label, epochs_done, epochs) shows the item's progress in the driver.
Report = Callable[[str, int, int], None]
Task = Callable[[Any, Any, Report], Any]

# Worker-process state, set once per process by `_init`.
_STATE: dict[str, Any] = {}
START_FAILURES = 3  # workers that die before their first item, after which process_map gives up


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def process_map(task: Task, items: Iterable[Any], workers: int, shared: Any = None,
                progress: bool = True) -> Iterator[tuple[Any, Any]]:
    """Yield (item, result or exception) as `workers` spawned processes finish `task(item, shared, report)`.

    Items are handed out in order. `task` must be a module-level function; `shared` (e.g. the source
    models) is sent once per worker. Exceptions raised by `task` are returned, not raised, so the caller
    can record a failure and go on; so is a RuntimeError for an item whose worker process died under it.
    """
    items = list(items)
    ctx = mp.get_context("spawn")  # not fork: the driver's torch/OpenMP threads must not be forked
    messages = ctx.Queue()
    pool = ctx.Pool(max(1, min(workers, len(items))), _init, (task, shared, messages))
    bars: dict[int, tqdm] = {}
    running: dict[int, int] = {}  # worker pid -> index of the item it is on
    started: set[int] = set()  # pids of workers that took an item
    workers_seen: dict[int, Any] = {}  # pid -> the pool's Process object, every worker the pool has started
    pending = set(range(len(items)))
    try:
        results = pool.imap_unordered(_call, list(enumerate(items)), chunksize=1)
        while pending:
            _read_messages(messages, bars, running, pending, progress)
            started.update(running)
            try:
                index, outcome = results.next(timeout=0.2)
            except mp.TimeoutError:
                for index in _lost(running, pending):
                    pending.discard(index)
                    yield items[index], RuntimeError("its worker process died while running it (killed, out of "
                                                     "memory or crashed); the sweep went on without it")
                failed = _failed_starts(pool, workers_seen, started)
                if len(failed) >= START_FAILURES:
                    codes = ", ".join(str(code) for code in sorted(set(failed)))
                    error = RuntimeError(f"worker processes died while starting ({len(failed)} times, exit code "
                                         f"{codes}), before taking any item; run with --workers 1 to see the error "
                                         "in this process")
                    for index in sorted(pending):
                        yield items[index], error
                    return
                continue
            pending.discard(index)
            yield items[index], outcome
        pool.close()
    finally:
        pool.terminate()
        pool.join()
        for bar in bars.values():
            bar.close()


def _lost(running: dict[int, int], pending: set[int]) -> list[int]:
    """Items whose worker process is gone: the pool replaces the worker but would never return their result."""
    lost = []
    for pid, index in list(running.items()):
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as fh:  # a dead worker not yet reaped is a zombie ("Z")
                alive = fh.read().rsplit(")", 1)[1].split()[0] != "Z"
        except ProcessLookupError:
            alive = False
        except OSError:  # no /proc (not Linux): os.kill succeeding is all we know
            alive = True
        if not alive:
            del running[pid]
            if index in pending:
                lost.append(index)
    return lost


def _failed_starts(pool: Any, seen: dict[int, Any], started: set[int]) -> list[int]:
    """Exit codes of the pool's workers that exited without ever taking an item.

    Reads the pool's list of worker processes (`Pool._pool`, the only place the pool keeps them) into `seen`,
    so workers it has already replaced are still counted."""
    seen.update((worker.pid, worker) for worker in list(getattr(pool, "_pool", [])) if worker.pid is not None)
    return [w.exitcode for pid, w in seen.items() if w.exitcode is not None and pid not in started]


def _init(task: Task, shared: Any, messages: Any) -> None:
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and terminates the pool
    _STATE.update(task=task, shared=shared, messages=messages)
    threading.Thread(target=_exit_with_driver, args=(os.getppid(),), daemon=True).start()


def _exit_with_driver(driver: int) -> None:
    while os.getppid() == driver:
        time.sleep(1.0)
    os._exit(1)


def _call(indexed: tuple[int, Any]) -> tuple[int, Any]:
    index, item = indexed
    pid, messages = os.getpid(), _STATE["messages"]
    messages.put((pid, index, None, 0, 0))

    def report(label: str, done: int, total: int) -> None:
        messages.put((pid, index, label, done, total))

    try:
        return index, _STATE["task"](item, _STATE["shared"], report)
    except Exception as err:  # returned to the driver, which records it and goes on
        try:
            pickle.dumps(err)
        except Exception:
            err = RuntimeError(f"{type(err).__name__}: {err}")
        return index, err


def _read_messages(messages: Any, bars: dict[int, tqdm], running: dict[int, int], pending: set[int],
                   enabled: bool) -> None:
    """Drain the workers' messages: which item each worker is on, and one progress bar per worker."""
    while True:
        try:
            pid, index, label, done, total = messages.get_nowait()
        except queue.Empty:
            return
        if index in pending:
            running[pid] = index
        if not enabled or label is None:
            continue
        if pid not in bars:
            bars[pid] = tqdm(total=total, desc=label, unit="ep", leave=False, position=1 + len(bars))
        bar = bars[pid]
        if bar.desc != label or bar.total != total or done < bar.n:
            bar.reset(total=total)
            bar.set_description_str(label, refresh=False)
        bar.update(done - bar.n)
