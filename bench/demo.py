"""Demo latency: how long an upload takes to answer, through the Python function and through the API.

Each of N uploads (the target's stored test images as PNG files, plus the shipped photos in assets/seeds/
when present) is answered four ways, all in this process:

- `query`:  the `InfluenceIndex.query` calls alone, one per model of the default influence cell (2 or 3: the
  paper analogue, the best budget, natural; the baseline: the work that cannot be avoided)
- `decode`: `app.uploads.load_upload` alone (file -> tensor in the target's format)
- `python`: `app.demo.neighbours`, the whole function behind the UI (decode, every query, rendering)
- `client`: `gradio_client.Client.predict(..., api_name="/neighbours")` against the demo served on a free
  localhost port (queue, HTTP, pre/post-processing; output files are not downloaded)
- `floor`:  the same upload through gradio_client to a trivial endpoint (file in, one string out) on a
  second server: what Gradio's upload, queue and HTTP cost on their own
- `load`:   --load requests submitted at once through gradio_client, which downloads every result image (as a
  browser does): once all identical, once mixed over the uploads; p50/p95 of submit-to-answer latency, the
  number that failed and the number whose neighbours differ from the Python function's (issue 14: before the
  content-addressed result files, 41-63 of 100 identical requests failed)

- `server`: (--server-load N, instead of the above) the server's side of the load, measured as bench/explorer.py
  measures the explorer's: `rtx demo`'s process on its own clock (its CPU seconds from /proc, per answer), the
  gradio_client threads of this process in SCHED_IDLE (they get only what the server leaves: a stand-in for
  users' own machines), N requests mixed over the uploads submitted at once, every result image downloaded;
  answers/second = N over the wall time to the last answer, i.e. what the server sustains on this machine

    python bench/demo.py [--cache DIR] [--uploads 50] [--threads 1] [--load 100] [--server-load 200]

The target is 1 s per answer on 2 CPU cores for the demo cache (`rtx precompute --preset demo`).
"""

from __future__ import annotations

import compute  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch starts its threads)
import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

from app.demo import DemoBackend, launch, neighbours
from app.demo.backend import PHOTO_SUFFIXES
from app.uploads import load_upload
from compute.cli import demo_command
from compute.featviz import SEEDS_DIR
from compute.paths import cache_dir
from explorer import _idle_priority, _process_cpu_seconds  # bench/explorer.py: the explorer bench's clocks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upload_files(backend: DemoBackend, target: str, n: int, folder: Path) -> list[Path]:
    """n files to upload: the target's test thumbnails, every tenth replaced by a shipped photo if any."""
    frame = backend.thumbs.get((target, "test"))
    if frame is None or frame.empty:
        raise SystemExit(f"the cache has no test thumbnails for {target}; run `rtx precompute --preset demo`")
    photos = [p for p in sorted(SEEDS_DIR.glob("*")) if p.suffix.lower() in PHOTO_SUFFIXES] if SEEDS_DIR.is_dir() else []
    files = []
    for i in range(n):
        if photos and i % 10 == 9:
            files.append(photos[(i // 10) % len(photos)])
            continue
        idx = frame.index[i % len(frame)]
        path = folder / f"test-{idx}.png"
        path.write_bytes(bytes(frame.at[idx, "png"]))
        files.append(path)
    return files


def gradio_floor(files: list[Path]) -> list[float]:
    """Seconds per upload through gradio_client to an endpoint that does nothing but answer."""
    import gradio as gr
    from gradio_client import Client, handle_file

    with gr.Blocks(analytics_enabled=False) as echo:
        image, text = gr.Image(type="filepath"), gr.Markdown()
        image.change(lambda value: "ok", image, text, api_name="echo", preprocess=False)
    echo.queue()
    port = free_port()
    echo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        client.predict(handle_file(str(files[0])), api_name="/echo")
        seconds = []
        for path in files:
            t0 = time.perf_counter()
            client.predict(handle_file(str(path)), api_name="/echo")
            seconds.append(time.perf_counter() - t0)
        return seconds
    finally:
        echo.close()


def neighbour_positions(details: dict) -> list[list[int]]:
    return [[n["train_pos"] for n in m["neighbours"]] for m in details["models"].values()]


def concurrent_load(url: str, label: str, files: list[Path], expected: dict[Path, dict], folder: Path
                    ) -> tuple[list[float], int, int]:
    """Submit every file at once; (seconds from submit to answer per success, failures, wrong answers)."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=str(folder))
    done: dict[int, float] = {}
    seconds, failed, wrong = [], 0, 0
    previous, tempfile.tempdir = tempfile.tempdir, str(folder)  # gradio_client stages each download in a new
    try:  # <tempdir>/<random hex>/ folder and leaves it behind: keep them in `folder`, not /tmp
        start = time.perf_counter()
        jobs = []
        for i, path in enumerate(files):
            job = client.submit(handle_file(str(path)), label, 5, "auto", api_name="/neighbours")
            job.future.add_done_callback(lambda _, i=i: done.setdefault(i, time.perf_counter()))
            jobs.append((i, path, job))
        for i, path, job in jobs:
            try:
                out = job.result(timeout=600)
            except Exception as err:  # noqa: BLE001  (count every failure)
                if not failed:
                    print(f"  first failed request: {type(err).__name__}: {str(err)[:200]}")
                failed += 1
                continue
            seconds.append(done.get(i, time.perf_counter()) - start)
            wrong += neighbour_positions(out[-1]) != neighbour_positions(expected[path])
    finally:
        tempfile.tempdir = previous
    return seconds, failed, wrong


def _serve(root: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`rtx demo`'s server process (python -m app.demo) over `root` on a free port; (process, base URL) once up."""
    port = free_port()
    proc = subprocess.Popen(demo_command(port), env={**os.environ, "RTX_CACHE": str(root)}, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the demo server exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}gradio_api/info", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the demo server did not answer within 300 s:\n{log.read_text()[-2000:]}")


def server_load(root: Path, label: str, files: list[Path], expected: dict[Path, dict], n: int, folder: Path,
                profile: Path | None = None) -> None:
    """The server's CPU per answer on its own clock and the answers/second it sustains, clients at idle priority;
    `profile`: py-spy's collapsed stacks of the server during the load (`--profile PATH`; needs ptrace rights)."""
    proc, url = _serve(root, folder / "server.log")
    spy = None
    try:
        _idle_priority(os.getpid())  # this process's threads, and (inherited) every client thread started below
        concurrent_load(url, label, files[:4], expected, folder / "warm")  # imports, first-request costs
        if profile:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(proc.pid), "-f",
                                    "raw", "-o", str(profile), "-r", "100", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu = _process_cpu_seconds(proc.pid)
        batch = [files[i % len(files)] for i in range(n)]
        seconds, failed, wrong = concurrent_load(url, label, batch, expected, folder / "load")
        cpu = _process_cpu_seconds(proc.pid) - cpu
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(timeout=60)
        proc.terminate()
        proc.wait(timeout=60)
    answered = len(seconds)
    wall = max(seconds) if seconds else float("nan")
    compute_part = statistics.mean(e["seconds"] for e in expected.values())
    print(f"server {n} requests at once (clients in SCHED_IDLE): {answered} answered, {failed} failed, {wrong} wrong; "
          f"server CPU {cpu:.1f} s = {cpu / max(1, answered):.3f} s per answer (the model part alone, in-process: "
          f"{compute_part:.3f} s); {answered / wall:.2f} answers/s here (last answer after {wall:.1f} s; "
          f"CPU-bound, {os.cpu_count()} cores would sustain {os.cpu_count() * answered / cpu:.1f}/s); "
          f"p50 {statistics.median(seconds):.1f} s, p95 {float(np.percentile(seconds, 95)):.1f} s from submit")


def summarise(name: str, seconds: list[float], baseline: float | None) -> str:
    median, p95 = statistics.median(seconds), float(np.percentile(seconds, 95))
    ratio = f"{median / baseline:6.2f}x" if baseline else "   1.00x"
    return f"{name:<8} median {median * 1e3:8.1f} ms   p95 {p95 * 1e3:8.1f} ms   max {max(seconds) * 1e3:8.1f} ms   {ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="cache directory (default $RTX_CACHE or ./cache)")
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--load", type=int, default=100, help="concurrent requests of the load test (0: skip it)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, as the demo server runs: 2 requests at once on 2 cores)")
    parser.add_argument("--server-load", type=int, default=0,
                        help="instead of the other measurements: N requests at once to `rtx demo` in its own process, "
                             "measured on the server's clock with the clients at idle priority")
    parser.add_argument("--profile", type=Path, help="with --server-load: py-spy's collapsed stacks of the server here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.cache or cache_dir()
    start = time.perf_counter()
    backend = DemoBackend.open(root)
    if backend.empty:
        raise SystemExit(f"no influence results in {root}; run `rtx precompute --preset demo` first")
    cell = backend.default
    print(f"cache {root}; cell {cell.label} ({len(cell.sides)} models: {', '.join(s.source for s in cell.sides)}); "
          f"start-up (load + warm) {time.perf_counter() - start:.2f} s; torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        files = upload_files(backend, cell.target, args.uploads, Path(tmp))
        photos = sum(1 for f in files if not f.name.startswith("test-"))
        print(f"{len(files)} uploads: {len(files) - photos} stored test images, {photos} photos")
        fmt = backend.target_format(cell)
        if args.server_load:
            expected = {path: neighbours(backend, str(path), cell.label, 5).details for path in files}
            server_load(root, cell.label, files, expected, args.server_load, Path(tmp), args.profile)
            return
        times: dict[str, list[float]] = {"query": [], "decode": [], "python": [], "client": []}
        answers = []
        for path in files:
            t0 = time.perf_counter()
            prepared = load_upload(path, fmt)
            t1 = time.perf_counter()
            for side in cell.sides:
                backend.index(side.key).query(prepared.batch, k=5)
            t2 = time.perf_counter()
            out = neighbours(backend, str(path), cell.label, 5)
            t3 = time.perf_counter()
            times["decode"].append(t1 - t0)
            times["query"].append(t2 - t1)
            times["python"].append(t3 - t2)
            answers.append(out.details)

        from gradio_client import Client, handle_file

        times["floor"] = gradio_floor(files)
        port = free_port()
        demo = launch(root, port=port, block=False, backend=backend)
        torch.set_num_threads(args.threads)  # launch() sets the server's own count; keep the one asked for
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
            client.predict(handle_file(str(files[0])), cell.label, 5, "auto", api_name="/neighbours")  # warm
            mismatches = 0
            load: dict[str, tuple[list[float], int, int]] = {}
            for path, expected in zip(files, answers, strict=True):
                t0 = time.perf_counter()
                out = client.predict(handle_file(str(path)), cell.label, 5, "auto", api_name="/neighbours")
                times["client"].append(time.perf_counter() - t0)
                mismatches += neighbour_positions(out[-1]) != neighbour_positions(expected)
            expected_of = dict(zip(files, answers, strict=True))
            for mode, batch in (("identical", [files[0]] * args.load), ("mixed", [files[i % len(files)]
                                                                                  for i in range(args.load)])):
                if args.load:
                    seconds, failed, wrong = concurrent_load(f"http://127.0.0.1:{port}/", cell.label, batch,
                                                             expected_of, Path(tmp) / f"load-{mode}")
                    load[mode] = (seconds, failed, wrong)
        finally:
            demo.close()

    baseline = statistics.median(times["query"])
    for name in ("query", "decode", "python", "floor", "client"):
        print(summarise(name, times[name], None if name == "query" else baseline))
    worst = float(np.percentile(times["client"], 95))
    print(f"API answers identical to the Python function's: {len(files) - mismatches}/{len(files)}; "
          f"p95 through the API {worst:.3f} s ({'within' if worst < 1.0 else 'OVER'} the 1 s target)")
    for mode, (seconds, failed, wrong) in load.items():
        p50, p95 = (statistics.median(seconds), float(np.percentile(seconds, 95))) if seconds else (np.nan, np.nan)
        print(f"load {mode:<9} {args.load} at once: p50 {p50:6.2f} s   p95 {p95:6.2f} s   "
              f"({p95 / baseline:,.0f}x one query)   failed {failed}   wrong answers {wrong}")


if __name__ == "__main__":
    main()
