"""The `finetune` stage: the preset's fine-tuning grid, planned, minus what is done, run by an executor, recorded.

Each result is written in one transaction as it arrives (compute.sweep has the plan and the executors), so
Ctrl-C or kill -9 loses at most the runs in flight; a run that raises is recorded as failed and the sweep goes on.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from compute.cache import CacheWriter
from compute.errors import RtxError, lookup
from compute.finetune import FinetuneConfig, FinetuneJob, FinetuneResult
from compute.models import save_checkpoint
from compute.paths import artefact_path
from compute.presets import Preset
from compute.settings import Settings
from compute.sweep import (
    EXECUTORS,
    SourceLoader,
    SweepCounts,
    error_message,
    failed_row,
    influence_keys,
    plan,
)


def run(preset: Preset, writer: CacheWriter, settings: Settings) -> None:
    tqdm.write(f"[finetune] {finetune_stage(preset, writer, settings).line()}")


def record_finetune(writer: CacheWriter, cfg: FinetuneConfig, result: FinetuneResult) -> None:
    """Save the fine-tune's weights when it kept them (`models/<key>.safetensors` under the cache), then record its
    run with their path: the weights first, so no recorded run points at a missing file. The finetune stage and
    compute.best_budget (a re-run that keeps weights) both record through here."""
    model_path = None
    if result.model is not None:
        path = save_checkpoint(result.model, artefact_path(writer.root, "models", cfg.key, "safetensors"),
                               {"run_key": cfg.key, "source": cfg.source, "target": cfg.target})
        model_path = str(path.relative_to(writer.root))
    writer.record_run(result.run_record(model_path), result.curve)


def finetune_stage(preset: Preset, writer: CacheWriter, settings: Settings) -> SweepCounts:
    """Run the preset's missing fine-tunes and record each as it finishes; returns counts (and why runs failed)."""
    checksums = writer.source_checksums()
    needed = {model for g in preset.grids for name in (g.sources or [s.name for s in preset.sources])
              for model in preset.models(name)}
    missing_sources = needed - set(checksums)
    if missing_sources:
        raise RtxError(f"source models missing from the cache: {', '.join(sorted(missing_sources))}; "
                       "run the `sources` stage first (`rtx precompute` runs it)")
    configs = plan(preset, checksums, settings.test_limit)
    done = writer.done_keys()
    todo = [c for c in configs if c.key not in done][: settings.max_runs]
    influence_needs = influence_keys(preset, configs)
    counts = {"planned": len(configs), "cached": len(configs) - len([c for c in configs if c.key not in done]),
              "done": 0, "failed": 0}
    errors: list[str] = []
    if not todo:
        return SweepCounts(**counts)
    executor = lookup("executor", EXECUTORS, settings.executor)
    jobs = [FinetuneJob(c, settings.keep_models or preset.keep_models or c.key in influence_needs) for c in todo]
    bar = tqdm(total=len(todo), desc="fine-tunes", unit="run", position=0, disable=not settings.progress)
    for cfg, outcome in executor(jobs, SourceLoader(writer), settings):
        if isinstance(outcome, BaseException):
            writer.record_run(failed_row(cfg, outcome), [])
            errors.append(error_message(outcome))
            counts["failed"] += 1
        else:
            record_finetune(writer, cfg, outcome)
            counts["done"] += 1
        bar.update(1)
        bar.set_postfix(failed=counts["failed"])
    bar.close()
    return SweepCounts(**counts, errors=tuple(errors))
