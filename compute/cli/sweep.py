"""`rtx precompute` and `rtx finetune`: a preset's stages, resuming from the cache."""

from __future__ import annotations

import argparse

from compute.cli.args import (
    Command,
    add_checkpoint_dir,
    add_data_root,
    add_device,
    add_preset,
    add_threads,
    add_trust_pickle,
    apply_threads,
    csv,
    root,
)
from compute.cli.values import (
    DATASET,
    GPUS,
    NAME,
    NON_NEGATIVE,
    POSITIVE,
    PROCESSES,
    SEED,
    Choice,
    Real,
    SubsetSize,
)


def settings_from_args(args: argparse.Namespace):
    """The run's `Settings` from the sweep flags (`add_sweep_arguments`), defaults from the environment."""
    from compute.settings import Settings

    return Settings.from_env(executor=args.executor, address=args.address, device=args.device, workers=args.workers,
                             progress=not args.no_progress, keep_models=args.keep_models, max_runs=args.max_runs,
                             checkpoint_dir=getattr(args, "checkpoint_dir", None),
                             trust_pickle=getattr(args, "trust_pickle", False), data_root=args.data_root,
                             download=args.download, skip_bad_images=args.skip_bad_images or None,
                             test_limit=args.test_limit, max_group=args.max_group,
                             engine_strategy=args.engine_strategy, compile=args.compile or None,
                             gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task,
                             threads=getattr(args, "threads", None))


def preset_from_args(args: argparse.Namespace):
    """The preset with the CLI's overrides of its grid axes."""
    from compute.presets import get_preset

    return get_preset(args.preset).with_overrides(
        targets=args.targets, sizes=args.sizes, seeds=args.seeds, blocks=args.blocks, sources=args.sources,
        epochs=args.epochs, test_every=args.test_every, precision=args.precision, sampler=args.sampler,
        normalisation=args.normalisation,
    )


def download_targets(preset, settings) -> None:
    """With --download, fetch the preset's torchvision targets (once the plan is known to be valid)."""
    from compute.data import load_dataset

    for target in sorted({t for grid in preset.grids for t in grid.targets}):
        for split in ("train", "test"):
            load_dataset(target, split, settings.data_root, download=True, skip_bad_images=settings.skip_bad_images)


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    from compute.sweep import EXECUTORS

    add_preset(p)
    p.add_argument("--targets", type=csv(DATASET), help="override the targets, e.g. mnist5k,digits,mnist5k+lowpass(400)")
    p.add_argument("--sizes", type=csv(SubsetSize()), help="override subset sizes, e.g. 100,200,all")
    p.add_argument("--seeds", type=csv(SEED), help="override subset seeds (default: the preset's, or the paper's S_k)")
    p.add_argument("--blocks", type=csv(NON_NEGATIVE), help="override numbers of fine-tuned blocks, e.g. 0,1,3,9")
    p.add_argument("--sources", type=csv(NAME), help="restrict to these source models")
    p.add_argument("--epochs", type=POSITIVE, help="override epochs (default: the preset's, or the paper's Table 4)")
    p.add_argument("--test-every", type=POSITIVE, help="override the test frequency in epochs")
    p.add_argument("--executor", type=Choice("executor", lambda: list(EXECUTORS)), help=f"one of: {', '.join(EXECUTORS)} (default: engine on CUDA, local on a CPU)")
    p.add_argument("--workers", type=PROCESSES, help="local executor: worker processes, one torch thread each "
                   "(default: one per core on a CPU, 1 with a GPU)")
    p.add_argument("--address", type=NAME, help="Ray cluster address for --executor ray (default: start a local Ray)")
    add_threads(p)
    add_device(p)
    p.add_argument("--keep-models", action="store_true", help="keep every fine-tuned model's weights in the cache")
    p.add_argument("--max-runs", type=POSITIVE, help="stop after this many fine-tunes (resume later)")
    add_data_root(p)
    p.add_argument("--download", action="store_true", help="download missing torchvision targets first (needs internet)")
    p.add_argument("--skip-bad-images", action="store_true", help="folder: targets: leave unreadable or non-image "
                   "files out (listed in the dataset's source) instead of refusing the folder (default: $RTX_SKIP_BAD_IMAGES)")
    add_grid_arguments(p)


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    """The paper grid's flags: test limit, precision, dry run, engine groups, Ray task resources."""
    from compute.data.sampler import SAMPLERS
    from compute.finetune import PRECISIONS
    from compute.normalisation import NORMALISATIONS
    from compute.settings import ENGINE_STRATEGIES

    p.add_argument("--test-limit", type=POSITIVE, help="evaluate on the first N test images (recorded in each run's key)")
    p.add_argument("--precision", type=Choice("precision", lambda: PRECISIONS), help="fp32, or bf16 autocast (recorded in each run's key; "
                   "default: the preset's, bf16 for paper)")
    p.add_argument("--sampler", type=Choice("sampler", lambda: SAMPLERS), help="training subsets: numpy RandomState choice as the authors' "
                   "code (authors), or one image per label first as the paper's text (per-label); recorded in each "
                   "run's key (default: the preset's, authors for paper)")
    p.add_argument("--normalisation", type=Choice("normalisation", lambda: NORMALISATIONS), help="input statistics: a source whose file stored "
                   "none (torchvision's natural ResNet-50) takes the target's, as the authors' code (authors), or every "
                   "source its own (source); recorded in each run's key (default: the preset's, authors for paper)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (runs, image passes, device-hours from "
                   "bench/RESULTS.md) and the missing inputs, then exit without work")
    p.add_argument("--max-group", type=POSITIVE, help="engine and ray: at most N sibling runs (differing only in "
                   "the seed) train together (default: from free device memory on CUDA, 8 on a CPU; ray: all siblings)")
    p.add_argument("--engine-strategy", type=Choice("engine strategy", lambda: ENGINE_STRATEGIES), help="engine: one vmapped call over the runs "
                   "(vmap), a loop over them (loop), or the faster of the two, timed on the first batch (auto, "
                   "default); same numbers")
    p.add_argument("--compile", action="store_true", help="engine: torch.compile the frozen prefix of BatchNorm-"
                   "frozen runs (costs a compilation per shape of the siblings' step; see bench/gpu_finetune.py --compile)")
    p.add_argument("--gpus-per-task", type=GPUS, help="ray: GPUs per task, fractions allowed, 0 for CPU tasks (default: the group's "
                   "measured memory over the GPU's when the driver has a GPU, else 1)")
    p.add_argument("--cpus-per-task", type=Real(0, lo_open=True), help="ray: CPUs per task (default 1)")


def _precompute_arguments(p: argparse.ArgumentParser) -> None:
    from compute.stages import stage_names

    add_sweep_arguments(p)
    p.add_argument("--stages", type=csv(Choice("stage", stage_names)), help=f"only these stages (run in this order): {','.join(stage_names())}")
    add_checkpoint_dir(p)
    add_trust_pickle(p)


def cmd_precompute(args: argparse.Namespace) -> int:
    """Run every stage of a preset (or the ones named by --stages), resuming from the cache."""
    from compute.stages import precompute

    checked = checked_inputs(args, sources=True)
    if checked is not None:
        precompute(checked[0], root(args), checked[1], args.stages)
    return 0


def checked_inputs(args: argparse.Namespace, sources: bool):
    """(preset, settings) from the flags once every input is checked (one error listing all problems:
    compute.validation.check_before_work; `sources` False: the runs use the sources the cache records); None after
    printing the plan when --dry-run asks for it instead of the work."""
    from compute.stages import stage_names
    from compute.validation import check_before_work

    settings = settings_from_args(args)
    preset = preset_from_args(args)
    stages = (getattr(args, "stages", None) or stage_names()) if sources else ("finetune",)
    sources = sources and "sources" in stages  # else the runs can use only the sources the cache records
    if settings.download and not args.dry_run:  # a dry run does no work, downloads included
        check_before_work(preset, root(args), settings, stages, dry_run=True, train_sources=sources)  # raises the plan's own problems: nothing is fetched for a typo
        download_targets(preset, settings)
    plan_text = check_before_work(preset, root(args), settings, stages, args.dry_run, sources)
    if plan_text is not None:
        print(plan_text)
        return None
    return preset, settings


def cmd_finetune(args: argparse.Namespace) -> int:
    """Only the fine-tuning stage of a preset (its sources must already be in the cache)."""
    from compute.cache import CacheWriter
    from compute.stages.finetune import finetune_stage

    checked = checked_inputs(args, sources=False)
    if checked is None:
        return 0
    apply_threads(args)  # precompute applies Settings.threads itself (compute.stages.precompute)
    with CacheWriter(root(args)) as writer:
        counts = finetune_stage(checked[0], writer, checked[1])
    print(counts.line())
    return 0


COMMANDS = [
    Command("precompute", "run a preset: sources, robustness, fine-tunes, influence, featviz", _precompute_arguments,
            cmd_precompute),
    Command("finetune", "only the fine-tuning sweep of a preset", add_sweep_arguments, cmd_finetune),
]
