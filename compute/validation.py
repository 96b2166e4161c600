"""Before any work: every problem of a plan, found at once, so that bad input costs one line and writes nothing.

A flag's own range is checked when it is parsed (compute.cli.values); what needs several flags, the preset or the
cache is checked here, on the dataclasses the CLI built: every target spec (registry name, `folder:` layout,
variant argument against the image size), every subset size against each target's labels and training set,
blocks against each source's architecture, the sources a grid, the influence pair or feature visualisation
names, and, for the `paper` preset, the checkpoint and dataset files (compute.paper_plan.check_paper_inputs).
`check_before_work` raises one RtxError listing all of them (or, with `dry_run`, returns the plan text with the
missing files listed); nothing has opened the cache for writing by then.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from compute.errors import RtxError, problems_error, unknown_name
from compute.presets import FeatvizSpec, FinetuneGrid, InfluenceSpec, Preset
from compute.settings import Settings


@dataclass(frozen=True)
class TargetFacts:
    """What a plan needs to know of a target spec before loading it."""

    spec: str
    classes: int
    train_size: int
    test_size: int


@functools.cache
def arch_shape(arch: str) -> tuple[int, int]:
    """(residual blocks, penultimate features) of an architecture, read from its module tree on the meta device
    (no memory, no initialisation: ResNet-50 in milliseconds)."""
    import torch

    from compute.models import build_model

    with torch.device("meta"):
        model = build_model(arch, 2)
    return len(model.blocks()), model.num_features


def target_facts(spec: str, skip_bad_images: bool = False) -> TargetFacts | str:
    """A target spec's facts, or why it cannot be one (unknown name, a folder: that is missing or badly laid out
    or holds unreadable files without `skip_bad_images`, a variant argument the images cannot take)."""
    from compute.data.registry import dataset_info
    from compute.data.variants import lowpass_mask, split_dataset_spec

    try:
        name, variant = split_dataset_spec(spec)
        info = dataset_info(name, skip_bad_images)
        if variant is not None and variant.kind == "lowres" and not 0 < variant.arg <= info.image_size:
            return (f"target {spec}: lowres({variant.arg}) needs 0 < R <= {info.image_size} for "
                    f"{info.image_size}x{info.image_size} images")
        if variant is not None and variant.kind == "lowpass":
            lowpass_mask(info.image_size, info.image_size, variant.arg)
    except RtxError as err:
        return f"target {spec}: {err}" if spec not in str(err) else str(err)
    return TargetFacts(spec, info.num_classes, info.train_size, info.test_size)


def _size_problems(facts: TargetFacts, sizes: Iterable[int | None], flag: str) -> list[str]:
    problems = []
    for n in sizes:
        if n is not None and n < facts.classes:
            problems.append(f"subset size {n} ({flag}) is smaller than the {facts.classes} labels of {facts.spec}; "
                            f"use {facts.classes} or more")
        elif n is not None and n > facts.train_size:
            problems.append(f"subset size {n} ({flag}) exceeds the {facts.train_size} training images of "
                            f"{facts.spec}; use at most {facts.train_size}, or 'all'")
    return problems


def _block_problems(blocks: Iterable[int], sources: Iterable[str], archs: Mapping[str, str | None], flag: str) -> list[str]:
    problems = []
    for arch, names in _by_arch(sources, archs).items():
        count = arch_shape(arch)[0]
        problems += [f"blocks {b} ({flag}): {_names('source', names)} ({arch}) {'has' if len(names) == 1 else 'have'} "
                     f"{count} blocks; use 0 to {count}" for b in blocks if not 0 <= b <= count]
    return problems


def _by_arch(sources: Iterable[str], archs: Mapping[str, str | None]) -> dict[str, list[str]]:
    """Architecture -> the sources of it (an unknown source is left out: it is reported as such)."""
    grouped: dict[str, list[str]] = {}
    for source in dict.fromkeys(sources):
        arch = archs.get(source)
        if arch is not None:
            grouped.setdefault(arch, []).append(source)
    return grouped


def _names(kind: str, names: list[str]) -> str:
    return f"{kind} {names[0]!r}" if len(names) == 1 else f"{kind}s {', '.join(map(repr, names))}"


def _source_problems(names: Iterable[str], archs: Mapping[str, str | None], flag: str, missing_hint: str) -> list[str]:
    """Names not in `archs` are unknown; names whose architecture is None are the preset's but not in the cache."""
    names = list(dict.fromkeys(names))
    unknown = [name for name in names if name not in archs]
    absent = [name for name in names if name in archs and archs[name] is None]
    known = [name for name, arch in archs.items() if arch is not None]
    holds = f"the cache holds {', '.join(sorted(known))}" if known else "the cache holds none"
    problems = []
    if unknown:
        problems.append(f"unknown {_names('source model', unknown)} ({flag}; valid choices: "
                        f"{', '.join(sorted(archs))}); {missing_hint}")
    if absent:
        problems.append(f"source models missing from the cache: {', '.join(absent)} ({flag}; {holds}); {missing_hint}")
    return problems


def subset_problems(spec: str, sizes: Iterable[int | None], flag: str, skip_bad_images: bool = False) -> list[str]:
    """A dataset spec and subset sizes of it (e.g. a custom source's --dataset and --train-size)."""
    found = target_facts(spec, skip_bad_images=skip_bad_images)
    return [found] if isinstance(found, str) else _size_problems(found, sizes, flag)


def pgd_steps_problems(constraint: str, steps: int | None) -> list[str]:
    """A PGD constraint trained with 0 attack steps (--steps 0 means 'no attack': only for none or gaussian)."""
    from compute.attacks import parse_constraint

    try:
        parse_constraint(constraint, 1 if steps is None else steps)
    except RtxError as err:
        return [str(err)]
    return []


def source_problems(names: Iterable[str], preset: Preset, flag: str) -> list[str]:
    """Names that must be sources of `preset` (e.g. `rtx train-source --only`)."""
    return _source_problems(names, {s.name: s.arch for s in preset.trained_sources()}, flag,
                           f"{flag} selects sources of the {preset.name} preset")


def grid_problems(preset: Preset, archs: Mapping[str, str | None], missing_hint: str,
                  skip_bad_images: bool = False) -> list[str]:
    """Every problem of the preset's fine-tuning grids; `archs` maps each source a run may use to its architecture."""
    problems: list[str] = []
    facts: dict[str, TargetFacts | str] = {}
    every = [name for grid in preset.grids for name in grid.sources or tuple(s.name for s in preset.sources)]
    problems += _source_problems(every, archs, "the preset's or --sources", missing_hint)
    for grid in preset.grids:
        problems += _axis_problems(grid)
        sources = grid.sources or tuple(s.name for s in preset.sources)
        for target in grid.targets:
            found = facts.setdefault(target, target_facts(target, skip_bad_images))
            if isinstance(found, str):
                problems.append(f"{found} (--targets)")
            else:
                problems += _size_problems(found, grid.sizes, "--sizes")
        problems += _block_problems(grid.blocks, sources, archs, "--blocks")
    return problems


def _axis_problems(grid: FinetuneGrid) -> list[str]:
    """Values a preset or a caller outside the CLI may set that the CLI's flag types would have refused."""
    checks = (("epochs", grid.epochs, "--epochs"), ("test every", grid.test_every, "--test-every"),
              ("test limit", grid.test_limit, "--test-limit"))
    return [f"{what} {value} ({flag}) must be at least 1" for what, value, flag in checks
            if value is not None and value < 1]


def influence_problems(spec: InfluenceSpec, archs: Mapping[str, str | None], missing_hint: str,
                       skip_bad_images: bool = False) -> list[str]:
    """The influence pair: its target, subset size, blocks and sources, and the solve's cut-off, n-test, top-k."""
    problems = _source_problems(spec.sources, archs, "--sources", missing_hint)
    found = target_facts(spec.target, skip_bad_images)
    if isinstance(found, str):
        problems.append(f"influence {found}")
    else:
        problems += _size_problems(found, [spec.n_train], "the preset's influence subset")
    problems += _block_problems([spec.blocks], spec.sources, archs, "the preset's influence blocks")
    if not 0 <= spec.cutoff < 1:
        problems.append(f"cut-off {spec.cutoff} (--cutoff) must be >= 0 and < 1")
    if spec.n_test < 1:
        problems.append(f"n-test {spec.n_test} (--n-test) must be at least 1")
    if spec.top_k < 1:
        problems.append(f"top-k {spec.top_k} (--top-k) must be at least 1")
    return problems


def featviz_problems(spec: FeatvizSpec, archs: Mapping[str, str | None], missing_hint: str) -> list[str]:
    """Feature visualisation: its sources, seed photos, units (below each source's feature count) and steps."""
    from compute.featviz import seed_names

    problems = _source_problems(spec.sources, archs, "--sources", missing_hint)
    problems += [f"{unknown_name('seed image', name, seed_names())} (--seed-images)" for name in spec.seed_images
                 if name not in seed_names()]
    for arch, names in _by_arch(spec.sources, archs).items():
        features = arch_shape(arch)[1]
        problems += [f"unit {u} (--units): {_names('source', names)} ({arch}) {'has' if len(names) == 1 else 'have'} "
                     f"{features} penultimate units; use 0 to {features - 1}" for u in spec.units if not 0 <= u < features]
    if spec.steps < 1:
        problems.append(f"ascent steps {spec.steps} (--ascent-steps) must be at least 1")
    if spec.step_size is not None and not spec.step_size > 0:
        problems.append(f"step size {spec.step_size} (--step-size) must be > 0")
    return problems


def source_architectures(preset: Preset, recorded: Mapping[str, str], train: bool = True) -> dict[str, str | None]:
    """Source name -> architecture of every source a plan may name: those the cache records (`recorded`, name ->
    arch) and the preset's; with `train` False (the work uses only what the cache holds), a preset source the cache
    lacks maps to None (compute.validation reports it missing from the cache)."""
    return {**{s.name: s.arch if train else None for s in preset.trained_sources()}, **recorded}


def recorded_sources(root: Path) -> dict[str, tuple[str, str]]:
    """Source name -> (arch, checksum) of the sources the cache at `root` records (read from its snapshot)."""
    from compute.cache import CacheReader

    reader = CacheReader(root)
    try:
        rows = reader.source_models()
    finally:
        reader.close()
    if rows.empty:
        return {}
    return {name: (arch, checksum) for name, arch, checksum in zip(rows["name"], rows["arch"], rows["checksum"],
                                                                    strict=True)}


MISSING_SOURCE_HINT = "run `rtx precompute --stages sources` (or `rtx train-source`) first"


def plan_problems(preset: Preset, archs: Mapping[str, str | None], stages: Collection[str],
                  skip_bad_images: bool = False) -> list[str]:
    """Every structural problem of running `stages` of `preset` with the sources `archs` (name -> arch);
    `skip_bad_images` (`Settings.skip_bad_images`): a folder: target's unreadable files are not a problem."""
    problems: list[str] = []
    if "finetune" in stages:
        problems += grid_problems(preset, archs, MISSING_SOURCE_HINT, skip_bad_images)
    if "influence" in stages and preset.influence is not None:
        problems += influence_problems(preset.influence, archs, MISSING_SOURCE_HINT, skip_bad_images)
    if "featviz" in stages and preset.featviz is not None:
        problems += featviz_problems(preset.featviz, archs, MISSING_SOURCE_HINT)
    return list(dict.fromkeys(problems))  # a problem shared by several grids is listed once


def check_before_work(preset: Preset, root: Path, settings: Settings, stages: Collection[str], dry_run: bool = False,
                      train_sources: bool = True) -> str | None:
    """What `rtx precompute`/`finetune` do before any work: every problem of the plan and its inputs in one
    RtxError; or, with `dry_run` and a plan without structural problems, the plan text (missing files listed).

    `train_sources` False (`rtx finetune`): the runs may use only the sources the cache records; otherwise the
    preset's too (the sources stage trains or loads them, and the paper preset's checkpoint files are checked for
    the ones the cache lacks)."""
    from compute.paper_plan import check_paper_inputs, dry_run_text
    from compute.train_source import checkpoint_folder

    recorded = recorded_sources(root)
    archs = source_architectures(preset, {n: a for n, (a, _) in recorded.items()}, train_sources)
    problems = plan_problems(preset, archs, stages, settings.skip_bad_images)
    checksums = {name: checksum for name, (_, checksum) in recorded.items()}
    if not train_sources:  # only datasets: the sources come from the cache, checked above
        checksums = {spec.name: checksums.get(spec.name, "planned") for spec in preset.trained_sources()}
    inputs = check_paper_inputs(preset, checkpoint_folder(root, settings.checkpoint_dir), settings.data_root,
                                checksums, settings.trust_pickle)
    if dry_run and not problems:
        return dry_run_text(preset, settings, {**{n: "planned" for n in archs}, **checksums}, inputs)
    raise_problems(preset.name, problems + inputs)
    return None


def raise_problems(subject: str, problems: list[str]) -> None:
    """One RtxError listing every problem (none: nothing to raise)."""
    if problems:
        raise problems_error(subject, problems)


__all__ = ["MISSING_SOURCE_HINT", "TargetFacts", "arch_shape", "check_before_work",
           "featviz_problems", "grid_problems", "influence_problems", "pgd_steps_problems", "plan_problems", "raise_problems",
           "recorded_sources", "source_architectures", "source_problems", "subset_problems", "target_facts"]
