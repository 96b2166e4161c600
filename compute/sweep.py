"""Sweeps: plan -> run -> record, resumable, on one process or a Ray cluster (the `finetune` stage's machinery).

1. Plan: a preset's grids expand into `FinetuneConfig`s whose keys include the source checksum; the keys
   already recorded as done are subtracted, so a re-run only does what is missing (failed runs are retried).
2. Run: an executor runs jobs (`local`: in this process, or on N worker processes with one torch thread
   each; `ray`: remote tasks, one GPU each when present).
   Workers never touch the database; they return `FinetuneResult`s.
3. Record: the driver writes each result in one transaction as it arrives, so Ctrl-C or kill -9 loses at
   most the runs in flight. A run that raises is recorded as failed with its error and the sweep goes on.

The stage itself (`compute.stages.finetune`) plans, subtracts what is done and records what the executors return.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Iterator

from tqdm.auto import tqdm

from compute.cache import CacheWriter
from compute.errors import RtxError, unknown_name
from compute.finetune import FinetuneConfig, FinetuneResult, PrefixCache, finetune
from compute.models import Classifier, load_checkpoint
from compute.presets import Preset, paper_schedule, seeds_for
from compute.records import RunRecord
from compute.settings import Settings
from compute.workers import Report, process_map


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
                                test_every=grid.test_every or schedule.test_every,
                                **{**grid.recipe(), "test_limit": test_limit or grid.test_limit},
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
    prefixes = PrefixCache()
    for cfg, keep in jobs:
        bar = tqdm(total=cfg.epochs, desc=_run_label(cfg), unit="ep", leave=False, position=1,
                   disable=not settings.progress)
        try:
            yield cfg, finetune(sources(cfg.source), cfg, keep_model=keep, device=settings.device,
                                on_epoch=lambda *_, b=bar: b.update(1), data_root=settings.data_root,
                                prefix_cache=prefixes)
        except Exception as err:  # recorded as a failed run; the sweep goes on
            yield cfg, err
        finally:
            bar.close()


def _finetune_job(job: tuple[FinetuneConfig, bool], shared: tuple[dict[str, Classifier], Settings, PrefixCache],
                  report: Report) -> FinetuneResult:
    """One fine-tune in a worker process; `shared` is unpickled once per worker, so its PrefixCache is that
    worker's own and serves the worker's consecutive jobs."""
    (cfg, keep), (models, settings, prefixes) = job, shared
    return finetune(models[cfg.source], cfg, keep_model=keep, device=settings.device, data_root=settings.data_root,
                    prefix_cache=prefixes, on_epoch=lambda epoch, epochs: report(_run_label(cfg), epoch, epochs))


def run_pool(jobs: list[tuple[FinetuneConfig, bool]], sources: Callable[[str], Classifier],
             settings: Settings) -> Iterator[Outcome]:
    """Run jobs on `settings.workers` processes with one torch thread each (see compute.workers for why).

    Jobs are handed out in plan order, so a worker's frozen-prefix cache keeps serving the
    (source, target, blocks) group it is in.
    """
    models = {name: sources(name) for name in dict.fromkeys(cfg.source for cfg, _ in jobs)}
    for (cfg, _), outcome in process_map(_finetune_job, jobs, settings.workers, (models, settings, PrefixCache()),
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
            self._models[name] = load_checkpoint(self.writer.root / row.path)[0]
        return self._models[name]


def failed_row(cfg: FinetuneConfig, err: BaseException) -> RunRecord:
    from dataclasses import asdict

    message = f"{type(err).__name__}: {err}".splitlines()[0][:500]
    return RunRecord(cfg.key, "failed", cfg.source, cfg.target, cfg.n_train, cfg.seed, cfg.blocks, cfg.epochs,
                     asdict(cfg), error=message + " | " + "".join(traceback.format_exception_only(err)).strip()[-300:])
