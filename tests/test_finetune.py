"""Fine-tuning: deterministic, freezes what it should, re-initialises FC, feature cache equals the naive loop."""

from __future__ import annotations

import pytest
import torch

from compute.errors import RtxError
from compute.finetune import FinetuneConfig, finetune, prepare_model
from compute.models import build_model


def _cfg(**kw) -> FinetuneConfig:
    base = dict(source="s", source_checksum="x", target="digits", n_train=40, seed=20_000_000, blocks=1, epochs=3,
                test_every=2, augment="none")
    return FinetuneConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    return build_model("small_resnet", 7, seed=3).eval()  # 7 classes: the FC must be replaced for digits' 10


def test_eval_epochs_follow_table_4() -> None:
    assert _cfg(epochs=100, test_every=20).eval_epochs() == [1, 21, 41, 61, 81, 100]
    assert _cfg(epochs=150, test_every=10).eval_epochs()[-3:] == [131, 141, 150]


def test_runs_are_deterministic(source) -> None:
    a, b = finetune(source, _cfg(augment="legacy"), keep_model=True), finetune(source, _cfg(augment="legacy"), keep_model=True)
    assert a.curve == b.curve
    for (name, pa), (_, pb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("blocks", [1, 2])
def test_frozen_parameters_unchanged_and_unfrozen_changed(source, blocks: int) -> None:
    result = finetune(source, _cfg(blocks=blocks, bn_mode="frozen"), keep_model=True)
    model, before = result.model, dict(source.named_parameters())
    trained = [block for _, block in model.blocks()[-blocks:]]  # the last `blocks` blocks of the module tree
    trained_ids = {id(p) for block in trained for p in block.parameters()}
    frozen_buffers = {id(b) for b in model.buffers()} - {id(b) for block in trained for b in block.buffers()}
    assert trained_ids
    for name, param in model.named_parameters():
        if name.startswith("net.fc."):  # re-initialised for the target's classes (test below)
            continue
        if id(param) in trained_ids:
            assert not torch.equal(param, before[name]), f"{name} should have been trained"
        else:
            assert torch.equal(param, before[name]), f"{name} is frozen but changed"
    source_buffers = dict(source.named_buffers())
    for name, buffer in model.named_buffers():
        if id(buffer) in frozen_buffers:
            assert torch.equal(buffer, source_buffers[name]), f"{name} is in a frozen block but changed"


def test_bn_train_mode_updates_frozen_running_stats(source) -> None:
    result = finetune(source, _cfg(blocks=1, bn_mode="train"), keep_model=True)
    assert not torch.equal(result.model.state_dict()["net.layer1.0.bn1.running_mean"],
                           source.state_dict()["net.layer1.0.bn1.running_mean"])
    assert torch.equal(result.model.state_dict()["net.layer1.0.conv1.weight"], source.state_dict()["net.layer1.0.conv1.weight"])


def test_fc_is_reinitialised_for_the_target(source) -> None:
    model = prepare_model(source, _cfg(), 10, torch.device("cpu"))
    assert model.fc.out_features == 10 and source.fc.out_features == 7
    again = prepare_model(source, _cfg(), 10, torch.device("cpu"))
    other_seed = prepare_model(source, _cfg(seed=1), 10, torch.device("cpu"))
    assert torch.equal(model.fc.weight, again.fc.weight)
    assert not torch.equal(model.fc.weight, other_seed.fc.weight)
    assert [p.requires_grad for p in model.fc.parameters()] == [True, True]
    assert not any(p.requires_grad for p in model.net.layer3.parameters())


@pytest.mark.numerics
@pytest.mark.parametrize("blocks", [0, 1, 3])
def test_feature_cache_gives_the_same_numbers_as_the_naive_loop(blocks: int) -> None:
    """Two computation paths compared in float64 (tests/helpers/engine_cases.float64), where 3 epochs amplify
    rounding to ~1e-14: the test accuracy must be equal; the reported loss is a float32 number in both paths
    (cross-entropy of float32 logits), so it agrees to float32 rounding (1e-6 relative, 8 ulps)."""
    from tests.helpers.engine_cases import float64

    with float64():
        source = build_model("small_resnet", 7, seed=3).eval()
        naive = finetune(source, _cfg(blocks=blocks, feature_cache=False), keep_model=True)
        cached = finetune(source, _cfg(blocks=blocks, feature_cache=True), keep_model=True)
    assert [p.epoch for p in naive.curve] == [p.epoch for p in cached.curve]
    for a, b in zip(naive.curve, cached.curve, strict=True):
        assert a.test_acc == b.test_acc
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-6)
    for name, value in naive.model.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(cached.model.state_dict()[name], value, rtol=1e-9, atol=1e-12), name


def test_invalid_configurations_are_refused(source) -> None:
    with pytest.raises(RtxError, match="feature_cache needs augment='none'"):
        finetune(source, _cfg(augment="legacy", feature_cache=True))
    with pytest.raises(RtxError, match="augment is a policy name .* not True"):
        _cfg(augment=True)
    with pytest.raises(RtxError, match="has 4"):
        finetune(source, _cfg(blocks=9))
    with pytest.raises(RtxError, match="valid choices: frozen, train"):
        finetune(source, _cfg(bn_mode="partly"))


# Keys recorded by main before issue 21 (printed there with this code's FinetuneConfig): caches and fixtures are
# addressed by them, so they must never change. One per augmentation policy and the demo's and paper's recipes.
RECORDED_KEYS = {
    "finetune-3209e36a07e55fdc": {},  # defaults: augment 'legacy' (recorded as True)
    "finetune-5fad46f46c1ea4e2": {"augment": "none"},  # recorded as False
    "finetune-d66a4966dc768c10": {"augment": "none", "feature_cache": True},  # the demo's recipe
    "finetune-daf56a2b9c21b91b": {"augment": "paper", "bn_mode": "train", "fc_init": "normal", "lr_schedule": "step",
                                  "precision": "bf16", "sampler": "authors", "normalisation": "authors"},
}


@pytest.mark.parametrize("key", sorted(RECORDED_KEYS))
def test_run_keys_are_the_recorded_ones(key: str) -> None:
    cfg = FinetuneConfig(source="l2_3", source_checksum="abc123", target="cifar10", n_train=100, seed=20_000_000,
                         blocks=3, epochs=100, test_every=20, **RECORDED_KEYS[key])
    assert cfg.key == key


def test_a_presets_true_false_become_policy_names_once() -> None:
    from compute.presets import FinetuneGrid

    grids = [FinetuneGrid(("digits",), (40,), (0,), (1,), augment=flag) for flag in (True, False)]
    assert [g.augment for g in grids] == ["legacy", "none"]
    assert FinetuneGrid(("digits",), (40,), (0,), (1,), augment="paper").augment == "paper"
