"""The Ray executor on a local Ray bound to loopback: the local executor's numbers, recorded by the driver alone.

One Ray for the module (starting one costs seconds). Its workers run `_crash_once_hook` at start: a run with
seed CRASH_SEED kills its worker process (os._exit) the first time any worker trains it, once per marker file,
so the retry of a task whose worker died can be tested without touching the code under test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import compute.sweep as sweep
from compute.cache import CacheReader, CacheWriter
from compute.presets import get_preset
from compute.settings import Settings
from compute.stages.finetune import finetune_stage
from compute.sweep import plan
from tests.helpers.executors import assert_recorded_runs_match_in_process
from tests.helpers.fake_torchvision import write_mnist

ray = pytest.importorskip("ray", reason="the Ray executor needs the [cluster] extra (installed by make test)")
pytestmark = pytest.mark.slow

CRASH_SEED = 7
RAY = Settings(executor="ray", progress=False)


def _crash_once_hook() -> None:
    """Runs in every Ray worker process at start (runtime_env's worker_process_setup_hook)."""
    import os
    from pathlib import Path

    import compute.sweep as sweep

    marker, real = Path(os.environ["RTX_TEST_CRASH_MARKER"]), sweep.finetune

    def finetune(source, cfg, **kwargs):
        if cfg.seed == CRASH_SEED and not marker.exists():
            marker.touch()
            os._exit(1)  # the worker process dies mid-task, as a node lost or an OOM kill would
        return real(source, cfg, **kwargs)

    sweep.finetune = finetune


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray on 127.0.0.1 with two CPUs; yields the crash marker's path."""
    marker = tmp_path_factory.mktemp("ray") / "crashed"
    saved = {k: os.environ.get(k) for k in ("RAY_DISABLE_USAGE_STATS", "RAY_AUTH_MODE")}
    os.environ.update(RAY_DISABLE_USAGE_STATS="1", RAY_AUTH_MODE="disabled")
    ray.init(address="local", include_dashboard=False, num_cpus=2, _node_ip_address="127.0.0.1", log_to_driver=False,
             runtime_env={"worker_process_setup_hook": _crash_once_hook,
                          "env_vars": {"RTX_TEST_CRASH_MARKER": str(marker)}})
    try:
        yield marker
    finally:
        ray.shutdown()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _tiny(**overrides):
    return get_preset("tiny").with_overrides(**{"sizes": (20, 40), "seeds": (5, 6), **overrides})


@pytest.mark.parametrize("first", ["local", "ray"])
def test_ray_records_the_local_executors_runs_and_resumes_across_executors(source_cache: Path, local_ray,
                                                                           monkeypatch, first: str) -> None:
    """Half the tiny grid on one executor, the rest on the other: every run once, each equal to `finetune` here
    (Ray's CPU tasks run `finetune` itself, so to 1e-6: only wall times differ)."""
    preset = _tiny()
    second = "local" if first == "ray" else "ray"
    executed: list[str] = []  # runs trained in this process (the local executor); Ray's run in its workers
    real = sweep.finetune
    monkeypatch.setattr(sweep, "finetune", lambda src, cfg, **kw: executed.append(cfg.key) or real(src, cfg, **kw))
    with CacheWriter(source_cache) as writer:
        all_keys = {c.key for c in plan(preset, writer.source_checksums())}
        assert finetune_stage(preset, writer, RAY.replace(executor=first, max_runs=3))["done"] == 3
        done_first = writer.done_keys()
        counts = finetune_stage(preset, writer, RAY.replace(executor=second))
        assert (counts["cached"], counts["done"], counts["failed"]) == (3, len(all_keys) - 3, 0)
    local_keys = done_first if first == "local" else all_keys - done_first
    assert sorted(executed) == sorted(local_keys)  # the local half ran here, once each, and nothing else did
    assert_recorded_runs_match_in_process(source_cache, preset)


def test_a_worker_killed_mid_task_is_retried_and_the_sweep_completes(source_cache: Path, local_ray: Path) -> None:
    assert not local_ray.exists()
    preset = _tiny(sizes=(20,), seeds=(CRASH_SEED, 8))
    with CacheWriter(source_cache) as writer:
        counts = finetune_stage(preset, writer, RAY)
    assert local_ray.exists(), "the first attempt should have killed its worker"
    assert counts == {"planned": 4, "cached": 0, "done": 4, "failed": 0}
    assert set(CacheReader(source_cache).runs().seed) == {CRASH_SEED, 8}


def test_workers_read_targets_from_the_shared_data_root(source_cache: Path, local_ray, tmp_path: Path) -> None:
    """Workers load the target through the registry from Settings.data_root (a folder every node can read):
    with it the runs are done; with an empty one each run fails with the loader's one-line error (not retried:
    a bad input fails the same way every time)."""
    preset = _tiny(targets=("mnist",), sizes=(20,), seeds=(5,))
    empty = tmp_path / "empty"
    empty.mkdir()
    with CacheWriter(source_cache) as writer:
        counts = finetune_stage(preset, writer, RAY.replace(data_root=str(empty)))
        assert counts["failed"] == 2
        errors = CacheReader(source_cache).runs().error
        assert errors.str.contains(f"MNIST not found under {empty}", regex=False).all()
        counts = finetune_stage(preset, writer, RAY.replace(data_root=str(write_mnist(tmp_path / "shared"))))
        assert counts["done"] == 2
    runs = CacheReader(source_cache).runs()
    assert set(runs.status) == {"done"}  # the failed rows were retried by the second sweep and replaced


def test_ctrl_c_cancels_outstanding_tasks_and_keeps_finished_runs(source_cache: Path, local_ray, monkeypatch) -> None:
    cancelled = []
    real_cancel = ray.cancel
    monkeypatch.setattr(ray, "cancel", lambda ref, **kw: cancelled.append(ref) or real_cancel(ref, **kw))
    preset = _tiny(sizes=(20, 40, 60), seeds=(5,))  # six one-run tasks on two CPUs
    with CacheWriter(source_cache) as writer:
        jobs = [(c, False) for c in plan(preset, writer.source_checksums())]
        outcomes = sweep.run_ray(jobs, sweep.SourceLoader(writer), RAY)
        cfg, first = next(outcomes)
        with pytest.raises(KeyboardInterrupt):
            outcomes.throw(KeyboardInterrupt)
    assert not isinstance(first, BaseException) and first.final_test_acc >= 0
    assert 1 <= len(cancelled) <= len(jobs) - 1  # everything not yet returned, and nothing else
