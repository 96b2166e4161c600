"""Serving: a port that is already taken is refused up front with a one-line error naming the flag to change."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from compute.cli import main


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(("command", "flag"), [("serve", "--demo-port"), ("serve", "--explorer-port"),
                                               ("demo", "--port"), ("explore", "--port")])
def test_a_taken_port_is_a_one_line_error(command: str, flag: str, taken_port: int, tmp_path: Path, capsys) -> None:
    assert main(["--cache", str(tmp_path), command, flag, str(taken_port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"127.0.0.1:{taken_port}" in err and f"pass {flag} N" in err
