"""`rtx status` and `rtx datasets`: what the cache holds, what the dataset registry offers."""

from __future__ import annotations

import argparse

from compute.cli.args import Command, no_arguments, root


def cmd_status(args: argparse.Namespace) -> int:
    """Print where the cache is and what it holds."""
    from compute.cache import CacheReader, db_path

    cache = root(args)
    reader = CacheReader(cache)
    print(f"cache: {cache}  (database {db_path(cache).name}, snapshot {'present' if not reader.empty else 'none yet'})")
    print(reader.counts().to_string(index=False))
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
    Command("status", "what the cache holds and where it is", no_arguments, cmd_status),
    Command("datasets", "the dataset registry (classes, sizes, where found)", no_arguments, cmd_datasets),
]
