"""`rtx precompute` and `rtx finetune`: a preset's stages, resuming from the cache."""

from __future__ import annotations

import argparse

from compute.cli.args import (
    Command,
    add_checkpoint_dir,
    add_data_root,
    add_device,
    add_preset,
    add_trust_pickle,
    csv,
    root,
    size,
)


def settings_from_args(args: argparse.Namespace):
    """The run's `Settings` from the sweep flags (`add_sweep_arguments`), defaults from the environment."""
    from compute.settings import Settings

    return Settings.from_env(executor=args.executor, address=args.address, device=args.device, workers=args.workers,
                             progress=not args.no_progress, keep_models=args.keep_models, max_runs=args.max_runs,
                             checkpoint_dir=getattr(args, "checkpoint_dir", None),
                             trust_pickle=getattr(args, "trust_pickle", False), data_root=args.data_root,
                             download=args.download)


def preset_from_args(args: argparse.Namespace, settings):
    """The preset with CLI overrides; with --download, fetches its targets through torchvision first."""
    from compute.data import load_dataset
    from compute.presets import get_preset

    preset = get_preset(args.preset).with_overrides(
        targets=args.targets, sizes=args.sizes, seeds=args.seeds, blocks=args.blocks, sources=args.sources,
        epochs=args.epochs, test_every=args.test_every,
    )
    if settings.download:
        for target in sorted({t for grid in preset.grids for t in grid.targets}):
            for split in ("train", "test"):
                load_dataset(target, split, settings.data_root, download=True)
    return preset


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    from compute.sweep import EXECUTORS

    add_preset(p)
    p.add_argument("--targets", type=csv(), help="override the targets, e.g. mnist5k,digits,mnist5k+lowpass(400)")
    p.add_argument("--sizes", type=csv(size), help="override subset sizes, e.g. 100,200,all")
    p.add_argument("--seeds", type=csv(int), help="override subset seeds (default: the preset's, or the paper's S_k)")
    p.add_argument("--blocks", type=csv(int), help="override numbers of fine-tuned blocks, e.g. 0,1,3,9")
    p.add_argument("--sources", type=csv(), help="restrict to these source models")
    p.add_argument("--epochs", type=int, help="override epochs (default: the preset's, or the paper's Table 4)")
    p.add_argument("--test-every", type=int, help="override the test frequency in epochs")
    p.add_argument("--executor", default="local", help=f"one of: {', '.join(EXECUTORS)} (default local)")
    p.add_argument("--workers", type=int, help="local executor: worker processes, one torch thread each "
                   "(default: one per core on a CPU, 1 with a GPU)")
    p.add_argument("--address", help="Ray cluster address for --executor ray (default: start a local Ray)")
    add_device(p)
    p.add_argument("--keep-models", action="store_true", help="keep every fine-tuned model's weights in the cache")
    p.add_argument("--max-runs", type=int, help="stop after this many fine-tunes (resume later)")
    add_data_root(p)
    p.add_argument("--download", action="store_true", help="download missing torchvision targets first (needs internet)")


def _precompute_arguments(p: argparse.ArgumentParser) -> None:
    from compute.stages import stage_names

    add_sweep_arguments(p)
    p.add_argument("--stages", type=csv(), help=f"only these stages (run in this order): {','.join(stage_names())}")
    add_checkpoint_dir(p)
    add_trust_pickle(p)


def cmd_precompute(args: argparse.Namespace) -> int:
    """Run every stage of a preset (or the ones named by --stages), resuming from the cache."""
    from compute.stages import precompute

    settings = settings_from_args(args)
    precompute(preset_from_args(args, settings), root(args), settings, args.stages)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Only the fine-tuning stage of a preset (its sources must already be in the cache)."""
    from compute.cache import CacheWriter
    from compute.stages.finetune import finetune_stage

    settings = settings_from_args(args)
    with CacheWriter(root(args)) as writer:
        counts = finetune_stage(preset_from_args(args, settings), writer, settings)
    print(f"{counts['planned']} planned, {counts['cached']} already cached, {counts['done']} run, {counts['failed']} failed")
    return 0


COMMANDS = [
    Command("precompute", "run a preset: sources, robustness, fine-tunes, influence, featviz", _precompute_arguments,
            cmd_precompute),
    Command("finetune", "only the fine-tuning sweep of a preset", add_sweep_arguments, cmd_finetune),
]
