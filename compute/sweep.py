"""Sweeps: plan -> run -> record, resumable, on one process or a Ray cluster.

1. Plan: a preset's grids expand into `FinetuneConfig`s whose keys include the source checksum; the keys
   already recorded as done are subtracted, so a re-run only does what is missing (failed runs are retried).
2. Run: an executor runs jobs (`local`: in this process, or on N worker processes with one torch thread
   each; `ray`: remote tasks, one GPU each when present).
   Workers never touch the database; they return `FinetuneResult`s.
3. Record: the driver writes each result in one transaction as it arrives, so Ctrl-C or kill -9 loses at
   most the runs in flight. A run that raises is recorded as failed with its error and the sweep goes on.

`precompute` chains the stages of a preset: sources -> robustness -> thumbnails -> fine-tunes -> influence
-> feature visualisation. Each stage skips what the cache already holds.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm

from compute.cache import CacheWriter
from compute.data import load_dataset
from compute.errors import RtxError, lookup, unknown_name
from compute.finetune import FinetuneConfig, FinetuneResult, finetune
from compute.images import to_png
from compute.models import Classifier, load_checkpoint, save_checkpoint
from compute.paths import artefact_path
from compute.presets import Preset, paper_schedule, seeds_for
from compute.settings import Settings
from compute.workers import Report, process_map

STAGES = ("sources", "robustness", "thumbnails", "finetune", "influence", "featviz")


def plan(preset: Preset, checksums: dict[str, str], test_limit: int | None = None) -> list[FinetuneConfig]:
    """Every fine-tune of the preset, grouped by (source, target, blocks) so frozen-prefix caches are reused."""
    configs: dict[str, FinetuneConfig] = {}
    for grid in preset.grids:
        sources = grid.sources or tuple(s.name for s in preset.sources)
        for source in sources:
            if source not in checksums:
                raise unknown_name("source model", source, list(checksums))
            for target in grid.targets:
                for blocks in grid.blocks:
                    for n_train in grid.sizes:
                        schedule = paper_schedule(n_train)
                        for seed in seeds_for(grid, n_train):
                            cfg = FinetuneConfig(
                                source=source, source_checksum=checksums[source], target=target, n_train=n_train,
                                seed=seed, blocks=blocks, epochs=grid.epochs or schedule.epochs,
                                test_every=grid.test_every or schedule.test_every, augment=grid.augment,
                                feature_cache=grid.feature_cache, test_limit=test_limit or grid.test_limit,
                            )
                            configs.setdefault(cfg.key, cfg)
    return list(configs.values())


def influence_keys(preset: Preset, configs: Iterable[FinetuneConfig]) -> set[str]:
    """Keys of the runs whose weights the influence stage needs (always kept)."""
    spec = preset.influence
    if spec is None:
        return set()
    return {
        c.key for c in configs
        if c.target == spec.target and c.n_train == spec.n_train and c.seed == spec.seed
        and c.blocks == spec.blocks and c.source in spec.sources
    }


# --- executors ----------------------------------------------------------------------------------------------
Outcome = tuple[FinetuneConfig, FinetuneResult | BaseException]


def _run_label(cfg: FinetuneConfig) -> str:
    return f"  {cfg.source} -> {cfg.target} n={cfg.n_train} k={cfg.blocks}"


def run_local(jobs: list[tuple[FinetuneConfig, bool]], sources: Callable[[str], Classifier],
              settings: Settings) -> Iterator[Outcome]:
    """Run jobs on this machine: in this process, or on `settings.workers` processes when more than one."""
    if settings.workers > 1 and len(jobs) > 1:
        yield from run_pool(jobs, sources, settings)
        return
    for cfg, keep in jobs:
        bar = tqdm(total=cfg.epochs, desc=_run_label(cfg), unit="ep", leave=False, position=1,
                   disable=not settings.progress)
        try:
            yield cfg, finetune(sources(cfg.source), cfg, keep_model=keep, device=settings.device,
                                on_epoch=lambda *_, b=bar: b.update(1), data_root=settings.data_root)
        except Exception as err:  # recorded as a failed run; the sweep goes on
            yield cfg, err
        finally:
            bar.close()


def _finetune_job(job: tuple[FinetuneConfig, bool], shared: tuple[dict[str, Classifier], Settings],
                  report: Report) -> FinetuneResult:
    (cfg, keep), (models, settings) = job, shared
    return finetune(models[cfg.source], cfg, keep_model=keep, device=settings.device, data_root=settings.data_root,
                    on_epoch=lambda epoch, epochs: report(_run_label(cfg), epoch, epochs))


def run_pool(jobs: list[tuple[FinetuneConfig, bool]], sources: Callable[[str], Classifier],
             settings: Settings) -> Iterator[Outcome]:
    """Run jobs on `settings.workers` processes with one torch thread each (see compute.workers for why).

    Jobs are handed out in plan order, so a worker's frozen-prefix cache keeps serving the
    (source, target, blocks) group it is in.
    """
    models = {name: sources(name) for name in dict.fromkeys(cfg.source for cfg, _ in jobs)}
    for (cfg, _), outcome in process_map(_finetune_job, jobs, settings.workers, (models, settings),
                                         settings.progress):
        yield cfg, outcome


def run_ray(jobs: list[tuple[FinetuneConfig, bool]], sources: Callable[[str], Classifier],
            settings: Settings) -> Iterator[Outcome]:
    """Run jobs as Ray tasks (one GPU each when the cluster has GPUs); results stream back as they finish."""
    try:
        import ray
    except ImportError as err:
        raise RtxError("the ray executor needs Ray: pip install 'robust-transfer-explorer[cluster]'") from err
    local = {"include_dashboard": False, "num_cpus": None} if settings.address is None else {}
    ray.init(address=settings.address, ignore_reinit_error=True, log_to_driver=False, **local)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0

    @ray.remote(num_gpus=gpus, num_cpus=1, max_retries=0)
    def remote_finetune(model: Classifier, cfg: FinetuneConfig, keep: bool) -> FinetuneResult:
        return finetune(model, cfg, keep_model=keep, data_root=settings.data_root)

    refs = {}
    model_refs: dict[str, object] = {}
    for cfg, keep in jobs:
        if cfg.source not in model_refs:
            model_refs[cfg.source] = ray.put(sources(cfg.source))
        refs[remote_finetune.remote(model_refs[cfg.source], cfg, keep)] = cfg
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        cfg = refs.pop(done[0])
        try:
            yield cfg, ray.get(done[0])
        except ray.exceptions.RayTaskError as err:
            yield cfg, err


EXECUTORS: dict[str, Callable[..., Iterator[Outcome]]] = {"local": run_local, "ray": run_ray}


# --- stages -------------------------------------------------------------------------------------------------
class SourceLoader:
    """Loads each source model once from the checkpoint the cache records for it."""

    def __init__(self, writer: CacheWriter):
        self.writer = writer
        self._models: dict[str, Classifier] = {}

    def __call__(self, name: str) -> Classifier:
        if name not in self._models:
            row = self.writer.source_row(name)
            if row is None:
                raise RtxError(f"source model {name!r} is not in the cache; run `rtx train-source` or `rtx precompute`")
            self._models[name] = load_checkpoint(self.writer.root / row["path"])[0]
        return self._models[name]


def finetune_stage(preset: Preset, writer: CacheWriter, settings: Settings) -> dict[str, int]:
    """Run the preset's missing fine-tunes and record each as it finishes; returns counts."""
    checksums = writer.source_checksums()
    needed = {name for g in preset.grids for name in (g.sources or [s.name for s in preset.sources])}
    missing_sources = needed - set(checksums)
    if missing_sources:
        raise RtxError(f"source models missing from the cache: {', '.join(sorted(missing_sources))}; "
                       "run the `sources` stage first (`rtx precompute` runs it)")
    configs = plan(preset, checksums, settings.test_limit)
    done = writer.done_keys()
    todo = [c for c in configs if c.key not in done][: settings.max_runs]
    keep = influence_keys(preset, configs)
    counts = {"planned": len(configs), "cached": len(configs) - len([c for c in configs if c.key not in done]),
              "done": 0, "failed": 0}
    if not todo:
        return counts
    executor = lookup("executor", EXECUTORS, settings.executor)
    jobs = [(c, settings.keep_models or preset.keep_models or c.key in keep) for c in todo]
    bar = tqdm(total=len(todo), desc="fine-tunes", unit="run", position=0, disable=not settings.progress)
    for cfg, outcome in executor(jobs, SourceLoader(writer), settings):
        if isinstance(outcome, BaseException):
            writer.record_run(failed_row(cfg, outcome), [])
            counts["failed"] += 1
        else:
            model_path = None
            if outcome.model is not None:
                path = save_checkpoint(outcome.model, artefact_path(writer.root, "models", cfg.key, "safetensors"),
                                       {"run_key": cfg.key, "source": cfg.source, "target": cfg.target})
                model_path = str(path.relative_to(writer.root))
            writer.record_run(outcome.run_row(model_path), outcome.curve)
            counts["done"] += 1
        bar.update(1)
        bar.set_postfix(failed=counts["failed"])
    bar.close()
    return counts


def failed_row(cfg: FinetuneConfig, err: BaseException) -> dict[str, object]:
    from dataclasses import asdict

    message = f"{type(err).__name__}: {err}".splitlines()[0][:500]
    return {"key": cfg.key, "status": "failed", "source": cfg.source, "target": cfg.target, "n_train": cfg.n_train,
            "seed": cfg.seed, "blocks": cfg.blocks, "epochs": cfg.epochs, "config": asdict(cfg),
            "error": message + " | " + "".join(traceback.format_exception_only(err)).strip()[-300:]}


def thumbnails_stage(preset: Preset, writer: CacheWriter, data_root: str | None = None, per_class: int = 3) -> None:
    """A few test images per class of every target, for the explorer's overview."""
    targets = sorted({t for g in preset.grids for t in g.targets})
    for target in targets:
        if writer.has_thumbnails(target, "test"):
            continue
        try:
            test = load_dataset(target, "test", data_root)
        except RtxError as err:
            tqdm.write(f"skipping thumbnails of {target}: {err}")
            continue
        rows = []
        for label in range(len(test.classes)):
            idx = (test.labels == label).nonzero().flatten()[:per_class].tolist()
            rows += [{"dataset": target, "split": "test", "idx": i, "label": label, "png": to_png(test.images[i])}
                     for i in idx]
        writer.record_thumbnails(rows)


def precompute(preset: Preset, root: Path, settings: Settings, stages: Iterable[str] = STAGES) -> None:
    """Run the preset's stages in order; every stage resumes from what the cache holds."""
    stages = list(stages)
    for stage in stages:
        if stage not in STAGES:
            raise unknown_name("stage", stage, STAGES)
    start = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    with CacheWriter(root) as writer:
        for stage in STAGES:
            if stage not in stages:
                continue
            t0 = time.perf_counter()
            tqdm.write(f"[{stage}] starting")
            if stage == "sources":
                from compute.train_source import sources_stage

                sources_stage(preset, writer, device=settings.device, progress=settings.progress,
                              checkpoint_dir=settings.checkpoint_dir, trust_pickle=settings.trust_pickle,
                              workers=settings.workers, data_root=settings.data_root)
            elif stage == "robustness":
                from compute.robustness import robustness_stage

                robustness_stage(preset, writer, device=settings.device, progress=settings.progress,
                                 data_root=settings.data_root)
            elif stage == "thumbnails":
                thumbnails_stage(preset, writer, settings.data_root)
            elif stage == "finetune":
                counts = finetune_stage(preset, writer, settings)
                tqdm.write(f"[finetune] {counts['planned']} planned, {counts['cached']} already cached, "
                           f"{counts['done']} run, {counts['failed']} failed")
            elif stage == "influence" and preset.influence is not None:
                from compute.influence import influence_stage

                influence_stage(preset, writer, device=settings.device, progress=settings.progress,
                                data_root=settings.data_root)
            elif stage == "featviz" and preset.featviz is not None:
                from compute.featviz import featviz_stage

                featviz_stage(preset, writer, device=settings.device, progress=settings.progress)
            tqdm.write(f"[{stage}] done in {time.perf_counter() - t0:.1f} s")
    tqdm.write(f"precompute {preset.name}: {time.perf_counter() - start:.1f} s; cache at {root}")
