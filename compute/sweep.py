"""Sweeps: plan -> run -> record, resumable, on one process or a Ray cluster (the `finetune` stage's machinery).

1. Plan: a preset's grids expand into `FinetuneConfig`s whose keys include the source checksum; the keys
   already recorded as done are subtracted, so a re-run only does what is missing (failed runs are retried).
2. Run: an executor runs jobs (`local`: one run at a time, in this process or on N worker processes with one
   torch thread each; `engine`: sibling runs (that differ only in the seed) together in one model call,
   compute.engine, the default on CUDA; `ray`: one Ray task per group of runs that train together, fractional
   GPUs, see `run_ray`).
   Workers never touch the database; they return `FinetuneResult`s (or the error).
3. Record: the driver writes each result in one transaction as it arrives, so Ctrl-C or kill -9 loses at
   most the runs in flight. A run that raises is recorded as failed with its error and the sweep goes on.

The stage itself (`compute.stages.finetune`) plans, subtracts what is done and records what the executors return.
"""

from __future__ import annotations

import pickle
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from compute.cache import CacheWriter
from compute.engine import per_run_bytes, run_engine, sibling_key, sibling_sets
from compute.errors import RtxError, unknown_name
from compute.finetune import FinetuneConfig, FinetuneJob, FinetuneResult, Outcome, PrefixCache, finetune
from compute.models import Classifier, load_checkpoint
from compute.presets import Preset, paper_schedule, seeds_for
from compute.records import RunRecord
from compute.replicas import family_of
from compute.run_label import RunLabel
from compute.settings import Settings
from compute.workers import Report, process_map


def plan(preset: Preset, checksums: dict[str, str], test_limit: int | None = None) -> list[FinetuneConfig]:
    """Every fine-tune of the preset, grouped by (source, target, blocks) so frozen-prefix caches are reused; a
    replicated source's seeds start from its replicas in turn (`Preset.source_for`)."""
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
                            model = preset.source_for(source, seed)  # a replica of the source, if it has some
                            if model not in checksums:
                                raise unknown_name("source model", model, list(checksums))
                            cfg = FinetuneConfig(
                                source=model, source_checksum=checksums[model], target=target, n_train=n_train,
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
        if c.target == spec.target and c.n_train == spec.n_train and c.seed in spec.all_seeds
        and c.blocks == spec.blocks and family_of(c.source) in spec.sources
    }


# --- executors ----------------------------------------------------------------------------------------------
def run_local(jobs: list[FinetuneJob], sources: Callable[[str], Classifier],
              settings: Settings) -> Iterator[Outcome]:
    """Run jobs on this machine: in this process, or on `settings.workers` processes when more than one."""
    if settings.workers > 1 and len(jobs) > 1:
        yield from run_pool(jobs, sources, settings)
        return
    prefixes = PrefixCache()
    for cfg, keep_model in jobs:
        bar = tqdm(total=cfg.epochs, desc=RunLabel.of(cfg).progress(), unit="ep", leave=False, position=1,
                   disable=not settings.progress)
        try:
            yield cfg, finetune(sources(cfg.source), cfg, keep_model=keep_model, device=settings.device,
                                on_epoch=lambda *_, b=bar: b.update(1), data_root=settings.data_root,
                                prefix_cache=prefixes, skip_bad_images=settings.skip_bad_images)
        except Exception as err:  # recorded as a failed run; the sweep goes on
            yield cfg, err
        finally:
            bar.close()


def _finetune_job(job: FinetuneJob, shared: tuple[dict[str, Classifier], Settings, PrefixCache],
                  report: Report) -> FinetuneResult:
    """One fine-tune in a worker process; `shared` is unpickled once per worker, so its PrefixCache is that
    worker's own and serves the worker's consecutive jobs."""
    (cfg, keep_model), (models, settings, prefixes) = job, shared
    return finetune(models[cfg.source], cfg, keep_model=keep_model, device=settings.device, data_root=settings.data_root,
                    prefix_cache=prefixes, on_epoch=lambda epoch, epochs: report(RunLabel.of(cfg).progress(), epoch, epochs),
                    skip_bad_images=settings.skip_bad_images)


def run_pool(jobs: list[FinetuneJob], sources: Callable[[str], Classifier],
             settings: Settings) -> Iterator[Outcome]:
    """Run jobs on `settings.workers` processes with one torch thread each (see compute.workers for why).

    Jobs are handed out in plan order, so a worker's frozen-prefix cache keeps serving the
    (source, target, blocks) group it is in.
    """
    models = {name: sources(name) for name in dict.fromkeys(cfg.source for cfg, _ in jobs)}
    for (cfg, _), outcome in process_map(_finetune_job, jobs, settings.workers, (models, settings, PrefixCache()),
                                         settings.progress):
        yield cfg, outcome


# Ray: one task per group of runs that train together (a set of siblings, or a `max_group` slice of one). Worker deaths are
# retried by Ray (`max_retries`); a group whose worker died on each attempt is split into one task per run, and a
# lone run whose worker died on each attempt is recorded as failed. A run whose task returned an error is retried
# once in a new task, unless the error is an RtxError (bad input: the same every time); a second failure is
# recorded.
RAY_SYSTEM_RETRIES = 1


def run_groups(jobs: list[FinetuneJob], max_group: int | None) -> list[list[FinetuneJob]]:
    """Jobs as they train together: compute.engine's sets of siblings (runs that differ only in the seed), in
    plan order, each cut into slices of at most `max_group` runs."""
    job_of = {cfg: FinetuneJob(cfg, keep_model) for cfg, keep_model in jobs}
    groups = []
    for siblings in sibling_sets(job_of.keys()):
        size = max_group or len(siblings)
        groups += [[job_of[cfg] for cfg in siblings[i:i + size]] for i in range(0, len(siblings), size)]
    return groups


def run_group_task(model: Classifier, group: list[FinetuneJob],
                   settings: Settings) -> list[tuple[str, FinetuneResult | BaseException]]:
    """A Ray task's body: one group on the worker, as (run key, result or error) per run (errors are returned,
    not raised, so one bad run does not fail its group).

    The device is the worker's (Ray sets CUDA_VISIBLE_DEVICES for a task with GPUs; `settings.device` names the
    driver's). With a GPU the group trains together in the engine (OOM halves it); on a CPU its runs go one after
    another through `finetune`, the reference the tiny/demo fixtures record, so a CPU cluster gives the local
    executor's numbers exactly; a CPU cluster's parallelism comes from running many tasks at once. Targets load
    through the registry on the worker, from `settings.data_root` (a folder every node can read), with
    `settings.skip_bad_images` (the task gets the driver's Settings, not its environment).
    """
    on_gpu = torch.cuda.is_available()
    here = settings.replace(device=None, workers=1, progress=False, max_group=len(group))
    runner = EXECUTORS["engine" if on_gpu else "local"]
    return [(cfg.key, portable_error(outcome) if isinstance(outcome, BaseException) else outcome)
            for cfg, outcome in runner(group, lambda _: model, here)]


def portable_error(err: BaseException) -> BaseException:
    """`err` if it survives pickling (it travels back from a Ray worker), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


def gpu_fraction(runs: int, run_bytes: int, device_bytes: int) -> float:
    """GPUs one task asks for: its runs' memory over 80% of the device's, rounded up to 1/100, at most 1."""
    return min(1.0, max(0.01, -(-100 * runs * run_bytes // int(0.8 * device_bytes)) / 100))


class TaskResources:
    """`num_gpus` of each Ray task: `settings.gpus_per_task`; else, on a GPU cluster, the group's measured memory
    (compute.engine.per_run_bytes on the driver's GPU, once per target/blocks/recipe: the subset and the weights
    do not change it) as a fraction of the driver's GPU; 1 when the driver has no GPU to measure with; 0 on a
    CPU cluster."""

    def __init__(self, settings: Settings, cluster_gpus: float):
        self.settings, self.cluster_gpus = settings, cluster_gpus
        self._bytes: dict[tuple, int] = {}

    def gpus(self, model: Classifier, group: list[FinetuneJob]) -> float:
        if self.cluster_gpus <= 0:
            return 0
        if self.settings.gpus_per_task is not None:
            return self.settings.gpus_per_task
        if not torch.cuda.is_available():
            return 1
        cfg, _ = group[0]
        probe = replace(cfg, source_checksum="", n_train=min(cfg.n_train or cfg.batch_size, cfg.batch_size), seed=0)
        key = sibling_key(probe)
        if key not in self._bytes:
            self._bytes[key] = per_run_bytes(model, probe, torch.device("cuda"), self.settings.data_root,
                                            self.settings.skip_bad_images)
        return gpu_fraction(len(group), self._bytes[key], torch.cuda.get_device_properties(0).total_memory)


def connect_ray(settings: Settings):
    """The `ray` module, connected: to `settings.address`, to the Ray this process already joined, or to a new
    local one (no dashboard)."""
    try:
        import ray
    except ImportError as err:
        raise RtxError("the ray executor needs Ray: pip install 'robust-transfer-explorer[cluster]'") from err
    if not ray.is_initialized():
        local = {"include_dashboard": False} if settings.address is None else {}
        try:
            ray.init(address=settings.address, log_to_driver=False, **local)
        except ConnectionError as err:
            raise RtxError(f"cannot reach a Ray cluster at {settings.address!r} ({err}); start one with "
                           "Ray's own `ray start` (README: Running on a cluster), or leave out --address for a local Ray") from err
    return ray


def run_ray(jobs: list[FinetuneJob], sources: Callable[[str], Classifier],
            settings: Settings) -> Iterator[Outcome]:
    """Run jobs as Ray tasks, one per group of runs that train together; outcomes stream back as tasks finish.

    Only this driver writes the cache (the stage records what this yields). Ctrl-C (or closing the generator)
    cancels every outstanding task; every run already yielded stays recorded.
    """
    ray = connect_ray(settings)
    task = ray.remote(max_retries=RAY_SYSTEM_RETRIES, retry_exceptions=False)(run_group_task)
    resources = TaskResources(settings, ray.cluster_resources().get("GPU", 0))
    models: dict[str, object] = {}
    pending: dict[object, tuple[list[FinetuneJob], int]] = {}  # ref -> (group, attempt)

    def submit(group: list[FinetuneJob], attempt: int) -> None:
        name = group[0][0].source
        model = sources(name)
        if name not in models:
            models[name] = ray.put(model)
        ref = task.options(num_gpus=resources.gpus(model, group), num_cpus=settings.cpus_per_task).remote(
            models[name], group, settings)
        pending[ref] = (group, attempt)

    unsent: list[Outcome] = []
    for group in run_groups(jobs, settings.max_group):
        try:
            submit(group, 1)
        except Exception as err:  # e.g. a source checkpoint that does not load: its runs fail, the sweep goes on
            unsent += [(cfg, err) for cfg, _ in group]
    try:
        yield from unsent
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            group, attempt = pending.pop(done[0])
            try:
                outcomes = dict(ray.get(done[0]))
            except ray.exceptions.RayError as err:  # its worker died on every one of Ray's attempts
                if len(group) > 1:  # one run may be the cause: each run gets a task of its own
                    for job in group:
                        submit([job], attempt)
                else:
                    yield group[0][0], err
                continue
            retry = []
            for job in group:
                cfg, _ = job
                outcome = outcomes[cfg.key]
                if isinstance(outcome, BaseException) and attempt == 1 and not isinstance(outcome, RtxError):
                    retry.append(job)
                else:
                    yield cfg, outcome
            if retry:
                submit(retry, 2)
    finally:
        for ref in pending:  # Ctrl-C or the consumer stopped: nothing outstanding keeps running
            ray.cancel(ref, force=True)


# local: one run at a time (the reference); engine: sibling runs in one model call (compute.engine; the default
# on CUDA, see compute.settings.default_executor); ray: groups as Ray tasks.
EXECUTORS: dict[str, Callable[..., Iterator[Outcome]]] = {"local": run_local, "engine": run_engine, "ray": run_ray}


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


def error_message(err: BaseException) -> str:
    """The first line of an error with its type ('OutOfMemoryError: CUDA out of memory. Tried to ...'), as a failed
    run records it and the sweep's summary counts it."""
    return f"{type(err).__name__}: {err}".splitlines()[0][:500]


FAILURES_SHOWN = 3  # distinct error messages in the summary line; `rtx status --failed` lists every failed run
FAILED_COMMAND = "`rtx status --failed` lists them (`rtx status --clear-failed` forgets them)"


@dataclass(frozen=True)
class SweepCounts:
    """What a sweep did: runs planned, found in the cache, run, failed, and each failure's message."""

    planned: int
    cached: int
    done: int
    failed: int
    errors: tuple[str, ...] = ()  # `error_message` of each failed run, in the order they failed

    def __getitem__(self, name: str) -> int:
        """counts['done'] as well as counts.done (callers written when the counts were a dict)."""
        return getattr(self, name)

    def line(self) -> str:
        """'8 planned, 0 already cached, 0 run, 8 failed', then why the runs failed and where to see them all."""
        text = f"{self.planned} planned, {self.cached} already cached, {self.done} run, {self.failed} failed"
        return text + (f"; {failure_summary(self.errors)}" if self.errors else "")


def failure_summary(errors: Sequence[str]) -> str:
    """'6 x OutOfMemoryError: ..., 2 x RuntimeError: ...; `rtx status --failed` lists them': the distinct messages,
    most frequent first (at most FAILURES_SHOWN, each cut to 160 characters)."""
    common = Counter(errors).most_common()
    shown = [f"{n} x {message if len(message) <= 160 else message[:157] + '...'}"
             for message, n in common[:FAILURES_SHOWN]]
    rest = len(common) - FAILURES_SHOWN
    return (", ".join(shown) + (f" and {rest} other error(s)" if rest > 0 else "")) + f"; {FAILED_COMMAND}"


def failed_row(cfg: FinetuneConfig, err: BaseException) -> RunRecord:
    from dataclasses import asdict

    message = error_message(err)
    return RunRecord(cfg.key, "failed", cfg.source, cfg.target, cfg.n_train, cfg.seed, cfg.blocks, cfg.epochs,
                     asdict(cfg), error=message + " | " + "".join(traceback.format_exception_only(err)).strip()[-300:])
