"""The `rtx` command. The only place that parses arguments; it builds config dataclasses and calls down.

Every sub-command is a `cmd_*` function plus a parser block in `build_parser`; user errors (`RtxError`)
print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from compute.errors import RtxError

Command = Callable[[argparse.Namespace], int]


def _csv(kind: Callable[[str], object] = str) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        return tuple(kind(part) for part in text.split(",") if part.strip())

    return parse


def _size(text: str) -> int | None:
    return None if text == "all" else int(text)


def _root(args: argparse.Namespace) -> Path:
    from compute.paths import cache_dir

    return cache_dir(args.cache)


# --- status ---------------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    """Print where the cache is and what it holds."""
    from compute.cache import CacheReader, db_path

    root = _root(args)
    reader = CacheReader(root)
    print(f"cache: {root}  (database {db_path(root).name}, snapshot {'present' if not reader.empty else 'none yet'})")
    print(reader.counts().to_string(index=False))
    sources = reader.source_models()
    if not sources.empty:
        print("\nsource models:")
        print(sources[["name", "arch", "constraint_", "attack_steps", "source_dataset", "clean_acc"]].to_string(index=False))
    targets = reader.targets()
    print(f"\ntargets with fine-tunes: {', '.join(targets) if targets else 'none (run `rtx precompute --preset demo`)'}")
    return 0


# --- datasets -------------------------------------------------------------------------------------------
def cmd_datasets(args: argparse.Namespace) -> int:
    """List the dataset registry: classes, sizes, channels, where each is found."""
    import pandas as pd

    from compute.data import dataset_names, describe

    print(pd.DataFrame([describe(n) for n in dataset_names()]).to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtx",
        description="Robust Transfer Explorer: fine-tune natural and robust source models, record the results "
        "in a DuckDB cache, and explore them.",
    )
    parser.add_argument("--cache", default=None, help="cache directory (default: $RTX_CACHE or ./cache)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("status", help="what the cache holds and where it is")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("datasets", help="the dataset registry (classes, sizes, where found)")
    p.set_defaults(func=cmd_datasets)

    # COMMANDS: sub-commands added below this line by each area (keep one block per command).
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
