"""The `rtx` parser: every registered command has help, every flag an error message names exists, each flag
name means one thing, shared flags come from one helper, and `compute.cli` does not load the apps."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from compute.cli import build_parser, demo_command, main, registry

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"--[a-z][a-z-]*[a-z]")
ERROR_CALLS = {"RtxError", "UploadError"}  # the user-facing error types of compute/ and app/


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


def test_registry_is_what_the_parser_offers() -> None:
    assert set(subparsers()) == set(registry()) and len(registry()) == 13


@pytest.mark.parametrize("command", list(registry()))
def test_every_subcommand_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: rtx {command}" in out and registry()[command].help in " ".join(out.split())


def _error_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal (f-string parts included) inside a RtxError(...)/UploadError(...) call
    or a `raise` statement (errors built by helpers such as `unknown_name`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        is_error_call = isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) \
            in ERROR_CALLS
        if is_error_call or isinstance(node, ast.Raise):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                    found.append((inner.lineno, inner.value))
    return found


def flags_in_error_messages() -> list[tuple[str, str]]:
    return [(f"{path.relative_to(ROOT)}:{line}", flag)
            for folder in ("compute", "app") for path in sorted((ROOT / folder).rglob("*.py"))
            for line, text in _error_strings(path) for flag in FLAG.findall(text)]


def test_the_scan_finds_flags_in_error_messages() -> None:
    found = {flag for _, flag in flags_in_error_messages()}
    assert {"--workers", "--checkpoint-dir", "--preset"} <= found, found  # the scan itself works


def test_every_flag_named_in_an_error_message_exists() -> None:
    known = set(options(build_parser())) | {f for p in subparsers().values() for f in options(p)}
    missing = [(where, flag) for where, flag in flags_in_error_messages() if flag not in known]
    assert not missing, f"error messages name flags `rtx` does not have: {missing}"


def test_one_meaning_per_flag_name() -> None:
    for name, parser in subparsers().items():
        flags = options(parser)
        if "--seeds" in flags:
            assert "subset seeds" in flags["--seeds"].help, name
        if "--steps" in flags:
            assert "PGD" in flags["--steps"].help, name
    featviz = options(subparsers()["featviz"])
    assert {"--seed-images", "--ascent-steps"} <= set(featviz) and not {"--seeds", "--steps"} & set(featviz)


@pytest.mark.parametrize("flag", ["--trust-pickle", "--threads", "--checkpoint-dir", "--data-root", "--device",
                                  "--preset"])
def test_shared_flags_are_defined_once(flag: str) -> None:
    """A flag several commands take has one help text (one helper), not drifting copies."""
    actions = [options(p)[flag] for p in subparsers().values() if flag in options(p)]
    assert actions, flag
    assert len({(a.help, a.default, a.type, type(a).__name__) for a in actions}) == 1, flag


def test_compute_cli_does_not_load_the_apps() -> None:
    code = ("import sys, compute.cli; compute.cli.build_parser(); "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'streamlit', 'app')); "
            "print(loaded); sys.exit(1 if loaded else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert demo_command(7999)[1:3] == ["-m", "app.demo"]


@pytest.mark.parametrize("command", ["precompute", "finetune"])
def test_threads_flag_reaches_settings_and_torch(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--threads N` is a Settings value like every other (issue 21, item 4): precompute sets torch's threads from
    it."""
    import torch

    from compute.cli import build_parser
    from compute.cli.sweep import settings_from_args
    from compute.presets import get_preset
    from compute.stages import precompute

    args = build_parser().parse_args([command, "--preset", "tiny", "--threads", "3"])
    settings = settings_from_args(args)
    assert settings.threads == 3
    assert settings_from_args(build_parser().parse_args([command, "--preset", "tiny"])).threads is None
    seen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    precompute(get_preset("tiny"), tmp_path, settings, stages=())
    assert seen == [3]
