"""Parser helpers: every flag that more than one command takes is defined here once, with one meaning.

Flag meanings across `rtx`: `--seeds` = subset seeds (the sweep's S_k), `--steps` = k of PGD(k), featviz's
photos are `--seed-images` and its ascent steps `--ascent-steps`. A command is a `Command` in a module's
`COMMANDS` list (name, help, argument builder, runner); `compute.cli.registry()` collects them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from compute.cli.values import (
    DEVICE,
    HOST,
    NAME,
    PORT,
    PROCESSES,
    Choice,
    Listed,
    PathValue,
    ValueType,
)
from compute.errors import RtxError

Runner = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]

HOST_HELP = "interface to bind (default 127.0.0.1, this machine only)"


@dataclass(frozen=True)
class Command:
    """One sub-command: `rtx NAME ...` runs `run(args)` after `arguments` added its flags."""

    name: str
    help: str
    arguments: Arguments
    run: Runner


class UsageError(RtxError):
    """A flag or argument argparse refused (`RtxParser.error`); the CLI prints it as one line, exit status 2."""


class RtxParser(argparse.ArgumentParser):
    """argparse, but a refused flag is one line naming the flag and what it expects (argparse's own `error` prints
    the whole usage first), raised as `UsageError` so `main` returns 2 and in-process callers can catch it."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"rtx: error: {message} (see `{self.prog} --help`)")


def csv(kind: ValueType = NAME) -> Listed:
    """'a,b,,c' -> (kind('a'), kind('b'), kind('c')); at least one item."""
    return Listed(kind)


def root(args: argparse.Namespace) -> Path:
    """The cache directory: --cache, else $RTX_CACHE, else ./cache."""
    from compute.paths import cache_dir

    return cache_dir(args.cache)


def no_arguments(p: argparse.ArgumentParser) -> None:
    """For commands without flags of their own."""


def _preset_names() -> list[str]:
    from compute.presets import preset_names

    return preset_names()


PRESET = Choice("preset", _preset_names)


def add_preset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="demo", type=PRESET, help=f"one of: {', '.join(_preset_names())} (default demo)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=DEVICE, help="torch device, e.g. cpu or cuda:0 (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_trust_pickle(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-pickle", action="store_true", help="allow checkpoint files that need pickle (runs code "
                   "from the file: only for files you trust)")


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=PROCESSES, help="torch CPU threads of this process (default: torch's choice)")


def add_checkpoint_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint-dir", type=PathValue("folder", must_exist=False), help="folder with a preset's checkpoint files (paper: resnet50-0676ba61.pth, "
                   "imagenet_l2_3_0.pt, imagenet_linf_4.pt, imagenet_linf_8.pt); default $RTX_CHECKPOINTS or "
                   "<cache>/checkpoints")


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=PathValue("folder", must_exist=False), help="folder of torchvision datasets (default $RTX_DATA or <cache>/data)")


def add_serving(p: argparse.ArgumentParser, port: int, prefix_flag: str, prefix_example: str) -> None:
    """--host, --port and a URL-prefix flag for a served app."""
    add_host(p)
    p.add_argument("--port", type=PORT, default=port, help=f"port (default {port})")
    p.add_argument(prefix_flag, default=None, type=NAME, help=f"URL prefix when served behind a reverse proxy, e.g. "
                   f"{prefix_example}")


def add_host(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", type=HOST, help=HOST_HELP)


def apply_threads(args: argparse.Namespace) -> None:
    """Honour --threads (when the command has it and it was given)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


__all__ = ["PRESET", "Command", "RtxParser", "UsageError", "add_checkpoint_dir", "add_data_root", "add_device",
           "add_host", "add_preset", "add_serving", "add_threads", "add_trust_pickle", "apply_threads", "csv",
           "no_arguments", "root"]
