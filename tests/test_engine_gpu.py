"""The engine on CUDA (skipped without a GPU): same numbers as the CPU and as one run at a time, no host
synchronisation in a step, bf16 through vmap, free memory as PyTorch can use it.

Runs on the GPU machine with `pytest --noconftest -m gpu tests/test_engine_gpu.py` (bench/gpu_session.sh): it
imports only torch and compute modules that need nothing else (no duckdb there), and needs no conftest fixture.
Equivalence tests run with TF32 off (CUDA would otherwise run "fp32" convolutions and matrix products in TF32,
10 significant bits) and compare in float64 where the comparison is about logic (tests/helpers/engine_cases.py).
"""

from __future__ import annotations

import pytest
import torch

from compute.engine import RunGroup, free_bytes, run_siblings
from compute.finetune import FinetuneConfig
from tests.helpers import engine_cases as cases

small_source = pytest.fixture(scope="module")(cases.small_source_model)
source64 = pytest.fixture(scope="module")(cases.source64_model)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
# float64 on two devices: cuDNN's and the CPU's convolution algorithms sum in different orders; after 3 epochs
# that stays ~1e-13 relative (float64 rounding 1e-16 amplified as on the CPU, tests/test_engine.py), while a logic
# difference (a step, a BatchNorm update or a draw that differs) is 1e-5 or more.
STATE_RTOL, LOSS_RTOL = 1e-8, 1e-6  # the loss: a float32 number in both (cross-entropy of float32 logits)


@pytest.fixture(autouse=True)
def no_tf32():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _colour_cfgs(**kw) -> list[FinetuneConfig]:
    """Three sibling runs (seeds) on the offline colour target with the authors' augmentation."""
    return [cases.engine_cfg(seed=s, augment="paper", target=cases.register_colour_target(), **kw) for s in cases.SEEDS]


def _close(got, ref) -> None:
    for a, b in zip(got.curve, ref.curve, strict=True):
        assert abs(a.train_loss - b.train_loss) <= LOSS_RTOL * max(1.0, b.train_loss), (a, b)
        assert a.test_acc == b.test_acc, (a, b)
    ref_state, got_state = ref.model.state_dict(), got.model.state_dict()
    for name, value in ref_state.items():
        if value.is_floating_point():
            assert torch.allclose(got_state[name], value, rtol=STATE_RTOL, atol=1e-11), name


@pytest.mark.numerics
@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_cuda_engine_matches_the_cpu_engine_in_float64(source64, bn_mode: str, strategy: str) -> None:
    configs = _colour_cfgs(bn_mode=bn_mode)
    keep = {c.key for c in configs}
    with cases.float64():
        cpu = dict(run_siblings(source64, configs, device="cpu", max_group=3, kept_keys=keep, strategy=strategy))
        gpu = dict(run_siblings(source64, configs, device="cuda", max_group=3, kept_keys=keep, strategy=strategy))
    for c in configs:
        _close(gpu[c], cpu[c])


@pytest.mark.numerics
def test_cuda_many_runs_at_once_equal_one_at_a_time_in_float64(source64) -> None:
    configs = _colour_cfgs(bn_mode="train")
    keep = {c.key for c in configs}
    with cases.float64():
        together = dict(run_siblings(source64, configs, device="cuda", max_group=3, kept_keys=keep, strategy="vmap"))
        alone = dict(run_siblings(source64, configs, device="cuda", max_group=1, kept_keys=keep))
    for c in configs:
        _close(together[c], alone[c])


@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
def test_cuda_bf16_vmap_reaches_the_convolutions_and_agrees_with_the_loop(small_source, bn_mode: str) -> None:
    """Item 4 of issue 20: on CUDA autocast does reach convolutions under vmap (on a CPU it does not), and
    functorch's BatchNorm rule may turn activations fp32 between them. Convolutions must run in bf16 in both
    strategies; over one epoch (3 steps: rounding cannot grow far) vmap and loop agree to bf16's precision
    (8 significant bits, 0.4%: losses to 5%, at most 3 of 50 test images flip), and bf16 agrees with fp32 as well."""
    configs = _colour_cfgs(bn_mode=bn_mode, precision="bf16", epochs=1, test_every=1)
    dtypes: dict[str, set[torch.dtype]] = {}
    results = {}
    for strategy in ("vmap", "loop"):
        group = RunGroup(small_source, configs, torch.device("cuda"), strategy=strategy)
        assert torch.backends.cudnn.benchmark  # on for CUDA
        seen: set[torch.dtype] = set()
        hooks = [m.register_forward_hook(lambda m, i, o, s=seen: s.add(o.dtype))
                 for m in group.module.modules() if isinstance(m, torch.nn.Conv2d)]
        group.train_epoch()
        for h in hooks:
            h.remove()
        dtypes[strategy] = seen
        results[strategy] = dict(run_siblings(small_source, configs, device="cuda", max_group=3, strategy=strategy))
    assert dtypes["vmap"] == dtypes["loop"] == {torch.bfloat16}, dtypes
    fp32 = [FinetuneConfig(**{**c.__dict__, "precision": "fp32"}) for c in configs]
    reference = dict(run_siblings(small_source, fp32, device="cuda", max_group=3, strategy="loop"))
    for c, f in zip(configs, fp32, strict=True):
        for other in (results["loop"][c], reference[f]):
            for a, b in zip(results["vmap"][c].curve, other.curve, strict=True):
                assert abs(a.train_loss - b.train_loss) <= 5e-2 * max(1.0, b.train_loss), (a, b)
                assert abs(a.test_acc - b.test_acc) <= 3 / 50 + 1e-9, (a, b)


@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
def test_cuda_training_epoch_never_synchronises_the_host(small_source, bn_mode: str) -> None:
    configs = _colour_cfgs(bn_mode=bn_mode, precision="bf16")
    group = RunGroup(small_source, configs, torch.device("cuda"))
    group.train_epoch().tolist()  # warm-up: allocator, cuDNN autotuning, the augmentation's per-size constants
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = group.train_epoch()  # raises on any synchronising CUDA call inside the steps
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert losses.shape == (3,) and bool(torch.isfinite(losses).all())


def test_free_memory_counts_what_pytorch_holds_but_does_not_use() -> None:
    """After a large tensor is freed, PyTorch keeps its memory reserved: mem_get_info calls it used, the engine's
    `free_bytes` must not (item 2 of issue 20: the next group would shrink)."""
    device = torch.device("cuda")
    torch.cuda.empty_cache()
    before = free_bytes(device)
    x = torch.empty(1 << 30, dtype=torch.uint8, device=device)  # 1 GiB
    del x
    driver_free, _ = torch.cuda.mem_get_info(device)
    assert before - driver_free >= (1 << 30) * 0.9  # the driver still counts it as used
    assert abs(free_bytes(device) - before) < (64 << 20)  # the engine counts it as free
