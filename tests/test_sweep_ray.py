"""The Ray executor on a local Ray bound to loopback: the local executor's numbers, recorded by the driver alone.

One Ray for the module (starting one costs seconds). Its workers run `_faulty_hook` at start, which wraps
`finetune` so that runs with some seeds misbehave, counting attempts per run in files (workers are processes):
CRASH_ONCE kills its worker process (os._exit) on the first attempt, CRASH_ALWAYS on every attempt, FAIL_ONCE
raises on the first attempt, FAIL_ALWAYS on every one. Nothing in the code under test knows about it.
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

CRASH_ONCE, CRASH_ALWAYS, FAIL_ONCE, FAIL_ALWAYS = 7, 9, 10, 11
RAY = Settings(executor="ray", progress=False)


def _faulty_hook() -> None:
    """Runs in every Ray worker process at start (runtime_env's worker_process_setup_hook)."""
    import os
    from pathlib import Path

    import compute.sweep as sweep

    folder, real = Path(os.environ["RTX_TEST_ATTEMPTS"]), sweep.finetune

    def finetune(source, cfg, **kwargs):
        log = folder / f"{cfg.source}-{cfg.n_train}-{cfg.seed}"
        with log.open("a") as f:
            f.write("x")
        first = len(log.read_text()) == 1
        if cfg.seed == CRASH_ALWAYS or cfg.seed == CRASH_ONCE and first:
            os._exit(1)  # the worker process dies mid-task, as on a lost node or an OOM kill
        if cfg.seed == FAIL_ALWAYS or cfg.seed == FAIL_ONCE and first:
            raise RuntimeError(f"flaky run {cfg.seed}")
        return real(source, cfg, **kwargs)

    sweep.finetune = finetune


REPO_ROOT = Path(__file__).resolve().parents[1]


def attempts(folder: Path, source: str, n_train: int, seed: int) -> int:
    log = folder / f"{source}-{n_train}-{seed}"
    return len(log.read_text()) if log.exists() else 0


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray on 127.0.0.1 with two CPUs; yields the folder where workers count attempts."""
    folder = tmp_path_factory.mktemp("attempts")
    saved = {k: os.environ.get(k) for k in ("RAY_DISABLE_USAGE_STATS", "RAY_AUTH_MODE")}
    os.environ.update(RAY_DISABLE_USAGE_STATS="1", RAY_AUTH_MODE="disabled")
    ray.init(address="local", include_dashboard=False, num_cpus=2, _node_ip_address="127.0.0.1", log_to_driver=False,
             # PYTHONPATH: the hook lives in `tests`, which worker processes import by name (pytest put the repo root
             # on this process's sys.path only; CI runs `make test` without PYTHONPATH)
             runtime_env={"worker_process_setup_hook": _faulty_hook,
                          "env_vars": {"RTX_TEST_ATTEMPTS": str(folder), "PYTHONPATH": str(REPO_ROOT)}})
    try:
        yield folder
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
    preset = _tiny(sizes=(20,), seeds=(CRASH_ONCE, 8))
    with CacheWriter(source_cache) as writer:
        counts = finetune_stage(preset, writer, RAY)
    assert (counts.planned, counts.cached, counts.done, counts.failed) == (4, 0, 4, 0)
    for source in ("natural", "l2_1.5"):  # the first attempt killed its worker; Ray ran the task again
        assert attempts(local_ray, source, 20, CRASH_ONCE) == 2 and attempts(local_ray, source, 20, 8) == 1


def test_runs_that_fail_twice_are_recorded_with_their_error_and_the_rest_complete(source_cache: Path,
                                                                                   local_ray: Path) -> None:
    """One task of four runs whose first run kills its worker every time: Ray retries the task, then each run
    gets a task of its own; the crashing run is recorded as failed, a run that raises twice too (with its error),
    a run that raises once is retried in a new task and done, and the healthy run is done."""
    preset = _tiny(sizes=(20,), seeds=(CRASH_ALWAYS, 12, FAIL_ONCE, FAIL_ALWAYS), sources=("natural",))
    with CacheWriter(source_cache) as writer:
        counts = finetune_stage(preset, writer, RAY)
    assert (counts.planned, counts.cached, counts.done, counts.failed) == (4, 0, 2, 2)
    runs = CacheReader(source_cache).runs().set_index("seed")
    assert set(runs[runs.status == "done"].index) == {12, FAIL_ONCE}
    assert runs.loc[FAIL_ALWAYS, "error"].startswith("RuntimeError: flaky run 11")
    assert runs.loc[CRASH_ALWAYS, "error"].startswith("WorkerCrashedError")
    assert [attempts(local_ray, "natural", 20, s) for s in (CRASH_ALWAYS, 12, FAIL_ONCE, FAIL_ALWAYS)] == [4, 1, 2, 2]


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


def test_tasks_skip_bad_images_as_settings_say(source_cache: Path, local_ray, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings.skip_bad_images reaches the Ray task that loads a folder: target (on another machine the driver's
    environment would not): without it each run fails with the one-line refusal, with it the runs are done."""
    from tests.test_folder import _spec, _with_bad_files

    monkeypatch.delenv("RTX_SKIP_BAD_IMAGES", raising=False)
    preset = _tiny(targets=(_spec(_with_bad_files(tmp_path / "pets")),), sizes=(4,), seeds=(5,))
    with CacheWriter(source_cache) as writer:
        counts = finetune_stage(preset, writer, RAY)
        assert counts["done"] == 0 and counts["failed"] > 0
        assert CacheReader(source_cache).runs().error.str.contains("--skip-bad-images", regex=False).all()
        counts = finetune_stage(preset, writer, RAY.replace(skip_bad_images=True))
        assert counts["done"] > 0 and counts["failed"] == 0


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
