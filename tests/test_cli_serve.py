"""Serving: a port that is already taken is refused up front with a one-line error naming the flag to change."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from compute.cli import main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(("command", "flag"), [("serve", "--demo-port"), ("serve", "--explorer-port"),
                                               ("demo", "--port"), ("explore", "--port")])
def test_a_taken_port_is_a_one_line_error(command: str, flag: str, taken_port: int, tmp_path: Path, capsys) -> None:
    # `serve`'s other port is a free one, not its default: a `make demo` running beside the tests holds 8501/7860
    other = {"--demo-port": "--explorer-port", "--explorer-port": "--demo-port"}.get(flag) if command == "serve" else None
    extra = [other, str(_free_port())] if other else []
    assert main(["--cache", str(tmp_path), command, flag, str(taken_port), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"127.0.0.1:{taken_port}" in err and f"pass {flag} N" in err


def test_when_one_app_stops_the_others_are_stopped_too(tmp_path: Path, capsys) -> None:
    import sys

    from compute.cli import supervise

    marker = tmp_path / "still-running"
    long_running = [sys.executable, "-c", f"import time, pathlib; time.sleep(30); pathlib.Path({str(marker)!r}).touch()"]
    failing = [sys.executable, "-c", "import time; time.sleep(0.5); raise SystemExit(3)"]
    assert supervise(tmp_path, {"explorer": long_running, "demo": failing}) == 3
    assert "the demo stopped (exit code 3)" in capsys.readouterr().err
    assert not marker.exists()
