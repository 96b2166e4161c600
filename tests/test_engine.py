"""The fine-tuning engine and the authors' augmentation: same numbers as the one-run reference, image by image.

Two computation paths (engine vs one run at a time, vmap vs loop, auto vs forced, cached vs uncached, compiled vs
eager) are compared in float64 (tests/helpers/engine_cases.float64), where a few epochs amplify rounding to
~1e-14 and a logic error stays ~1e-4 or more; these tests are marked `numerics` and also run under other CPU
kernel paths (ATEN_CPU_CAPABILITY=default). CUDA tests: tests/test_engine_gpu.py.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from compute.data.augment import apply_paper, draw_paper_params, train_input
from compute.engine import run_siblings
from compute.finetune import finetune
from compute.models import build_model
from tests.helpers.engine_cases import (
    SEEDS,
    engine_cfg,
    float64,
    register_colour_target,
    small_source_model,
    source64_model,
)

_engine_cfg = engine_cfg
small_source = pytest.fixture(scope="module")(small_source_model)
source64 = pytest.fixture(scope="module")(source64_model)
# Tolerances of float64 comparisons (measured on an Intel Xeon with AVX-512 and under ATEN_CPU_CAPABILITY=default):
# - weights and BatchNorm statistics after 3 epochs agree to 4e-15 of each tensor's largest value; rtol 1e-9 leaves
#   a 1e5 margin for chaotic growth, and dropping weight decay (5e-4 x lr 0.1 per step) moves weights by ~1e-5.
STATE_RTOL, STATE_ATOL = 1e-9, 1e-12
# - the reported training loss is a float32 number in both paths (cross-entropy of float32 logits, as the
#   authors'), summed in different orders: measured 1.7e-7 relative; 1e-6 is 8 float32 ulps.
LOSS_RTOL = 1e-6


def _reference_paper(image: torch.Tensor, params, i: int, size: int) -> torch.Tensor:
    """torchvision.transforms.v2's functional ops on one float image, with image i's parameters."""
    x = TF.resize(image.float() / 255, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    x = TF.crop(TF.pad(x, [4], fill=0), int(params.crop[i, 0]), int(params.crop[i, 1]), size, size)
    if params.flip[i]:
        x = TF.horizontal_flip(x)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for op in params.order[i].tolist():
        x = ops[op](x, float(params.factors[i, op]))
    return TF.rotate(x, float(params.angle[i]), interpolation=InterpolationMode.NEAREST, fill=0)


@pytest.mark.numerics
@pytest.mark.parametrize("size", [32, 64, 224])
def test_paper_augmentation_equals_torchvision_per_image(size: int) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen)
    params = draw_paper_params(16, torch.Generator().manual_seed(1))
    ours = apply_paper(images, params, size)
    ref = torch.stack([_reference_paper(images[i], params, i, size) for i in range(16)])
    assert ours.shape == (16, 3, size, size)
    # 1e-5: float32's spacing at 1.0 is 1.2e-7 and each value is rounded ~10 times (resize, three blends, means);
    # measured max 1.5e-6 at 224x224 (one blend per operation here vs torchvision's per-op kernels). A logic
    # error (crop offset, flip, order, factor, rotation) moves pixels by at least 1/255 = 3.9e-3.
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
    # the parameters really vary per image (a test that would pass with one shared draw would be worthless)
    assert len(set(params.crop[:, 0].tolist())) > 1 and 0 < int(params.flip.sum()) < 16
    assert params.angle.abs().max() <= 2 and (params.factors - 1).abs().max() <= 0.25


def test_the_augmentation_makes_no_tensor_from_python_values_after_its_first_call(monkeypatch) -> None:
    """On CUDA a tensor made from Python values (torch.tensor / torch.as_tensor of numbers) is a blocking
    host-to-device copy: a host synchronisation in every training step (fills such as torch.arange(device=...) are
    device kernels and do not wait). The per-size constants are built once (issue 20, item 1)."""
    from compute.data import augment

    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    params = draw_paper_params(4, torch.Generator().manual_seed(1))
    monkeypatch.setattr(augment, "_GEOMETRY", {}, raising=False)  # fresh per-size constants
    first = apply_paper(images, params, 40)
    made: list[str] = []
    for name in ("tensor", "as_tensor"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _n=name, _r=real, **kw: made.append(_n) or _r(*a, **kw))
    again = apply_paper(images, params, 40)
    assert made == [] and torch.equal(first, again)


def test_paper_augmentation_on_grey_targets_is_only_the_upscaling() -> None:
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    out = train_input(images, "paper", 56, gen)
    ref = TF.resize(images.float() / 255, [56, 56], interpolation=InterpolationMode.BILINEAR,
                    antialias=True).expand(-1, 3, -1, -1)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.equal(gen.get_state(), state)  # nothing drawn: grey targets have no random transform


def test_paper_augmentation_draws_from_the_run_generator_only() -> None:
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a = train_input(images, "paper", 32, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global generator must not matter
    b = train_input(images, "paper", 32, torch.Generator().manual_seed(5))
    c = train_input(images, "paper", 32, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# --- the engine equals one run at a time ---------------------------------------------------------------------
def assert_same_run(got, ref) -> None:
    """Two float64 runs of one config agree (tolerances at the top of this file)."""
    assert not isinstance(got, BaseException), got
    assert (got.subset_indices == ref.subset_indices).all()
    assert [p.epoch for p in got.curve] == [p.epoch for p in ref.curve]
    for a, b in zip(got.curve, ref.curve, strict=True):
        assert abs(a.train_loss - b.train_loss) <= LOSS_RTOL * max(1.0, abs(b.train_loss)), (a, b)
        assert a.test_acc == b.test_acc, (a, b)  # logits agree to ~1e-14: no test image can flip
    if ref.model is not None:
        ref_state, got_state = ref.model.state_dict(), got.model.state_dict()
        for name, value in ref_state.items():
            if value.is_floating_point():
                assert value.dtype == torch.float64, name
                assert torch.allclose(got_state[name], value, rtol=STATE_RTOL, atol=STATE_ATOL), \
                    (name, float((got_state[name] - value).abs().max()))


@pytest.mark.numerics
@pytest.mark.parametrize("blocks", [0, 1])
@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
@pytest.mark.parametrize("augment", ["none", "paper"])
def test_engine_runs_equal_one_run_at_a_time(source64, blocks: int, bn_mode: str, augment: str) -> None:
    """vmap over 3 runs equals `finetune` run by run, in float64 (weights, BatchNorm statistics, curves)."""
    target = register_colour_target() if augment == "paper" else "digits"
    configs = [_engine_cfg(seed=s, blocks=blocks, bn_mode=bn_mode, augment=augment, target=target,
                           fc_init="normal", lr_schedule="step") for s in SEEDS]
    with float64():
        engine = dict(run_siblings(source64, configs, device="cpu", kept_keys={c.key for c in configs}, max_group=3,
                               strategy="vmap"))
        for cfg in configs:
            assert_same_run(engine[cfg], finetune(source64, cfg, keep_model=True, device="cpu"))
    # the runs really differ from one another (different subsets, orders, FC initialisations)
    accs = {tuple(engine[c].subset_indices[:5].tolist()) for c in configs}
    assert len(accs) == len(configs)


@pytest.mark.numerics
@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
def test_loop_strategy_equals_one_run_at_a_time(source64, bn_mode: str) -> None:
    configs = [_engine_cfg(seed=s, bn_mode=bn_mode, augment="paper", target=register_colour_target()) for s in SEEDS]
    with float64():
        engine = dict(run_siblings(source64, configs, device="cpu", kept_keys={c.key for c in configs}, max_group=3,
                               strategy="loop"))
        for cfg in configs:
            assert_same_run(engine[cfg], finetune(source64, cfg, keep_model=True, device="cpu"))


@pytest.mark.numerics
@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
def test_auto_strategy_times_both_once_and_leaves_the_runs_as_the_strategy_it_picked(source64, monkeypatch,
                                                                                    bn_mode: str) -> None:
    """`auto` times a training step and an evaluation batch of vmap and of loop on the group's first batch, then
    trains with the cheaper for the siblings: the runs' numbers are exactly those of that strategy forced (the timing
    leaves BatchNorm statistics, generators and gradients as they were; same kernels in one process, so exact), and
    other siblings of the same step shape (other target size, subset size, source) reuses the timings."""
    from compute import engine

    timed: list[str] = []
    time_step = engine.StrategyTimer._time_step
    monkeypatch.setattr(engine.StrategyTimer, "_time_step", lambda self, name: timed.append(name) or time_step(self, name))
    monkeypatch.setattr(engine, "STRATEGY_TIMINGS", {})
    configs = [_engine_cfg(seed=s, bn_mode=bn_mode, augment="paper", target=register_colour_target()) for s in SEEDS]
    keep = {c.key for c in configs}
    with float64():
        auto = dict(run_siblings(source64, configs, device="cpu", kept_keys=keep, max_group=3, strategy="auto"))
        assert sorted(timed) == ["loop", "vmap"]
        (times,) = engine.STRATEGY_TIMINGS.values()
        assert all(t.train > 0 and t.eval > 0 for t in times.values())
        group = engine.RunGroup(source64, configs, torch.device("cpu"))
        picked = group.strategy
        assert picked == min(times, key=lambda name: engine.StrategyTimer(group).training_seconds(times[name]))
        forced = dict(run_siblings(source64, configs, device="cpu", kept_keys=keep, max_group=3, strategy=picked))
        other = [engine_cfg(seed=s, bn_mode=bn_mode, augment="paper", target=register_colour_target("rgb3b"),
                            n_train=32, source="t", source_checksum="y") for s in SEEDS]
        list(run_siblings(source64, other, device="cpu", max_group=3, strategy="auto"))
    assert len(timed) == 2  # remembered per step shape: not the target, n or source
    for cfg in configs:
        assert auto[cfg].curve == forced[cfg].curve
        for name, value in forced[cfg].model.state_dict().items():
            assert torch.equal(auto[cfg].model.state_dict()[name], value), name


def test_auto_strategy_falls_back_when_a_candidate_runs_out_of_memory(small_source, monkeypatch) -> None:
    """An out-of-memory error in one candidate's trial drops that candidate (the group is not halved); the trial's
    state is restored; only when both fail is the error passed on (run_siblings then halves the group)."""
    from compute import engine

    time_step = engine.StrategyTimer._time_step

    def vmap_fails(self, name):
        if name == "vmap":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return time_step(self, name)

    monkeypatch.setattr(engine, "STRATEGY_TIMINGS", {})
    monkeypatch.setattr(engine.StrategyTimer, "_time_step", vmap_fails)
    configs = [_engine_cfg(seed=s, augment="paper", target=register_colour_target(), epochs=1) for s in SEEDS]
    group = engine.RunGroup(small_source, configs, torch.device("cpu"))
    assert group.strategy == "loop"
    assert list(engine.STRATEGY_TIMINGS.values())[0]["vmap"] is None

    monkeypatch.setattr(engine, "STRATEGY_TIMINGS", {})
    monkeypatch.setattr(engine.StrategyTimer, "_time_step", lambda self, name: vmap_fails(self, "vmap"))
    with pytest.raises(torch.OutOfMemoryError, match="neither engine strategy"):
        engine.RunGroup(small_source, configs, torch.device("cpu"))


def test_a_failed_timing_trial_restores_the_group(small_source, monkeypatch) -> None:
    """`_time_step` puts BatchNorm statistics, generators, gradients and train mode back even when the trial
    raises (a `finally`), so a fallback strategy starts from the untouched state."""
    from compute import engine

    configs = [_engine_cfg(seed=s, bn_mode="train", augment="paper", target=register_colour_target(), epochs=1)
               for s in SEEDS]
    group = engine.RunGroup(small_source, configs, torch.device("cpu"), strategy="loop")
    buffers = {k: v.clone() for k, v in group.runs.buffers.items()}
    states = [g.get_state() for g in group.runs.generators]
    real = group.logits

    def fails_in_eval(forward, x):
        if not group.module.training:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(forward, x)

    monkeypatch.setattr(group, "logits", fails_in_eval)
    with pytest.raises(torch.OutOfMemoryError):
        engine.StrategyTimer(group)._time_step("vmap")
    assert group.module.training
    assert all(torch.equal(group.runs.buffers[k], v) for k, v in buffers.items())
    assert all(torch.equal(g.get_state(), s) for g, s in zip(group.runs.generators, states, strict=True))
    assert all(v.grad is None for v in group.runs.params.values())


def test_in_bf16_the_last_linear_and_the_loss_stay_fp32(small_source) -> None:
    """The new FC (N(0, 1) weights: logits of +-30-100, bf16 spacing 0.125-0.5 there) runs in fp32 under autocast."""
    from compute import engine

    configs = [_engine_cfg(seed=s, precision="bf16", fc_init="normal") for s in SEEDS[:2]]
    group = engine.RunGroup(small_source, configs, torch.device("cpu"), strategy="vmap")
    rows = torch.arange(8).expand(2, -1)
    logits = group.logits(group.forward, group.batch_inputs(rows))
    assert logits.dtype == torch.float32
    fc = group.model.net.fc
    feats = torch.randn(4, fc.in_features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fc(feats).dtype == torch.float32
    assert torch.equal(fc(feats), torch.nn.functional.linear(feats, fc.weight, fc.bias))
    assert "last Linear" in engine.BF16_PARTS and "evaluation" in engine.BF16_PARTS


@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_engine_in_bf16_stays_within_bf16_tolerance_of_the_reference(small_source, bn_mode: str, strategy: str) -> None:
    """bf16 autocast (the CUDA default of the paper preset) runs on a CPU too (though there autocast does not reach
    convolutions under vmap; tests/test_engine_gpu.py checks CUDA, where it does). Over one epoch (3 steps, a short
    horizon where bf16 rounding cannot grow far): bf16 has 8 significant bits (relative spacing 2^-8 = 0.4%), so
    losses agree to 5%, and at most 3 of 50 test images flip."""
    configs = [_engine_cfg(seed=s, bn_mode=bn_mode, augment="paper", target=register_colour_target(),
                           precision="bf16", epochs=1, test_every=1) for s in SEEDS[:2]]
    engine = dict(run_siblings(small_source, configs, device="cpu", max_group=2, strategy=strategy))
    for cfg in configs:
        ref, got = finetune(small_source, cfg, device="cpu"), engine[cfg]
        assert not isinstance(got, BaseException), got
        for a, b in zip(got.curve, ref.curve, strict=True):
            assert abs(a.train_loss - b.train_loss) <= 5e-2 * max(1.0, b.train_loss), (a, b)
            assert abs(a.test_acc - b.test_acc) <= 3 / 50 + 1e-9, (a, b)


@pytest.mark.numerics
def test_without_room_for_cached_prefix_activations_the_numbers_stay_the_same(source64, monkeypatch) -> None:
    import compute.engine as engine
    from compute.lru import LruStore

    configs = [_engine_cfg(seed=s, augment="none", epochs=2) for s in SEEDS[:2]]
    with float64():
        cached = dict(run_siblings(source64, configs, device="cpu", max_group=2, kept_keys={c.key for c in configs}))
        monkeypatch.setattr(engine.RunGroup, "_cache_fits", lambda self, images: False)
        monkeypatch.setattr(engine, "_PREFIX", LruStore(2))  # nothing cached from the first call
        uncached = dict(run_siblings(source64, configs, device="cpu", max_group=2, kept_keys={c.key for c in configs}))
    for cfg in configs:
        assert_same_run(uncached[cfg], cached[cfg])


@pytest.mark.parametrize("blocks", [0, 1])
def test_the_prefix_cache_keeps_pooled_activations_with_zero_blocks(small_source, blocks: int) -> None:
    """0 blocks: the suffix is pool + FC, so 2,048 pooled values per image (ResNet-50) are kept, not 2,048 x 7 x 7."""
    from compute import engine

    configs = [_engine_cfg(seed=s, blocks=blocks, augment="none", epochs=1) for s in SEEDS[:2]]
    group = engine.RunGroup(small_source, configs, torch.device("cpu"), strategy="loop")
    assert group.static
    expected = (group.model.num_features, 1, 1) if blocks == 0 else (64, 4, 4)  # small_resnet's layer3 at 28x28
    assert tuple(group.union_feats.shape[1:]) == expected
    assert group.prefix_image_bytes() == group.union_feats[:1].numel() * group.union_feats.element_size()


def test_out_of_memory_splits_the_group_then_fails_single_runs_with_the_reason(small_source, monkeypatch) -> None:
    import compute.engine as engine

    configs = [_engine_cfg(seed=s, epochs=1) for s in SEEDS]
    real, sizes = engine.train_group, []

    def fits_two(source, group, *args, **kw):
        sizes.append(len(group))
        if len(group) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(source, group, *args, **kw)

    monkeypatch.setattr(engine, "train_group", fits_two)
    outcomes = dict(run_siblings(small_source, configs, device="cpu", max_group=3))
    assert sizes == [3, 1, 2] and all(not isinstance(o, BaseException) for o in outcomes.values())

    def never_fits(source, group, *args, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine, "train_group", never_fits)
    failed = dict(run_siblings(small_source, configs, device="cpu", max_group=3))
    assert len(failed) == 3 and all("out of device memory with a single run" in str(e) for e in failed.values())


def test_cublas_and_cudnn_allocation_failures_count_as_out_of_memory(small_source, monkeypatch) -> None:
    import compute.engine as engine

    for message in ("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
                    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED", "CUDA error: out of memory"):
        assert engine.is_oom(RuntimeError(message)), message
    assert not engine.is_oom(RuntimeError("CUDA error: an illegal memory access was encountered"))
    configs = [_engine_cfg(seed=s, epochs=1) for s in SEEDS[:2]]
    real, sizes = engine.train_group, []

    def cublas_fails_for_two(source, group, *args, **kw):
        sizes.append(len(group))
        if len(group) > 1:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
        return real(source, group, *args, **kw)

    monkeypatch.setattr(engine, "train_group", cublas_fails_for_two)
    outcomes = dict(run_siblings(small_source, configs, device="cpu", max_group=2))
    assert sizes == [2, 1, 1] and all(not isinstance(o, BaseException) for o in outcomes.values())


def test_memory_is_released_after_the_failed_group_is_dropped(small_source, monkeypatch) -> None:
    """empty_cache() can only free what nothing references: the failed group lives on in the traceback's frames
    while the `except` block runs, so the release must come after it."""
    import gc
    import weakref

    import compute.engine as engine

    class Group:  # stands for the failed group's tensors
        pass

    refs, alive_at_release = [], []

    def fails(source, group, *args, **kw):
        held = Group()
        refs.append(weakref.ref(held))
        raise torch.OutOfMemoryError("CUDA out of memory")

    def release(device):
        gc.collect()
        alive_at_release.append(refs[-1]() is not None)

    monkeypatch.setattr(engine, "train_group", fails)
    monkeypatch.setattr(engine, "release_memory", release)
    failed = dict(run_siblings(small_source, [_engine_cfg(seed=s, epochs=1) for s in SEEDS[:2]], device="cpu", max_group=2))
    assert len(failed) == 2 and alive_at_release == [False, False, False]


def test_the_memory_probe_is_measured_once_per_shape(small_source, monkeypatch) -> None:
    """The probe's key is architecture, blocks, BatchNorm mode, batch, input size, precision (and augmentation and
    channels): not the target, subset size beyond a batch, seed or source checksum (about 960 sets of siblings share a few)."""
    import compute.engine as engine

    measured: list[tuple] = []
    monkeypatch.setattr(engine, "MEMORY_PROBES", {})
    monkeypatch.setattr(engine, "_measure_memory",
                        lambda source, cfg, device, root, skip: measured.append(cfg) or engine.MemoryProbe(100, 10))
    cuda = torch.device("cuda")  # only the key names it: nothing runs there
    same = [_engine_cfg(), _engine_cfg(seed=1, n_train=80), _engine_cfg(target="mnist5k", source_checksum="y"),
            _engine_cfg(source="other", epochs=9)]
    for cfg in same:
        assert engine.memory_probe(small_source, cfg, cuda) == engine.MemoryProbe(100, 10)
    assert len(measured) == 1
    for change in ({"blocks": 2}, {"bn_mode": "train"}, {"batch_size": 8}, {"input_size": 32}, {"precision": "bf16"}):
        engine.memory_probe(small_source, _engine_cfg(**change), cuda)
    assert len(measured) == 6


def test_shared_caches_are_accounted_once_per_group_not_per_run(small_source, monkeypatch) -> None:
    """The test images' prefix activations (and a static prefix's training ones) are shared by a group's runs."""
    import compute.engine as engine
    from compute.engine import MemoryProbe, shared_cache_bytes
    from compute.lru import LruStore

    monkeypatch.setattr(engine, "_PREFIX", LruStore(2))  # no test activations cached by an earlier test

    probe = MemoryProbe(per_run=1000, prefix_image=10)
    cpu = torch.device("cpu")
    frozen = _engine_cfg(augment="none", test_limit=50)  # static prefix: union of the subsets cached too
    assert shared_cache_bytes(frozen, 28, probe, 3, cpu) == 10 * (50 + 3 * 40)
    assert shared_cache_bytes(frozen, 28, probe, 100, cpu) == 10 * (50 + 1437)  # the union: at most digits' 1,437
    assert shared_cache_bytes(_engine_cfg(augment="legacy"), 28, probe, 3, cpu) == 10 * 50  # test cache only
    assert shared_cache_bytes(_engine_cfg(bn_mode="train"), 28, probe, 3, cpu) == 0  # nothing cached in `train`
    engine._PREFIX.get(engine._test_key(frozen, 28, cpu, torch.float32), lambda: torch.zeros(1))  # cached: no new cost
    assert shared_cache_bytes(frozen, 28, probe, 3, cpu) == 10 * 3 * 40


def test_run_siblings_refuses_runs_that_differ_in_more_than_the_seed(small_source) -> None:
    from compute.errors import RtxError

    with pytest.raises(RtxError, match="needs sibling runs"):
        list(run_siblings(small_source, [_engine_cfg(), _engine_cfg(seed=1, blocks=2)], device="cpu"))


def test_run_engine_groups_jobs_into_siblings_and_keeps_requested_models(small_source) -> None:
    from types import SimpleNamespace

    from compute.engine import run_engine, sibling_sets
    from compute.finetune import FinetuneJob

    jobs = [FinetuneJob(_engine_cfg(seed=s, blocks=b, epochs=1), s == SEEDS[0]) for b in (0, 1) for s in SEEDS[:2]]
    assert [len(c) for c in sibling_sets(job.config for job in jobs)] == [2, 2]
    outcomes = list(run_engine(jobs, lambda name: small_source, SimpleNamespace(device="cpu")))
    assert [cfg for cfg, _ in outcomes] == [cfg for cfg, _ in jobs]
    assert [r.model is not None for _, r in outcomes] == [job.keep_model for job in jobs]


@pytest.mark.numerics
@pytest.mark.slow  # torch.compile's first call: about 20 s on a 2-core CPU
def test_compiled_prefix_gives_the_same_numbers(source64, monkeypatch) -> None:
    """Compiled vs eager prefix in float64 (Inductor may fuse and reorder; float64 keeps that at ~1e-14). Where
    Inductor cannot compile on this machine (e.g. under ATEN_CPU_CAPABILITY=default), the engine falls back to the
    eager prefix with one warning: the numbers must then be the eager ones, and the warning must say so."""
    import warnings

    import compute.engine as engine

    monkeypatch.setattr(engine, "_COMPILE_FAILED", [])
    torch._dynamo.reset()
    configs = [_engine_cfg(seed=s, bn_mode="frozen", augment="paper", target=register_colour_target())
               for s in SEEDS[:2]]
    with float64():
        eager = dict(run_siblings(source64, configs, device="cpu", max_group=2, kept_keys={c.key for c in configs}))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compiled = dict(run_siblings(source64, configs, device="cpu", max_group=2, compile_prefix=True,
                                     kept_keys={c.key for c in configs}))
    said = [w for w in caught if "torch.compile of the engine's prefix failed" in str(w.message)]
    assert len(said) == (1 if engine._COMPILE_FAILED else 0)
    for cfg in configs:
        assert_same_run(compiled[cfg], eager[cfg])


def test_a_failed_compilation_falls_back_to_eager_and_says_so_once(small_source, monkeypatch) -> None:
    """Inductor's BackendCompilerFailed (raised at the compiled prefix's first call) never comes back as a run's
    result: the prefix runs eagerly, the runs' numbers are the eager ones, one warning per process."""
    import compute.engine as engine

    class BackendCompilerFailed(RuntimeError):  # torch._dynamo.exc's, as a stand-in that needs no compiler
        pass

    def broken_compile(module, **kw):
        def call(x):
            raise BackendCompilerFailed("backend='inductor' raised:\nCppCompileError: C++ compile error")
        return call

    monkeypatch.setattr(engine, "_COMPILE_FAILED", [])
    monkeypatch.setattr(torch, "compile", broken_compile)
    configs = [_engine_cfg(seed=s, augment="paper", target=register_colour_target(), epochs=1) for s in SEEDS[:2]]
    eager = dict(run_siblings(small_source, configs, device="cpu", max_group=2))
    with pytest.warns(RuntimeWarning, match="torch.compile of the engine's prefix failed \\(BackendCompilerFailed"):
        compiled = dict(run_siblings(small_source, configs, device="cpu", max_group=2, compile_prefix=True))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: the next siblings warn no more
        again = dict(run_siblings(small_source, configs, device="cpu", max_group=2, compile_prefix=True))
    for cfg in configs:
        assert not isinstance(compiled[cfg], BaseException), compiled[cfg]
        assert compiled[cfg].curve == eager[cfg].curve == again[cfg].curve  # the same eager kernels: exact


def test_the_compile_flag_reaches_the_engine(monkeypatch) -> None:
    """`rtx precompute/finetune --compile` -> Settings.compile -> run_siblings(compile_prefix=True)."""
    from compute import engine
    from compute.cli import build_parser
    from compute.cli.sweep import settings_from_args

    seen: list[bool] = []
    monkeypatch.setattr(engine, "run_siblings", lambda *a, compile_prefix=False, **kw: seen.append(compile_prefix) or [])
    for flags, expected in (([], False), (["--compile"], True)):
        args = build_parser().parse_args(["finetune", "--preset", "tiny", *flags])
        settings = settings_from_args(args)
        assert settings.compile is expected
        list(engine.run_engine([(_engine_cfg(), False)], lambda name: None, settings))
    assert seen == [False, True]


def test_recipe_defaults_keep_the_keys_recorded_before_them() -> None:
    """Keys of default configs are what they were before the recipe fields existed (cache reuse, tiny fixture)."""
    from dataclasses import asdict

    from compute.finetune import CODE_VERSION, RECIPE_DEFAULTS
    from compute.paths import job_key

    for policy, recorded in (("legacy", True), ("none", False)):  # recorded as the booleans they were
        cfg = _engine_cfg(augment=policy, batch_size=128)
        old = {k: v for k, v in asdict(cfg).items() if k not in RECIPE_DEFAULTS} | {"augment": recorded}
        assert cfg.key == job_key("finetune", {**old, "code": CODE_VERSION})
    keys = {_engine_cfg(**kw).key for kw in ({}, {"fc_init": "normal"}, {"lr_schedule": "step"}, {"precision": "bf16"},
                                             {"augment": "paper"}, {"input_size": 64}, {"bn_mode": "train"})}
    assert len(keys) == 7  # every recipe choice is part of the key


def test_fc_init_normal_and_step_schedule_are_the_authors() -> None:
    from compute.finetune import make_scheduler, prepare_model

    source = build_model("small_resnet", 7, seed=3)
    model = prepare_model(source, _engine_cfg(fc_init="normal"), 10, torch.device("cpu"))
    assert torch.all(model.fc.bias == 0) and 0.8 < float(model.fc.weight.detach().std()) < 1.2
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = make_scheduler(_engine_cfg(lr_schedule="step", epochs=100), opt)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [round(lrs[e], 6) for e in (0, 32, 33, 65, 66, 98, 99)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.0001]
