"""The `rtx` command (entry point `compute.cli:main`). The only place that parses arguments; it builds config
dataclasses and calls down.

One module per command group (`info`, `sweep`, `serving`, `analysis`, `sources`), each a `COMMANDS`
list of `args.Command`; flags shared by several commands come from the helpers in `args`; starting and
supervising the apps lives in `processes`. User errors print one line and exit with status 2, never a traceback:
a flag's value is checked when it is parsed (its type, compute.cli.values, names the valid range or choices),
the plan as a whole before any work (compute.validation), the rest where it is found (`RtxError`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from compute.cli import analysis, figures, info, serving, sources, sweep
from compute.cli.args import Command, RtxParser, UsageError
from compute.cli.processes import demo_command, explorer_command, require_free_port, supervise
from compute.cli.values import PathValue
from compute.errors import RtxError

GROUPS = (info, sweep, serving, analysis, sources, figures)  # the order of `rtx --help`


def registry() -> dict[str, Command]:
    """Every sub-command by name."""
    return {command.name: command for group in GROUPS for command in group.COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = RtxParser(
        prog="rtx",
        description="Robust Transfer Explorer: fine-tune natural and robust source models, record the results "
        "in a DuckDB cache, and explore them.",
    )
    parser.add_argument("--cache", default=None, type=PathValue("folder", must_exist=False), help="cache directory (default: $RTX_CACHE or ./cache)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in registry().values():
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.arguments(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
    if args.cache:
        os.environ["RTX_CACHE"] = str(Path(args.cache).resolve())
    try:
        return int(args.func(args) or 0)
    except RtxError as err:
        print(f"rtx: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rtx: interrupted; completed work is kept in the cache, re-run the same command to resume",
              file=sys.stderr)
        return 130


__all__ = ["Command", "RtxParser", "build_parser", "demo_command", "explorer_command", "main", "registry", "require_free_port",
           "supervise"]
