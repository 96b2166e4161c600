"""The fine-tuning engine and the authors' augmentation: same numbers as the one-run reference, image by image."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from compute.data.augment import apply_paper, draw_paper_params, train_input
from compute.data.registry import DATASETS, DatasetInfo, register
from compute.engine import run_cell
from compute.finetune import FinetuneConfig, finetune
from compute.models import build_model


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


@pytest.mark.parametrize("size", [32, 64])
def test_paper_augmentation_equals_torchvision_per_image(size: int) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen)
    params = draw_paper_params(16, torch.Generator().manual_seed(1))
    ours = apply_paper(images, params, size)
    ref = torch.stack([_reference_paper(images[i], params, i, size) for i in range(16)])
    assert ours.shape == (16, 3, size, size)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
    # the parameters really vary per image (a test that would pass with one shared draw would be worthless)
    assert len(set(params.crop[:, 0].tolist())) > 1 and 0 < int(params.flip.sum()) < 16
    assert params.angle.abs().max() <= 2 and (params.factors - 1).abs().max() <= 0.25


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
def _colour_loader(split: str, root, download: bool):
    """A small offline colour target: random 12x12 RGB images whose label is the brightest channel."""
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = 120 if split == "train" else 60
    images = torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=gen)
    labels = images.float().mean(dim=(2, 3)).argmax(1)
    return images.float() / 255, labels, "synthetic"


def register_colour_target(name: str = "rgb3") -> str:
    if name not in DATASETS:
        register(DatasetInfo(name, ("red", "green", "blue"), 120, 60, 3, 12, True, _colour_loader))
    return name


def _engine_cfg(**kw) -> FinetuneConfig:
    base = dict(source="s", source_checksum="x", target="digits", n_train=40, seed=20_000_000, blocks=1, epochs=3,
                test_every=2, batch_size=16, augment="none", test_limit=50)
    return FinetuneConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def small_source() -> torch.nn.Module:
    return build_model("small_resnet", 7, seed=3).eval()


SEEDS = (20_000_000, 20_100_000, 20_200_000)


@pytest.mark.parametrize("blocks", [0, 1])
@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
@pytest.mark.parametrize("augment", ["none", "paper"])
def test_engine_runs_equal_one_run_at_a_time(small_source, blocks: int, bn_mode: str, augment: str) -> None:
    target = register_colour_target() if augment == "paper" else "digits"
    configs = [_engine_cfg(seed=s, blocks=blocks, bn_mode=bn_mode, augment=augment, target=target,
                           fc_init="normal", lr_schedule="step") for s in SEEDS]
    engine = dict(run_cell(small_source, configs, device="cpu", keep={c.key for c in configs}, max_group=3,
                           strategy="vmap"))
    for cfg in configs:
        ref, got = finetune(small_source, cfg, keep_model=True, device="cpu"), engine[cfg]
        assert not isinstance(got, BaseException), got
        assert (got.subset_indices == ref.subset_indices).all()
        assert [p.epoch for p in got.curve] == [p.epoch for p in ref.curve]
        for a, b in zip(got.curve, ref.curve, strict=True):
            assert abs(a.train_loss - b.train_loss) < 1e-4 * max(1.0, abs(b.train_loss)), (a, b)
            assert abs(a.test_acc - b.test_acc) <= 1 / 50 + 1e-9, (a, b)  # at most one test image flips
        ref_state, got_state = ref.model.state_dict(), got.model.state_dict()
        for name, value in ref_state.items():
            if value.is_floating_point():
                assert torch.allclose(got_state[name], value, atol=1e-4, rtol=1e-3), name
    # the runs really differ from one another (different subsets, orders, FC initialisations)
    accs = {tuple(engine[c].subset_indices[:5].tolist()) for c in configs}
    assert len(accs) == len(configs)


@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
def test_loop_strategy_equals_one_run_at_a_time(small_source, bn_mode: str) -> None:
    configs = [_engine_cfg(seed=s, bn_mode=bn_mode, augment="paper", target=register_colour_target()) for s in SEEDS]
    engine = dict(run_cell(small_source, configs, device="cpu", keep={c.key for c in configs}, max_group=3,
                           strategy="loop"))
    for cfg in configs:
        ref, got = finetune(small_source, cfg, keep_model=True, device="cpu"), engine[cfg]
        for a, b in zip(got.curve, ref.curve, strict=True):
            assert abs(a.train_loss - b.train_loss) < 1e-4 * max(1.0, abs(b.train_loss)), (a, b)
            assert abs(a.test_acc - b.test_acc) <= 1 / 50 + 1e-9, (a, b)
        ref_state, got_state = ref.model.state_dict(), got.model.state_dict()
        for name, value in ref_state.items():
            if value.is_floating_point():
                assert torch.allclose(got_state[name], value, atol=1e-4, rtol=1e-3), name


@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
def test_auto_strategy_times_both_once_and_leaves_the_runs_as_the_strategy_it_picked(small_source, monkeypatch,
                                                                                    bn_mode: str) -> None:
    """`auto` times a step of vmap and of loop on the group's first batch, then trains with the faster: the runs'
    numbers are exactly those of that strategy forced (the timing steps leave BatchNorm statistics, generators and
    gradients as they were), and a second group of the same cell reuses the choice without timing again."""
    from compute import engine

    timed: list[str] = []
    time_step = engine.RunGroup._time_step
    monkeypatch.setattr(engine.RunGroup, "_time_step", lambda self, name: timed.append(name) or time_step(self, name))
    monkeypatch.setattr(engine, "STRATEGY_CHOICES", {})
    configs = [_engine_cfg(seed=s, bn_mode=bn_mode, augment="paper", target=register_colour_target()) for s in SEEDS]
    keep = {c.key for c in configs}
    auto = dict(run_cell(small_source, configs, device="cpu", keep=keep, max_group=3, strategy="auto"))
    assert sorted(timed) == ["loop", "vmap"]
    (picked,) = engine.STRATEGY_CHOICES.values()
    forced = dict(run_cell(small_source, configs, device="cpu", keep=keep, max_group=3, strategy=picked))
    again = dict(run_cell(small_source, configs, device="cpu", keep=keep, max_group=3, strategy="auto"))
    assert len(timed) == 2  # remembered per cell and group size
    for cfg in configs:
        assert auto[cfg].curve == forced[cfg].curve == again[cfg].curve
        for name, value in forced[cfg].model.state_dict().items():
            assert torch.equal(auto[cfg].model.state_dict()[name], value), name


@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
def test_engine_in_bf16_stays_within_bf16_tolerance_of_the_reference(small_source, bn_mode: str) -> None:
    """bf16 autocast (the CUDA default of the paper preset) runs on a CPU too; same numbers up to bf16 rounding."""
    configs = [_engine_cfg(seed=s, bn_mode=bn_mode, augment="paper", target=register_colour_target(),
                           precision="bf16") for s in SEEDS[:2]]
    engine = dict(run_cell(small_source, configs, device="cpu", max_group=2))
    for cfg in configs:
        ref, got = finetune(small_source, cfg, device="cpu"), engine[cfg]
        assert not isinstance(got, BaseException), got
        for a, b in zip(got.curve, ref.curve, strict=True):
            assert abs(a.train_loss - b.train_loss) <= 5e-2 * max(1.0, b.train_loss), (a, b)
            assert abs(a.test_acc - b.test_acc) <= 3 / 50 + 1e-9, (a, b)


def test_without_room_for_cached_prefix_activations_the_numbers_stay_the_same(small_source, monkeypatch) -> None:
    from collections import OrderedDict

    import compute.engine as engine

    configs = [_engine_cfg(seed=s, augment="none", epochs=2) for s in SEEDS[:2]]
    cached = dict(run_cell(small_source, configs, device="cpu", max_group=2))
    monkeypatch.setattr(engine.RunGroup, "_cache_fits", lambda self, images: False)
    monkeypatch.setattr(engine, "_PREFIX", OrderedDict())  # nothing cached from the first call
    uncached = dict(run_cell(small_source, configs, device="cpu", max_group=2))
    for cfg in configs:
        for a, b in zip(uncached[cfg].curve, cached[cfg].curve, strict=True):
            assert abs(a.train_loss - b.train_loss) < 1e-5 and a.test_acc == b.test_acc


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
    outcomes = dict(run_cell(small_source, configs, device="cpu", max_group=3))
    assert sizes == [3, 1, 2] and all(not isinstance(o, BaseException) for o in outcomes.values())

    def never_fits(source, group, *args, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine, "train_group", never_fits)
    failed = dict(run_cell(small_source, configs, device="cpu", max_group=3))
    assert len(failed) == 3 and all("out of device memory with a single run" in str(e) for e in failed.values())


def test_run_cell_refuses_runs_of_different_cells(small_source) -> None:
    from compute.errors import RtxError

    with pytest.raises(RtxError, match="runs of one cell"):
        list(run_cell(small_source, [_engine_cfg(), _engine_cfg(seed=1, blocks=2)], device="cpu"))


def test_run_engine_groups_jobs_into_cells_and_keeps_requested_models(small_source) -> None:
    from types import SimpleNamespace

    from compute.engine import cells, run_engine

    jobs = [(_engine_cfg(seed=s, blocks=b, epochs=1), s == SEEDS[0]) for b in (0, 1) for s in SEEDS[:2]]
    assert [len(c) for c in cells(cfg for cfg, _ in jobs)] == [2, 2]
    outcomes = list(run_engine(jobs, lambda name: small_source, SimpleNamespace(device="cpu")))
    assert [cfg for cfg, _ in outcomes] == [cfg for cfg, _ in jobs]
    assert [r.model is not None for _, r in outcomes] == [keep for _, keep in jobs]


@pytest.mark.slow  # torch.compile's first call: about 20 s on a 2-core CPU
def test_compiled_prefix_gives_the_same_numbers(small_source) -> None:
    configs = [_engine_cfg(seed=s, bn_mode="frozen", augment="paper", target=register_colour_target())
               for s in SEEDS[:2]]
    eager = dict(run_cell(small_source, configs, device="cpu", max_group=2))
    compiled = dict(run_cell(small_source, configs, device="cpu", max_group=2, compile_prefix=True))
    for cfg in configs:
        for a, b in zip(compiled[cfg].curve, eager[cfg].curve, strict=True):
            assert abs(a.train_loss - b.train_loss) < 1e-4 * max(1.0, abs(b.train_loss)), (a, b)
            assert abs(a.test_acc - b.test_acc) <= 1 / 50 + 1e-9, (a, b)


def test_the_compile_flag_reaches_the_engine(monkeypatch) -> None:
    """`rtx precompute/finetune --compile` -> Settings.compile -> run_cell(compile_prefix=True)."""
    from compute import engine
    from compute.cli import build_parser
    from compute.cli.sweep import settings_from_args

    seen: list[bool] = []
    monkeypatch.setattr(engine, "run_cell", lambda *a, compile_prefix=False, **kw: seen.append(compile_prefix) or [])
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

    for augment in (True, False):
        cfg = _engine_cfg(augment=augment, batch_size=128)
        old = {k: v for k, v in asdict(cfg).items() if k not in RECIPE_DEFAULTS} | {"augment": augment}
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


# --- CUDA (skipped without a GPU) ------------------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
def test_cuda_engine_matches_the_cpu_engine(small_source, bn_mode: str) -> None:
    target = register_colour_target()
    configs = [_engine_cfg(seed=s, bn_mode=bn_mode, augment="paper", target=target) for s in SEEDS]
    cpu = dict(run_cell(small_source, configs, device="cpu", max_group=3))
    for precision, loss_tol, acc_tol in (("fp32", 1e-2, 2 / 50), ("bf16", 5e-2, 5 / 50)):
        cfgs = [FinetuneConfig(**{**c.__dict__, "precision": precision}) for c in configs]
        gpu = dict(run_cell(small_source, cfgs, device="cuda", max_group=3))
        for c, g in zip(configs, cfgs, strict=True):
            for a, b in zip(gpu[g].curve, cpu[c].curve, strict=True):
                assert abs(a.train_loss - b.train_loss) <= loss_tol * max(1.0, b.train_loss), (precision, a, b)
                assert abs(a.test_acc - b.test_acc) <= acc_tol, (precision, a, b)


@pytest.mark.gpu
@cuda
def test_cuda_many_runs_at_once_equal_one_at_a_time(small_source) -> None:
    target = register_colour_target()
    configs = [_engine_cfg(seed=s, bn_mode="train", augment="paper", target=target) for s in SEEDS]
    together = dict(run_cell(small_source, configs, device="cuda", max_group=3))
    alone = dict(run_cell(small_source, configs, device="cuda", max_group=1))
    for c in configs:
        for a, b in zip(together[c].curve, alone[c].curve, strict=True):
            assert abs(a.train_loss - b.train_loss) <= 1e-3 * max(1.0, b.train_loss)
            assert abs(a.test_acc - b.test_acc) <= 1 / 50 + 1e-9


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("bn_mode", ["frozen", "train"])
def test_cuda_training_epoch_never_synchronises_the_host(small_source, bn_mode: str) -> None:
    from compute.engine import RunGroup

    configs = [_engine_cfg(seed=s, bn_mode=bn_mode, augment="paper", target=register_colour_target(),
                           precision="bf16") for s in SEEDS]
    group = RunGroup(small_source, configs, torch.device("cuda"))
    group.train_epoch().tolist()  # warm-up: allocator, cuDNN autotuning
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = group.train_epoch()  # raises on any synchronising CUDA call inside the steps
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert losses.shape == (3,) and bool(torch.isfinite(losses).all())
