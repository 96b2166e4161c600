"""`rtx train-source`, `rtx import-source`, `rtx eval-robustness`: the source models and their robustness."""

from __future__ import annotations

import argparse

from compute.cli.args import (
    Command,
    add_checkpoint_dir,
    add_device,
    add_preset,
    add_threads,
    add_trust_pickle,
    apply_threads,
    csv,
    root,
)
from compute.cli.values import (
    CONSTRAINT,
    DATASET,
    NAME,
    NON_NEGATIVE,
    POSITIVE,
    Choice,
    Integer,
    PathValue,
    Real,
)
from compute.errors import RtxError


def _arch_names() -> list[str]:
    from compute.models.architectures import arch_names

    return arch_names()


ARCH = Choice("architecture", _arch_names)


def _train_arguments(p: argparse.ArgumentParser) -> None:
    add_preset(p)
    p.add_argument("--only", type=csv(NAME), help="only these sources of the preset, e.g. natural,l2_1.5")
    p.add_argument("--name", type=NAME, help="train one custom source with this name instead of a preset's")
    p.add_argument("--arch", default="small_resnet", type=ARCH, help="architecture of a custom source (default small_resnet)")
    p.add_argument("--dataset", default="fmnist", type=DATASET, help="training dataset of a custom source (default fmnist)")
    p.add_argument("--constraint", default="none", type=CONSTRAINT, help="none, l2:EPS, linf:EPS (e.g. linf:4/255) or gaussian:SIGMA")
    p.add_argument("--steps", type=NON_NEGATIVE, help="k of PGD(k) adversarial training (default 3; 1 = PGD(1); "
                   "0 only for none or gaussian)")
    p.add_argument("--epochs", type=POSITIVE, default=2, help="training epochs of a custom source (default 2)")
    p.add_argument("--train-size", type=POSITIVE, help="train on a seeded subset of N images (default: all)")
    p.add_argument("--batch-size", type=POSITIVE, default=128, help="SGD batch size (default 128, the paper's)")
    p.add_argument("--lr", type=Real(0, lo_open=True), default=0.1, help="initial learning rate (default 0.1, the paper's)")
    add_checkpoint_dir(p)
    add_trust_pickle(p)
    add_threads(p)
    add_device(p)


def cmd_train_source(args: argparse.Namespace) -> int:
    """Train (or load) a preset's source models, or one custom source given by --name/--constraint/..."""
    from compute.cache import CacheWriter
    from compute.presets import SourceSpec, get_preset
    from compute.settings import Settings
    from compute.stages.sources import sources_stage
    from compute.train_source import ensure_source
    from compute.validation import pgd_steps_problems, raise_problems, source_problems, subset_problems

    if args.name and args.only:
        raise RtxError("--only selects sources of a preset; drop it when training a custom source with --name")
    preset = get_preset(args.preset)
    settings = Settings.from_env(checkpoint_dir=args.checkpoint_dir)  # $RTX_DATA, $RTX_SKIP_BAD_IMAGES, ...
    raise_problems(args.name or preset.name, subset_problems(args.dataset, [args.train_size], "--train-size",
                                                            settings.skip_bad_images)
                   + pgd_steps_problems(args.constraint, args.steps) if args.name
                   else source_problems(args.only or (), preset, "--only"))
    apply_threads(args)
    with CacheWriter(root(args)) as writer:
        if args.name:
            from compute.attacks import parse_constraint

            is_pgd = parse_constraint(args.constraint, max(args.steps or 1, 1)).kind == "pgd"
            steps = (3 if args.steps is None else args.steps) if is_pgd else 0
            spec = SourceSpec(args.name, args.arch, args.constraint, steps, args.dataset, epochs=args.epochs,
                              train_size=args.train_size, batch_size=args.batch_size, lr=args.lr)
            row = ensure_source(spec, writer, device=args.device, progress=not args.no_progress,
                                data_root=settings.data_root, skip_bad_images=settings.skip_bad_images)
            print(f"{spec.name}: clean accuracy {row.clean_acc:.3f}, {row.path}" if row
                  else f"{spec.name}: already in the cache")
        else:
            sources_stage(preset, writer, device=args.device, progress=not args.no_progress,
                          checkpoint_dir=settings.checkpoint_dir, trust_pickle=args.trust_pickle, only=args.only,
                          data_root=settings.data_root, skip_bad_images=settings.skip_bad_images)
    return 0


def _import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=PathValue("file"), help="the checkpoint file (.pth, .pt, .ckpt or .safetensors with its .json sidecar)")
    p.add_argument("--name", required=True, type=NAME, help="source model name, e.g. l2_3")
    p.add_argument("--arch", type=ARCH, help="architecture, e.g. resnet50 (default: read from the file's keys)")
    p.add_argument("--constraint", default="none", type=CONSTRAINT, help="how it was trained: none, l2:3, linf:4/255, gaussian:1, ...")
    p.add_argument("--steps", type=NON_NEGATIVE, default=0, help="k of the PGD(k) it was trained with (MadryLab: 20)")
    p.add_argument("--dataset", default="imagenet", type=NAME, help="the dataset it was trained on (default imagenet)")
    p.add_argument("--num-classes", type=Integer(2), help="output classes (default: read from fc.weight)")
    add_trust_pickle(p)
    p.add_argument("--measure", action="store_true", help="measure clean accuracy on --dataset when available offline")
    add_threads(p)


def cmd_import_source(args: argparse.Namespace) -> int:
    """Register a checkpoint file (ours, torchvision or MadryLab) as a source model in the cache."""
    from compute.cache import CacheWriter
    from compute.train_source import import_source, record_source

    apply_threads(args)
    with CacheWriter(root(args)) as writer:
        row = import_source(args.path, args.name, args.arch, args.constraint, args.steps, args.dataset, writer.root,
                            num_classes=args.num_classes, trust_pickle=args.trust_pickle, measure=args.measure)
        record_source(writer, row)
    print(f"registered {args.name} ({row.arch}, {row.constraint}, {row.meta['format']} checkpoint) as {row.path}")
    return 0


def _robustness_arguments(p: argparse.ArgumentParser) -> None:
    from compute.robustness import DEMO_N_IMAGES

    add_preset(p)
    p.add_argument("--sources", type=csv(NAME), help="only these sources of the preset")
    p.add_argument("--eps", type=csv(CONSTRAINT), help="constraints instead of the preset's, e.g. l2:0.5,l2:1.5,linf:4/255")
    p.add_argument("--steps", type=POSITIVE, help="k of PGD(k) (default: the preset's, 3 as the paper's Table 1b)")
    p.add_argument("--n-images", type=POSITIVE, default=DEMO_N_IMAGES,
                   help=f"evaluate on the first N test images (default {DEMO_N_IMAGES})")
    add_threads(p)
    add_device(p)


def cmd_eval_robustness(args: argparse.Namespace) -> int:
    """Clean and PGD(k) accuracy of a preset's sources at several eps, recorded in the cache."""
    from dataclasses import replace

    from compute.cache import CacheWriter
    from compute.presets import get_preset
    from compute.stages.robustness import robustness_stage

    apply_threads(args)
    preset = get_preset(args.preset)
    if args.sources:
        preset = replace(preset, sources=tuple(preset.source(name) for name in args.sources))
    if args.steps is not None:
        preset = replace(preset, robustness_steps=args.steps)
    with CacheWriter(root(args)) as writer:
        written = robustness_stage(preset, writer, device=args.device, progress=not args.no_progress,
                                   n_images=args.n_images, constraints=args.eps)
    print(f"{written} robustness rows recorded")
    return 0


COMMANDS = [
    Command("train-source", "train (or load) source models: a preset's, or one given by --name", _train_arguments,
            cmd_train_source),
    Command("import-source", "register a checkpoint file (torchvision, MadryLab or ours) as a source",
            _import_arguments, cmd_import_source),
    Command("eval-robustness", "clean and PGD(k) accuracy of a preset's sources at several eps",
            _robustness_arguments, cmd_eval_robustness),
]
