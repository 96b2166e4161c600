"""Shared fixtures. Each area adds its own below; keep them small and seeded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from compute.cache import CacheWriter
from compute.models import build_model, save_checkpoint
from compute.paths import artefact_path, file_checksum
from compute.records import SourceRecord

# One intra-op thread: on a 2-core machine shared with test servers and browsers, two threads per process
# oversubscribe the cores and small tensor work becomes 5-15x slower. `make test`'s kernel-path pass sets
# RTX_TEST_THREADS=2 (another reduction order) and RTX_TEST_MKLDNN=0 (convolutions without oneDNN).
torch.set_num_threads(int(os.environ.get("RTX_TEST_THREADS", "1")))
torch.backends.mkldnn.enabled = os.environ.get("RTX_TEST_MKLDNN", "1") != "0"

# Test modules whose results come out of long float computations (training, attacks, influence, feature
# visualisation, augmentation): `make test` runs them a second time on another CPU kernel path (issue 25), so a
# test that holds only on the machine's own kernels (bit-exact float32 training, say) fails on every machine,
# not only on a user's. Tests elsewhere can opt in with `@pytest.mark.numerics`.
# (test_attacks and test_train_source check properties and same-process determinism; their one float32 outcome
# claim, the tiny end-to-end test, is marked on its own: the second pass must fit the 15-minute suite.)
NUMERICS_MODULES = frozenset({
    "test_architectures", "test_arnoldi", "test_data", "test_engine", "test_featviz", "test_featviz_numbers",
    "test_finetune", "test_influence", "test_regression_tiny", "test_spectrum", "test_training",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.rpartition(".")[2] in NUMERICS_MODULES:
            item.add_marker(pytest.mark.numerics)


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Put `sys.modules["__main__"]` back after each test. Streamlit's AppTest runs a script as `__main__` and
    leaves it there; `AppTest.from_function`'s script is a temporary file that is then deleted, and every
    worker process spawned later (compute.workers) re-runs the parent's `__main__` from its path, fails to find
    it, dies, and is replaced by the pool: a suite that hangs in tests/test_workers.py."""
    import sys

    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


def record_random_source(writer: CacheWriter, name: str, seed: int, constraint: str = "none") -> None:
    """A randomly initialised small_resnet recorded as a source model (fast stand-in for a trained one)."""
    model = build_model("small_resnet", 10, seed=seed).eval()
    path = save_checkpoint(model, artefact_path(writer.root, "sources", f"test-{name}", "safetensors"), {"name": name})
    writer.record_source_model(SourceRecord(name, "small_resnet", constraint, 0, "random", file_checksum(path),
                                            str(path.relative_to(writer.root)), meta={"test": True}))


@pytest.fixture
def source_cache(tmp_path: Path) -> Path:
    """A cache holding two random small_resnet sources named like the tiny preset's ('natural', 'l2_1.5')."""
    with CacheWriter(tmp_path) as writer:
        record_random_source(writer, "natural", 0)
        record_random_source(writer, "l2_1.5", 1, "l2:1.5")
    return tmp_path


@pytest.fixture
def tiny_cache(tmp_path: Path) -> Path:
    """A schema-true synthetic cache for the explorer (see tests/helpers/explorer_cache.py)."""
    from tests.helpers.explorer_cache import write_explorer_cache

    return write_explorer_cache(tmp_path / "cache")


# --- demo (app/demo/): a real tiny influence pair, and the demo served from it --------------------------
@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real cache from `rtx precompute --preset tiny`, restricted to what the demo reads: the sources, the
    two fine-tunes of the influence pair, their influence (with its thumbnails). Built once per session."""
    import os

    from compute.presets import get_preset
    from compute.settings import Settings
    from compute.stages import precompute

    if os.environ.get("RTX_TEST_DEMO_CACHE"):  # a cache this fixture built before, to iterate on demo tests quickly
        return Path(os.environ["RTX_TEST_DEMO_CACHE"])
    preset = get_preset("tiny")
    spec = preset.influence  # only the two fine-tunes the influence pair needs
    preset = preset.with_overrides(sizes=(spec.n_train,), seeds=(spec.seed,), blocks=(spec.blocks,))
    root = tmp_path_factory.mktemp("demo-cache")
    precompute(preset, root, Settings(progress=False), ("sources", "finetune", "influence"))
    return root


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def demo_server(demo_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """`rtx demo` on a free localhost port, in its own process (as `rtx serve` starts it); yields its URL."""
    yield from _serve(demo_cache, tmp_path_factory)


@pytest.fixture(scope="session")
def three_model_cache(demo_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo cache whose cell holds the paper analogue, a distinct best budget and natural."""
    import shutil

    from tests.helpers.three_models import add_best_budget

    root = tmp_path_factory.mktemp("three-model-cache") / "cache"
    shutil.copytree(demo_cache, root)
    add_best_budget(root)
    return root


@pytest.fixture(scope="session")
def three_model_server(three_model_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """`rtx demo` over `three_model_cache`; yields its URL."""
    yield from _serve(three_model_cache, tmp_path_factory)


def _serve(cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """Start `rtx demo` over `cache` in its own process, yield its URL once it answers, stop it afterwards."""
    import os
    import subprocess
    import time
    import urllib.request

    from compute.cli import demo_command

    port = _free_port()
    log = tmp_path_factory.mktemp("demo-server") / "server.log"
    env = {**os.environ, "RTX_CACHE": str(cache), "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(demo_command(port), env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the demo server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "config", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the demo server did not answer within 90 s:\n{log.read_text()[-3000:]}") from err
                time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
