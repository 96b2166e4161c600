"""`rtx influence` and `rtx featviz`: the Section 6 and Figure 1b results of a preset's models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from compute.cli.args import Command, add_device, add_preset, csv, root
from compute.cli.values import NAME, NON_NEGATIVE, POSITIVE, RUN, Choice, Real
from compute.errors import RtxError

if TYPE_CHECKING:
    from compute.influence_problem import KeptRun


def _influence_arguments(p: argparse.ArgumentParser) -> None:
    from compute.influence import method_names

    add_preset(p)
    p.add_argument("--method", default="fast", type=Choice("influence method", method_names),
                   help=f"one of: {', '.join(method_names())} (default fast)")
    p.add_argument("--cutoff", type=Real(0, 1, hi_open=True), help="relative eigenvalue cut-off of the pseudo-inverse "
                   "(default: the preset's, 5e-2 as the authors' script; the paper's text says 1e-20). Every exact "
                   "method also drops the Hessian's null space (fast/dense by their reduced basis, reference below "
                   "eps * size), so 0 and 1e-20 give the exact pseudo-inverse")
    p.add_argument("--n-test", type=POSITIVE, help="score the first N test images (default: the preset's)")
    p.add_argument("--top-k", type=POSITIVE, help="most influential training images stored per test image")
    p.add_argument("--sources", type=csv(NAME), help="override the preset's sources, e.g. l2_1.5,natural")
    p.add_argument("--run", action="append", type=RUN, metavar="KEY_OR_LABEL", help="instead of the runs the "
                   "preset's influence settings name (target, size, seeds, blocks), this fine-tune (repeat for more): its run key or the label the explorer shows, e.g. 'l2_0.22 · "
                   "mnist5k · 400 images · seed 0 · 3 blocks'")
    p.add_argument("--list-runs", action="store_true", help="print the label and key of every fine-tune with kept "
                   "weights (what --run takes) and exit")
    add_device(p)


def cmd_influence(args: argparse.Namespace) -> int:
    """Influence matrices for the preset's robust and natural fine-tunes of one subset, or for the runs named."""
    from dataclasses import replace

    from compute.cache import CacheWriter
    from compute.influence import get_method
    from compute.presets import InfluenceSpec, get_preset
    from compute.settings import Settings
    from compute.stages.influence import InfluenceJob, influence_stage, run_influence

    if args.list_runs:
        return _list_runs(root(args))
    get_method(args.method)
    preset = get_preset(args.preset)
    spec = preset.influence or InfluenceSpec("", 0, 0, 0, ())
    changes = {"n_test": args.n_test, "top_k": args.top_k, "cutoff": args.cutoff, "sources": args.sources}
    spec = replace(spec, **{k: v for k, v in changes.items() if v is not None})
    if not args.run and preset.influence is None:
        raise RtxError(f"preset {args.preset!r} names no influence runs; pass --run KEY_OR_LABEL")
    runs = find_runs(root(args), args.run) if args.run else []
    if not runs:
        check_influence(preset, spec, root(args))
    # Where the targets' images are and whether to skip unreadable ones: $RTX_DATA, $RTX_SKIP_BAD_IMAGES
    data = Settings.from_env(device=args.device)
    with CacheWriter(root(args)) as writer:
        for kept in runs:
            job = InfluenceJob(kept.key, args.method, spec.cutoff, spec.n_test, spec.top_k)
            computed = run_influence(writer, kept, job, args.device, data.data_root, data.skip_bad_images)
            print(f"{kept.label} ({kept.key}) -> {job.key} ({'computed' if computed else 'already in the cache'})")
        if not runs:
            influence_stage(replace(preset, influence=spec), writer, device=args.device,
                            progress=not args.no_progress, method=args.method, data_root=data.data_root,
                            skip_bad_images=data.skip_bad_images)
    return 0


def _list_runs(cache: Path) -> int:
    from compute.cache import CacheReader
    from compute.influence_problem import kept_runs

    reader = CacheReader(cache)
    try:
        runs = kept_runs(reader)
    finally:
        reader.close()
    for run in runs:
        print(f"{run.label}\t{run.key}")
    if not runs:
        print(f"no fine-tune in the cache at {cache} kept its weights; `rtx precompute` keeps those of its influence "
              "runs")
    return 0


def find_runs(cache: Path, texts: list[str]) -> list[KeptRun]:
    """Before any work: every run named (key or label) is a completed run in the cache; one line for all misses."""
    from compute.influence_problem import find_run
    from compute.validation import raise_problems

    found: list[KeptRun] = []
    problems: list[str] = []
    for text in texts:
        try:
            found.append(find_run(cache, text))
        except RtxError as err:
            problems.append(str(err))
    raise_problems("--run", problems)
    return found


def check_influence(preset, spec, cache) -> None:
    """Before any work: the preset's pair is a valid plan."""
    from compute.validation import influence_problems, raise_problems, recorded_sources, source_architectures

    recorded = {name: arch for name, (arch, _) in recorded_sources(cache).items()}
    problems = influence_problems(spec, source_architectures(preset, recorded), "run `rtx precompute` first")
    raise_problems(preset.name, problems)


def _seed_names() -> list[str]:
    from compute.featviz import seed_names

    return seed_names()


def _featviz_arguments(p: argparse.ArgumentParser) -> None:
    add_preset(p)
    p.add_argument("--sources", type=csv(NAME), help="source models (default: the preset's)")
    p.add_argument("--seed-images", type=csv(Choice("seed image", _seed_names)), help="seed photos from assets/seeds, e.g. chelsea,coffee,rocket")
    p.add_argument("--units", type=csv(NON_NEGATIVE), help="penultimate-layer units, e.g. 0,1,2")
    p.add_argument("--ascent-steps", type=POSITIVE, help="gradient-ascent steps (default: the preset's)")
    p.add_argument("--step-size", type=Real(0, lo_open=True), help="L2 length of each ascent step inside the eps ball (default: the preset's, else the "
                   "attacks' rule step_mult * eps / steps)")
    add_device(p)


def cmd_featviz(args: argparse.Namespace) -> int:
    """Activation maximisation of penultimate units from the shipped seed photos, for the preset's sources."""
    from dataclasses import replace

    from compute.cache import CacheWriter
    from compute.presets import FeatvizSpec, get_preset
    from compute.stages.featviz import featviz_stage
    from compute.validation import featviz_problems, raise_problems, recorded_sources, source_architectures

    preset = get_preset(args.preset)
    spec = preset.featviz or FeatvizSpec(sources=(preset.natural,))
    changes = {"sources": args.sources, "seed_images": args.seed_images, "units": args.units,
               "steps": args.ascent_steps, "step_size": args.step_size}
    spec = replace(spec, **{k: v for k, v in changes.items() if v is not None})
    recorded = {name: arch for name, (arch, _) in recorded_sources(root(args)).items()}
    archs = source_architectures(preset, recorded, train=False)
    raise_problems(preset.name, featviz_problems(spec, archs, "run `rtx precompute --stages sources` first"))
    with CacheWriter(root(args)) as writer:
        featviz_stage(replace(preset, featviz=spec), writer, device=args.device, progress=not args.no_progress)
    return 0


COMMANDS = [
    Command("influence", "influence matrices, top-k and on-demand query data for robust vs natural",
            _influence_arguments, cmd_influence),
    Command("featviz", "feature visualisation: maximise penultimate units from seed photos", _featviz_arguments,
            cmd_featviz),
]
