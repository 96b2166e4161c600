"""The `engine` executor through the real sweep: sibling runs train together, each recorded as its own row.

Tolerance against the one-run reference (`finetune`): the same keys, subsets and epochs; accuracies within one
test image. The engine stacks the runs (vmap: grouped convolutions, a summed loss), so its float sums run in
another order than one run's; a logit difference of ~1e-6 can flip the argmax of a test image that sits on a
tie, and nothing smaller than one image is observable in an accuracy (tests/test_engine.py checks the weights
themselves to 1e-4).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import compute.engine as engine
import compute.sweep as sweep
from compute.cache import CacheReader, CacheWriter
from compute.data import load_dataset
from compute.finetune import FinetuneJob
from compute.presets import get_preset
from compute.settings import Settings
from compute.stages.finetune import finetune_stage
from compute.sweep import plan
from tests.helpers.executors import assert_executor_matches_in_process

ENGINE = Settings(executor="engine", device="cpu", progress=False)
ONE_TEST_IMAGE = 1 / len(load_dataset("digits", "test")) + 1e-9


def _tiny(**overrides):
    return get_preset("tiny").with_overrides(**{"sizes": (20, 40), "seeds": (5, 6), **overrides})


def test_engine_executor_records_the_same_runs_as_one_run_at_a_time(source_cache: Path) -> None:
    assert_executor_matches_in_process(source_cache, _tiny(), ENGINE, acc_tol=ONE_TEST_IMAGE)


def test_default_executor_is_the_engine_on_cuda_and_local_on_a_cpu() -> None:
    assert Settings.from_env(device="cpu").executor == "local"  # the tiny/demo fixtures' numbers stay as recorded
    assert Settings.from_env(device="cuda").executor == "engine"
    assert Settings.from_env(device="cuda", executor="local").executor == "local"


def _count_executions(monkeypatch) -> list[str]:
    """Keys of every run actually trained, by either executor (`finetune` one at a time, the engine per group)."""
    executed: list[str] = []
    real_finetune, real_group = sweep.finetune, engine.train_group
    monkeypatch.setattr(sweep, "finetune", lambda src, cfg, **kw: executed.append(cfg.key) or real_finetune(src, cfg, **kw))
    monkeypatch.setattr(engine, "train_group", lambda src, cfgs, *a, **kw: executed.extend(c.key for c in cfgs)
                        or real_group(src, cfgs, *a, **kw))
    return executed


@pytest.mark.parametrize(("first", "second"), [("local", "engine"), ("engine", "local")])
def test_resume_across_executors_does_no_run_twice(source_cache: Path, monkeypatch, first: str, second: str) -> None:
    preset = _tiny(seeds=(5, 6, 7))
    executed = _count_executions(monkeypatch)
    with CacheWriter(source_cache) as writer:
        all_keys = {c.key for c in plan(preset, writer.source_checksums())}
        counts = finetune_stage(preset, writer, Settings(executor=first, device="cpu", progress=False, max_runs=3))
        done_first = writer.done_keys()
        assert counts["done"] == 3 and len(done_first) == 3 and set(executed) == done_first
        executed.clear()
        counts = finetune_stage(preset, writer, Settings(executor=second, device="cpu", progress=False))
        assert sorted(executed) == sorted(all_keys - done_first)  # each missing run once, none of the first half
        assert counts["cached"] == 3 and counts["done"] == len(all_keys) - 3 and writer.done_keys() == all_keys


def test_each_group_is_recorded_before_the_next_one_trains(source_cache: Path, monkeypatch) -> None:
    """kill -9 loses at most the group in flight: the driver gets a group's outcomes as soon as it finishes."""
    executed = _count_executions(monkeypatch)
    with CacheWriter(source_cache) as writer:
        jobs = [(c, False) for c in plan(_tiny(), writer.source_checksums())]
        outcomes = sweep.run_engine(jobs, sweep.SourceLoader(writer), ENGINE.replace(max_group=1))
        cfg, result = next(outcomes)
        assert executed == [cfg.key] and result.final_test_acc >= 0
        outcomes.close()


def test_engine_failures_are_recorded_with_the_reason_and_the_sweep_goes_on(source_cache: Path) -> None:
    preset = _tiny(targets=("digits+lowres(100)", "digits"), sizes=(20,), seeds=(1,))
    with CacheWriter(source_cache) as writer:
        counts = finetune_stage(preset, writer, ENGINE)
    assert (counts.planned, counts.cached, counts.done, counts.failed) == (4, 0, 2, 2)
    runs = CacheReader(source_cache).runs()
    failed = runs[runs.status == "failed"]
    assert set(failed.target) == {"digits+lowres(100)"} and failed.error.str.contains("lowres\\(100\\) needs").all()


def test_out_of_device_memory_halves_the_group_then_records_a_one_line_failure(source_cache: Path, monkeypatch) -> None:
    """Groups of 2 do not fit: they are halved and run; runs of n=40 never fit: recorded as failed with the
    engine's one-line reason, while every finished run stays recorded."""
    real = engine.train_group

    def tight_memory(src, cfgs, *args, **kwargs):
        if len(cfgs) > 1 or cfgs[0].n_train == 40:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(src, cfgs, *args, **kwargs)

    monkeypatch.setattr(engine, "train_group", tight_memory)
    with CacheWriter(source_cache) as writer:
        counts = finetune_stage(_tiny(), writer, ENGINE.replace(max_group=2))
    assert counts["done"] == 4 and counts["failed"] == 4
    runs = CacheReader(source_cache).runs()
    assert set(runs[runs.status == "done"].n_train) == {20}
    errors = runs[runs.status == "failed"].error
    assert errors.str.contains("out of device memory with a single run").all()
    assert not errors.str.contains("\n").any()


# --- how Ray tasks are cut and sized (no Ray needed) -------------------------------------------------------------
def test_ray_groups_are_siblings_cut_to_max_group_in_plan_order() -> None:
    preset = _tiny(seeds=(5, 6, 7))
    configs = plan(preset, {"natural": "a", "l2_1.5": "b"})
    jobs = [FinetuneJob(c, i == 0) for i, c in enumerate(configs)]
    whole = sweep.run_groups(jobs, None)
    assert [len(g) for g in whole] == [3] * 4  # 2 sources x 2 sizes, the seeds of a setting together
    assert all(len({engine.sibling_key(c) for c, _ in g}) == 1 for g in whole)
    cut = sweep.run_groups(jobs, 2)
    assert [len(g) for g in cut] == [2, 1] * 4 and [c for g in cut for c, _ in g] == configs
    assert [job.keep_model for g in cut for job in g] == [True] + [False] * (len(configs) - 1)  # flags travel along


def test_task_gpus_come_from_the_flag_the_measured_memory_or_a_whole_gpu() -> None:
    gib = 1 << 30
    assert sweep.gpu_fraction(4, 2 * gib, 80 * gib) == 0.13  # 8 GiB of 64 usable, rounded up to 1/100
    assert sweep.gpu_fraction(40, 2 * gib, 80 * gib) == 1.0  # capped: the engine halves what does not fit
    assert sweep.gpu_fraction(1, 1, 80 * gib) == 0.01
    group = [(c, False) for c in plan(_tiny(), {"natural": "a", "l2_1.5": "b"})[:2]]
    assert sweep.TaskResources(Settings(gpus_per_task=0.25), cluster_gpus=0).gpus(None, group) == 0  # CPU cluster
    assert sweep.TaskResources(Settings(gpus_per_task=0.25), cluster_gpus=8).gpus(None, group) == 0.25
    if not torch.cuda.is_available():  # nothing to measure with: a whole GPU per task
        assert sweep.TaskResources(Settings(), cluster_gpus=8).gpus(None, group) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_default_executor_is_the_engine_and_records_the_same_runs(source_cache: Path) -> None:
    """The CUDA default through the real sweep: the engine with its group size from free memory (fp32 tiny
    grid; CUDA's convolution algorithms differ from the CPU's, so two test images of tolerance)."""
    settings = Settings.from_env(device="cuda", progress=False)
    assert settings.executor == "engine"
    assert_executor_matches_in_process(source_cache, _tiny(), settings, acc_tol=2 * ONE_TEST_IMAGE)
