"""Explorer render times on a demo-sized and a paper-sized cache (SYNTHETIC values, real schema).

Builds two caches with `CacheWriter` (the schema the precompute stages write) and times every page with
streamlit's AppTest (the page's Python run in-process: DuckDB aggregation, pandas, Altair spec building;
not the browser's drawing):
- demo-sized: the demo preset's grid (6 sources, 4 targets, 5 sizes, 3 seeds, 2 block settings = 360 runs),
  influence 400 x 500;
- paper-sized: the paper's grid (4 ResNet-50 sources x 4 block settings x 6 targets x 10 sizes x 15 seeds =
  14,400 runs, with learning curves on Table 4's schedule), influence 3,200 x 10,000 as in Section 6.
Accuracies are Table 7's numbers plus seed noise: they look like the paper but are made up. Per-run subset
indices are left out (the explorer never reads them; at paper size they would be about 1.4 GB).

`cold` = first render after a new snapshot (every st.cache_data read misses); `warm` = a rerun (cached).
Budgets: 2 s per page on the demo cache, 5 s on the paper-sized one. Usage: python bench/explorer.py

`--sessions 10 [--cache DIR]`: the served explorer under load instead (issue 14). `rtx explore` on a copy of DIR
(default: a fresh demo-sized synthetic cache) while a writer process records a run every `--write-every` s
into the same cache (publishing a snapshot at most once a second: `rtx precompute`'s `CacheWriter`); N headless Chromium sessions
open at once, each visits every page through the sidebar (round 1: the first load of each page), then every
page again (round 2). Per page, p50/p95/max over the sessions of two times: the server's answer (from a page
request's arrival to the end of its run, on the server's own clock: bench/server_clock) and the drawing (from the
click to the page's title and first chart or image in the browser); the Streamlit exception elements seen; where
the CPU went. Budget: 2 s. `--browsers shared idle` (default both): one run with Chromium and Playwright at the
server's priority, one with them in SCHED_IDLE (they get only what the server and the writer leave: a stand-in for
browsers on their users' own machines, which this 2-core box cannot provide).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from compute.cache import CacheWriter
from compute.data import paper_seeds
from compute.images import to_png
from compute.influence.derived import label_match_curve, top_k
from compute.paths import artefact_path, job_key, snapshot_path
from compute.records import (
    CurvePoint,
    FeatvizRecord,
    InfluenceRecord,
    RobustnessRecord,
    RunRecord,
    SourceRecord,
    ThumbnailRecord,
)
from compute.presets import paper_schedule

APP = Path(__file__).resolve().parents[1] / "app" / "explorer.py"
SERVER_CLOCK = Path(__file__).resolve().parent / "server_clock"
TABLE7 = Path(__file__).resolve().parents[1] / "assets" / "paper_table7.csv"
FULL = {"cifar100": 50_000, "cifar10": 50_000, "svhn": 73_257, "fmnist": 60_000, "kmnist": 60_000, "mnist": 60_000}
PAPER_SOURCES = (("natural", "none", 0, "natural"), ("l2_3", "l2:3", 20, "l2_eps3"),
                 ("linf_4", "linf:4/255", 20, "linf_eps4_255"), ("linf_8", "linf:8/255", 20, "linf_eps8_255"))
DEMO_SOURCES = (("natural", "none", 0, "natural"), ("l2_1.5", "l2:1.5", 3, "l2_eps3"),
                ("linf_0.1", "linf:0.1", 3, "linf_eps4_255"), ("linf_0.2", "linf:0.2", 3, "linf_eps8_255"),
                ("pgd1_l2_1.5", "l2:1.5", 1, "l2_eps3"), ("gaussian_0.054", "gaussian:0.054", 0, "natural"))


def _table7() -> dict[tuple[str, int, str], float]:
    wide = pd.read_csv(TABLE7, comment="#")
    long = wide.melt(id_vars=["target", "n_train"], var_name="model", value_name="pct")
    return {(r.target, int(r.n_train), r.model): r.pct / 100 for r in long.itertuples()}


def _base_acc(table: dict, target: str, n_train: int, model: str) -> float:
    """Table 7's accuracy for the nearest subset size of a paper target (synthetic targets fall back to mnist)."""
    paper_target = target if target in FULL else "mnist"
    sizes = sorted(n for (t, n, m) in table if t == paper_target and m == model)
    nearest = min(sizes, key=lambda n: abs(np.log(n) - np.log(n_train)))
    return table[(paper_target, nearest, model)]


def write_runs(writer: CacheWriter, arch: str, sources, targets, sizes, seeds: int, blocks, schedule) -> int:
    """Every (source, target, size, blocks, seed) run with a learning curve; returns the number of runs."""
    table, rng = _table7(), np.random.default_rng(0)
    for name, constraint, steps, _ in sources:
        writer.record_source_model(SourceRecord(name, arch, constraint, steps, "synthetic", f"synth-{name}",
                                                f"sources/{name}.safetensors", 0.7, 0.0, {"synthetic": True}))
    total = 0
    for target in targets:
        runs, curves = [], []
        for name, _, _, model in sources:
            for n_train in sizes(target):
                epochs, test_every = schedule(n_train)
                eval_at = sorted({*range(1, epochs + 1, test_every), epochs})
                for k in blocks:
                    base = _base_acc(table, target, n_train, model) - 0.01 * abs(k - 3) / 3
                    for seed in paper_seeds(seeds):
                        final = float(np.clip(base + rng.normal(0, 0.01), 0, 1))
                        key = job_key("finetune", {"synthetic": True, "source": name, "target": target, "n": n_train,
                                                   "blocks": k, "seed": seed})
                        runs.append(RunRecord(key, "done", name, target, n_train, seed, k, epochs, {"synthetic": True},
                                              final_test_acc=final, final_train_loss=0.1, wall_seconds=1.0,
                                              device="synthetic"))
                        curves.append([CurvePoint(e, final * (1 - 0.5 * np.exp(-e / (epochs / 8))), 1.0 / e)
                                       for e in eval_at[:-1]] + [CurvePoint(epochs, final, 1.0 / epochs)])
        writer.record_runs(runs, curves)
        total += len(runs)
    for name, constraint, *_ in sources:
        writer.record_robustness([RobustnessRecord(name, "synthetic", norm, eps, steps,
                                                   0.7 * (0.3 if constraint == "none" and norm != "none" else 1.0), 1000)
                                  for norm, eps, steps in (("none", 0.0, 0), ("l2", 3 / 32, 3))])
    return total


def write_influence(writer: CacheWriter, target: str, sources: tuple[str, str], n_train: int, n_test: int,
                    classes: int = 10) -> None:
    """A robust/natural pair on one subset: (n_train, n_test) float32 matrices, top-k, label match, thumbnails."""
    rng = np.random.default_rng(1)
    train_idx = np.sort(rng.choice(FULL.get(target, 4_000), n_train, replace=False))
    train_labels, test_labels = train_idx % classes, np.arange(n_test) % classes
    for name, strength in zip(sources, (1.0, 0.3), strict=True):
        matrix = rng.standard_normal((n_train, n_test), dtype=np.float32)
        matrix += strength * (train_labels[:, None] == test_labels[None, :])
        key = job_key("influence", {"synthetic": True, "source": name, "target": target})
        path = artefact_path(writer.root, "influence", key, "npy")
        np.save(path, matrix)
        top = top_k(matrix, 10)
        topk = pd.DataFrame({"influence_key": key, "test_pos": np.repeat(np.arange(n_test), 10),
                             "rank": np.tile(np.arange(10), n_test), "train_pos": top.positions.ravel(),
                             "score": top.scores.ravel()})
        run_key = writer.run_keys(name, target, n_train, 3)[0]
        match = label_match_curve(matrix, train_labels, test_labels).tolist()
        writer.record_influence(InfluenceRecord(
            key, run_key, "synthetic", 0.05, n_train, n_test, str(path.relative_to(writer.root)), None,
            train_idx.tolist(), list(range(n_test)), train_labels.tolist(), test_labels.tolist(), test_labels.tolist(),
            match, 0.0, {"synthetic": True}), topk)
        del matrix
    png = [to_png(rng.random((3, 32, 32))) for _ in range(classes)]  # one picture per label, reused
    writer.record_thumbnails([ThumbnailRecord(target, "train", int(i), int(i % classes), png[i % classes])
                              for i in train_idx])
    writer.record_thumbnails([ThumbnailRecord(target, "test", i, i % classes, png[i % classes]) for i in range(n_test)])
    writer.record_featviz([FeatvizRecord("featviz-synthetic", m, s, u, 64, 0.05, png[u], png[-1])
                           for m in sources for s in ("chelsea", "coffee", "rocket") for u in range(3)])


def build_demo(root: Path) -> int:
    with CacheWriter(root) as writer:
        n = write_runs(writer, "small_resnet", DEMO_SOURCES[:2], ("digits", "mnist5k+lowres(10)", "mnist5k+lowpass(400)"),
                       lambda t: (20, 50, 100, 200, 400), 3, (1, 3), lambda n: (20, 4))
        n += write_runs(writer, "small_resnet", DEMO_SOURCES, ("mnist5k",), lambda t: (20, 50, 100, 200, 400), 3, (1, 3),
                        lambda n: (20, 4))
        write_influence(writer, "mnist5k", ("l2_1.5", "natural"), 400, 500)
    return n


def build_paper(root: Path) -> int:
    def schedule(n: int) -> tuple[int, int]:
        s = paper_schedule(n)
        return s.epochs, s.test_every

    with CacheWriter(root) as writer:
        n = write_runs(writer, "resnet50", PAPER_SOURCES, tuple(FULL), lambda t: (100, 200, 400, 800, 1_600, 3_200, 6_400,
                                                                          12_800, 25_600, FULL[t]),
                       15, (0, 1, 3, 9), schedule)
        write_influence(writer, "cifar10", ("l2_3", "natural"), 3_200, 10_000)
    return n


def time_pages(root: Path) -> pd.DataFrame:
    """Cold and warm AppTest render seconds of every page on the cache at `root`."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app.explorer import PAGES

    os.environ["RTX_CACHE"] = str(root)
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    for path, _, _ in PAGES:  # warm-up pass: first-use costs of the process (imports, Altair schema) are not a page's
        at.switch_page(path).run()
    rows = []
    for path, title, _ in PAGES:
        st.cache_data.clear()
        t0 = time.perf_counter()
        at.switch_page(path).run()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.run()
        warm = time.perf_counter() - t0
        if at.exception:
            raise RuntimeError(f"{title}: {at.exception[0].value}")
        rows.append({"page": title, "cold_s": cold, "warm_s": warm})
    return pd.DataFrame(rows)


# --- served explorer, N browser sessions, a writer publishing meanwhile ------------------------------------------
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # /work/shared/ENVIRONMENT.md
RENDERED = ("() => document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks, "
            "[data-testid=\"stImage\"] img').length > 0")
WRITER = """
import sys, time
from pathlib import Path
from compute.cache import CacheWriter
from compute.records import CurvePoint, RunRecord
with CacheWriter(Path(sys.argv[1])) as writer:  # publishes as rtx precompute does
    for i in range(100_000):
        run = RunRecord(f"load-{i}", "done", "natural", "load-writer", 10, i, 1, 3, {"i": i}, tuple(range(10)),
                        final_test_acc=0.5)
        writer.record_run(run, [CurvePoint(e, 0.1 * e, 1.0 / e) for e in (1, 2, 3)])
        time.sleep(float(sys.argv[2]))
"""


def _busy_cpu_seconds() -> float:
    """CPU seconds this machine has spent busy since boot, all processes (Linux /proc/stat)."""
    first = Path("/proc/stat").read_text().splitlines()[0]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first.split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _process_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by process `pid` (all its threads), 0 if it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used so far by the live processes of process group `pgid` (Linux /proc)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == pgid:  # fields[2] = pgrp; 11, 12 = utime, stime
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _titles() -> list[tuple[str, str]]:
    """(sidebar label, page title) of every explorer page, the title read from the page's `st.title`."""
    import re

    from app.explorer import PAGES

    app_dir = APP.parent
    out = []
    for path, label, _ in PAGES:
        title = re.search(r'st\.title\("([^"]+)"\)', (app_dir / path).read_text())
        out.append((label, title.group(1) if title else label))
    return out


def _script_finished_times(page, times: list[float]) -> None:
    """Append the arrival time of every full-app `script_finished` message this page receives (fragment reruns of
    the sidebar watcher excluded): a session clicks again only after its previous run has finished, since the
    drawing can be complete before the run is (the server's answer time itself comes from bench/server_clock)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    def on_frame(payload: bytes | str) -> None:
        if isinstance(payload, bytes):
            msg = ForwardMsg.FromString(payload)
            if msg.WhichOneof("type") == "script_finished" \
                    and msg.script_finished == ForwardMsg.ScriptFinishedStatus.FINISHED_SUCCESSFULLY:
                times.append(time.perf_counter())

    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))


async def _session(browser, base: str, pages: list[tuple[str, str]], rounds: int, timeout_ms: int) -> list[dict]:
    """One browser session: the app once, then every page by its sidebar link, `rounds` times."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1600})
    finished: list[float] = []
    _script_finished_times(page, finished)
    rows = []
    try:
        await page.goto(f"{base}/")
        await page.get_by_role("heading", name=pages[0][1]).wait_for(timeout=timeout_ms)
        for rnd in range(1, rounds + 1):
            for label, title in pages:
                before, t0 = len(finished), time.perf_counter()
                await page.locator("[data-testid='stSidebarNav']").get_by_role("link", name=label, exact=True).click()
                ok = True
                try:
                    await page.get_by_role("heading", name=title).wait_for(timeout=timeout_ms)
                    await page.wait_for_function(RENDERED, timeout=timeout_ms, polling=50)  # not every frame
                except Exception:  # noqa: BLE001  (a timeout is a result here, not a crash)
                    ok = False
                seconds = time.perf_counter() - t0
                while len(finished) == before and time.perf_counter() - t0 < timeout_ms / 1000:
                    await asyncio.sleep(0.01)  # the drawing can finish before the script: the next click waits
                errors = await page.locator("[data-testid='stException']").count()
                rows.append({"round": rnd, "page": label, "seconds": seconds, "rendered": ok,
                             "errors": errors})
    finally:
        await page.close()
    return rows


def _idle_priority(pid: int) -> None:
    """Put every thread of process `pid` in SCHED_IDLE (Linux: a scheduling policy belongs to a thread)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))


def _children(name: str) -> list[int]:
    """Pids of this process's direct children whose command name is `name`."""
    out = []
    for entry in (e for e in os.listdir("/proc") if e.isdigit()):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1:stat.rindex(")")] == name and int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
            out.append(int(entry))
    return out


def server_answers(log: Path, labels: list[str]) -> pd.DataFrame:
    """Per page request the server logged (bench/server_clock): seconds from its arrival to the end of the run it
    asked for. Each session's first request is its first page load; the rest follow `labels`, round after round."""
    import json

    events = pd.DataFrame([json.loads(line) for line in log.read_text().splitlines()])
    rows = []
    for session, group in events.sort_values("t").groupby("session", sort=False):
        finished = group.loc[group["event"] == "finished", "t"].to_numpy()
        requests = group[group["event"] == "request"].iloc[1:]  # after the first load
        for i, t in enumerate(requests["t"]):
            later = finished[finished > t]
            rows.append({"session": session, "round": 1 + i // len(labels), "page": labels[i % len(labels)],
                         "server_s": later[0] - t if len(later) else float("nan")})
    return pd.DataFrame(rows)


def browser_sessions(root: Path, sessions: int, write_every: float, rounds: int = 2,
                     browsers_idle: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Serve `root`, start the writer, run `sessions` browser sessions at once: one row per page visit as the
    browsers saw it, and one per page request as the server's clock saw it (`server_answers`).

    `browsers_idle` runs Chromium and Playwright's driver in SCHED_IDLE: they get only the CPU time the server and
    the writer leave, a stand-in for browsers on their users' own machines. The server's answer is still seen
    through them (the frame travels Chromium -> driver -> this process), so its times are upper bounds; the
    drawing times stretch instead."""
    import signal
    import socket
    import urllib.request

    from playwright.async_api import async_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(APP.parents[1])}
    clock = Path(tempfile.mkdtemp()) / "server-clock.jsonl"  # bench/server_clock/sitecustomize.py writes it
    server = subprocess.Popen([sys.executable, "-m", "compute.cli", "--cache", str(root), "explore", "--port",
                               str(port)], env=env | {"PYTHONPATH": f"{APP.parents[1]}{os.pathsep}{SERVER_CLOCK}",
                                                      "RTX_BENCH_SERVER_LOG": str(clock)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    writer = None
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("rtx explore did not come up") from None
                time.sleep(0.5)
        if write_every > 0:  # 0: no writer (the baseline)
            writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(write_every)], env=env,
                                      start_new_session=True)
        pages = _titles()
        groups = {"server": server.pid, "writer": writer.pid if writer else None}
        before = {name: _group_cpu_seconds(pid) for name, pid in groups.items() if pid} | {"all": _busy_cpu_seconds()}

        chromium = Path(tempfile.mkdtemp()) / "chromium"
        chromium.write_text("#!/bin/sh\nexec " + ("chrt --idle 0 " if browsers_idle else "") + '/usr/bin/chromium "$@"\n')
        chromium.chmod(0o755)

        harness = {"start": _own_cpu_seconds()}

        async def run_all() -> list[dict]:
            async with async_playwright() as p:
                drivers = _children("node")  # Playwright's driver
                for pid in drivers if browsers_idle else []:
                    _idle_priority(pid)
                browser = await p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
                try:
                    results = await asyncio.gather(*[_session(browser, base, pages, rounds, 60_000)
                                                     for _ in range(sessions)])
                finally:
                    harness["end"] = _own_cpu_seconds() + sum(_process_cpu_seconds(pid) for pid in drivers)
                    await browser.close()
            return [dict(r, session=i) for i, rows in enumerate(results) for r in rows]

        visits = pd.DataFrame(asyncio.run(run_all()))

        after = {name: _group_cpu_seconds(pid) for name, pid in groups.items() if pid} | {"all": _busy_cpu_seconds()}
        visits.attrs["cpu"] = {"writer": 0.0} | {name: after[name] - before[name] for name in before} \
            | {"harness": harness["end"] - harness["start"]}
        return visits, server_answers(clock, [label for label, _ in pages])
    finally:
        for proc in (writer, server):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)


def report_sessions(visits: pd.DataFrame, server: pd.DataFrame, sessions: int, baseline: pd.DataFrame, budget: float = 2.0,
                    writer: bool = True, browsers_idle: bool = False) -> None:
    """p50/p95/max per page of the second round (after each page's first load) of the server's answer and of the
    drawing, and the error elements seen; `baseline`: one session with no writer, measured in the same run."""
    later = visits[visits["round"] > 1]
    stats = {"server": server[server["round"] > 1].groupby("page", sort=False)["server_s"],
             "drawn": later.groupby("page", sort=False)["seconds"]}
    table = pd.concat([by.describe(percentiles=[0.5, 0.95])[["50%", "95%", "max"]]
                       .set_axis([f"{name}_p50", f"{name}_p95", f"{name}_max"], axis=1) for name, by in stats.items()],
                      axis=1)
    first = visits[visits["round"] == 1].groupby("page", sort=False)["seconds"].max().rename("first_load_max")
    alone = baseline[baseline["round"] > 1].groupby("page", sort=False)["seconds"].median().rename("alone")
    table = table.join(first).join(alone)
    who = "Chromium and Playwright in SCHED_IDLE" if browsers_idle else "browsers at the server's priority"
    print(f"\n{sessions} browser sessions at once, {'a writer publishing meanwhile' if writer else 'no writer'}, {who}. "
          "Round 2 (after each page's first load): server = seconds from the page request's arrival to the end "
          "of its run, by the server's own clock (bench/server_clock); drawn = from the sidebar click to the title "
          "and first chart/image in the browser; first_load_max: drawn, round 1; alone: drawn, one session, "
          "no writer, same run")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    cpu, n = visits.attrs.get("cpu"), len(visits)
    if cpu:
        rest = cpu["all"] - cpu["server"] - cpu["writer"] - cpu["harness"]
        print(f"CPU seconds while the sessions ran: explorer server {cpu['server']:.0f} ({cpu['server'] / n:.2f} per "
              f"page visit), writer {cpu['writer']:.0f}, Playwright (this process and its driver) "
              f"{cpu['harness']:.0f} ({cpu['harness'] / n:.2f} per visit), Chromium and the rest {rest:.0f} "
              f"({rest / n:.2f} per visit). "
              f"{sessions} visits at once need at least {sessions * cpu['all'] / n / os.cpu_count():.1f} s of this "
              f"machine's {os.cpu_count()} cores; the server alone (one process, one GIL) "
              f"{sessions * cpu['server'] / n:.1f} s")
    missing = int((~later["rendered"]).sum())
    print(f"error elements (stException) seen: {int(visits['errors'].sum())} over {len(visits)} page visits; "
          f"not rendered within 60 s: {missing}")
    for name in stats:
        slow = table.index[table[f"{name}_max"] > budget].tolist()
        print(f"every page {name} within {budget:g} s after its first load: "
              + ("yes" if not slow and not missing else "NO (" + ", ".join(slow) + ")"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the caches under this folder and keep them (reused if present)")
    parser.add_argument("--sessions", type=int, help="serve the explorer and open this many browser sessions at once")
    parser.add_argument("--cache", type=Path, help="with --sessions: serve a copy of this cache (default: synthetic)")
    parser.add_argument("--write-every", type=float, default=0.5,
                        help="with --sessions: seconds between writes (0: no writer)")
    parser.add_argument("--browsers", nargs="+", choices=["shared", "idle"], default=["shared", "idle"],
                        help="with --sessions: one run each; shared: Chromium and Playwright at the server's priority; "
                             "idle: in SCHED_IDLE, the server first (a stand-in for browsers on users' machines)")
    args = parser.parse_args()
    if args.sessions:
        import shutil

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "cache"
            if args.cache:
                shutil.copytree(args.cache, root)
            else:
                build_demo(root)
            baseline, _ = browser_sessions(root, 1, 0.0)
            for mode in args.browsers:
                visits, server = browser_sessions(root, args.sessions, args.write_every, browsers_idle=mode == "idle")
                report_sessions(visits, server, args.sessions, baseline, writer=args.write_every > 0,
                                browsers_idle=mode == "idle")
        return
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import app.data, app.charts, app.paper, app.ui"], check=True,
                   capture_output=True)
    seconds = time.perf_counter() - t0
    print(f"one-off: a fresh Python importing the explorer's modules (streamlit, altair, duckdb, pandas) takes "
          f"{seconds:.1f} s; paid once per server, not in the timings below")
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        results = {}
        for name, build, budget in (("demo-sized", build_demo, 2.0), ("paper-sized", build_paper, 5.0)):
            root = base / name
            if not snapshot_path(root).exists():
                root.mkdir(parents=True, exist_ok=True)
                t0 = time.perf_counter()
                runs = build(root)
                print(f"built {name} SYNTHETIC cache: {runs:,} runs in {time.perf_counter() - t0:.1f} s at {root}")
            results[name] = time_pages(root).assign(budget_s=budget)
        demo, paper = results["demo-sized"], results["paper-sized"]
        table = demo[["page"]].assign(demo_cold_s=demo["cold_s"], demo_warm_s=demo["warm_s"],
                                      paper_cold_s=paper["cold_s"], paper_warm_s=paper["warm_s"],
                                      paper_over_demo=paper["cold_s"] / demo["cold_s"])
        print("\nAppTest render time per page (seconds; cold = new snapshot, caches empty; warm = rerun):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        over = [f"{r.page} ({n})" for n, f in results.items() for r in f.itertuples() if r.cold_s > r.budget_s]
        print("\nbudgets (2 s demo, 5 s paper, cold):", "all met" if not over else "OVER: " + ", ".join(over))


if __name__ == "__main__":
    main()
