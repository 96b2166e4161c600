"""Starting the apps: the argv of each server, port probing, and a supervisor that stops them together.

`rtx explore`, `rtx demo` and `rtx serve` run the apps as child processes (Streamlit; `python -m app.demo`),
so `compute` never imports Streamlit or Gradio.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from compute.errors import RtxError

APP_DIR = Path(__file__).resolve().parents[2] / "app"


def supervise(root: Path, commands: dict[str, list[str]]) -> int:
    """Run the apps over cache `root` until one stops, Ctrl-C or SIGTERM; then stop them all (no orphans).

    Returns the exit code of the app that stopped first (0 after Ctrl-C).
    """
    import signal
    import subprocess
    import time

    env = {**os.environ, "RTX_CACHE": str(root)}
    procs = {name: subprocess.Popen(argv, env=env) for name, argv in commands.items()}
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` runs the `finally` below
    try:
        while True:
            for name, proc in procs.items():
                code = proc.poll()
                if code is not None:
                    if len(procs) > 1:
                        print(f"rtx: the {name} stopped (exit code {code}); stopping the others", file=sys.stderr)
                    return code
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait()
        signal.signal(signal.SIGTERM, previous)


def require_free_port(host: str, port: int, flag: str) -> None:
    """Refuse a taken port up front with a one-line error, instead of a server traceback half-way through start-up."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is not "taken"
        try:
            sock.bind((host, port))
        except OSError as err:
            raise RtxError(f"cannot serve on {host}:{port} ({err.strerror}); stop the program using it "
                           f"(another `rtx serve`?) or pass {flag} N") from err


def demo_command(port: int = 7860, host: str = "127.0.0.1", root_path: str | None = None) -> list[str]:
    """The argv that starts the Gradio demo (`python -m app.demo`) in its own process; the cache comes from
    RTX_CACHE."""
    argv = [sys.executable, "-m", "app.demo", "--host", host, "--port", str(port)]
    return argv + (["--root-path", root_path] if root_path else [])


def explorer_command(port: int = 8501, host: str = "127.0.0.1", base_path: str | None = None) -> list[str]:
    """The argv that starts the Streamlit explorer in its own process; the cache comes from RTX_CACHE.

    Offline by construction: no usage statistics, no browser opened, no file watcher (the app reloads data
    from the cache snapshot, not from source files). No full garbage collection after every script run:
    Streamlit's default `gc.collect(2)` took 0.1 s per rerun with this process's heap, holding the GIL that all
    sessions share (Python's own thresholds still collect). `base_path` serves it under a URL prefix (/explorer).
    """
    argv = [sys.executable, "-m", "streamlit", "run", str(APP_DIR / "explorer.py"), "--server.port", str(port),
            "--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--server.runOnSave", "false", "--client.toolbarMode", "viewer",
            "--runner.postScriptGC", "false"]
    return argv + (["--server.baseUrlPath", base_path.strip("/")] if base_path and base_path.strip("/") else [])


__all__ = ["demo_command", "explorer_command", "require_free_port", "supervise"]
