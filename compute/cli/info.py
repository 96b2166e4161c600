"""`rtx status` and `rtx datasets`: what the cache holds, what the dataset registry offers."""

from __future__ import annotations

import argparse

from compute.cli.args import Command, no_arguments, root


def _status_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_true", help="list the failed fine-tunes no later run superseded, "
                       "with their errors")
    which.add_argument("--clear-failed", action="store_true", help="forget every failed fine-tune (the next sweep "
                       "retries them either way)")


def cmd_status(args: argparse.Namespace) -> int:
    """Print where the cache is and what it holds (or its failed runs, or forget them)."""
    from compute.cache import CacheReader, CacheWriter, db_path

    cache = root(args)
    if args.clear_failed:
        with CacheWriter(cache) as writer:
            print(f"forgot {writer.clear_failed()} failed run(s) in {cache}")
        return 0
    reader = CacheReader(cache)
    failed = reader.failed_runs()
    if args.failed:
        print(failed.to_string(index=False) if not failed.empty else f"no failed runs in {cache}")
        return 0
    print(f"cache: {cache}  (database {db_path(cache).name}, snapshot {'present' if not reader.empty else 'none yet'})")
    print(reader.counts().to_string(index=False))
    if not failed.empty:
        print(f"{len(failed)} failed run(s): `rtx status --failed` lists them with their errors")
    sources = reader.source_models()
    if not sources.empty:
        print("\nsource models:")
        print(sources[["name", "arch", "constraint_", "attack_steps", "source_dataset", "clean_acc"]].to_string(index=False))
    targets = reader.targets()
    print(f"\ntargets with fine-tunes: {', '.join(targets) if targets else 'none (run `rtx precompute --preset demo`)'}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    """List the dataset registry: classes, sizes, channels, where each is found."""
    import pandas as pd

    from compute.data import dataset_names, describe
    from compute.settings import Settings

    data_root = Settings.from_env().data_root
    print(pd.DataFrame([describe(n, data_root) for n in dataset_names()]).to_string(index=False))
    return 0


COMMANDS = [
    Command("status", "what the cache holds and where it is; its failed runs", _status_arguments, cmd_status),
    Command("datasets", "the dataset registry (classes, sizes, where found)", no_arguments, cmd_datasets),
]
