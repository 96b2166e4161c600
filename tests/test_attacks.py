"""Attacks: constraint parsing, the eps-ball and [0, 1] invariants, PGD's strength, the reference oracle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compute.attacks import (
    ATTACKS,
    NORMS,
    AttackConfig,
    OnPixels,
    attack_names,
    parse_constraint,
    perturb,
    pgd_reference,
)
from compute.data import load_dataset
from compute.errors import RtxError
from compute.models import build_model
from compute.training import train_step

TOL = 1e-5


@pytest.fixture(scope="module")
def model() -> OnPixels:
    """A small_resnet trained naturally for 12 steps on 1,536 Fashion-MNIST images (about 50% accurate)."""
    torch.manual_seed(0)
    net = build_model("small_resnet", 10, seed=0).to(memory_format=torch.channels_last)
    pixels = OnPixels(net, net.input_size)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    train = load_dataset("fmnist", "train")
    net.train()
    for i in range(0, 1536, 128):
        train_step(pixels, optimizer, train.images[i:i + 128], train.labels[i:i + 128])
    return pixels.eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    test = load_dataset("fmnist", "test")
    return test.images[:64], test.labels[:64]  # (64, 1, 28, 28), (64,)


def _loss(model: OnPixels, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


# --- parsing -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "steps", "expected"), [
    ("none", 0, AttackConfig("none", None, 0.0, 0)),
    ("l2:1.5", 3, AttackConfig("pgd", "l2", 1.5, 3)),
    ("L2:3", 20, AttackConfig("pgd", "l2", 3.0, 20)),
    ("linf:4/255", 20, AttackConfig("pgd", "linf", 4 / 255, 20)),
    ("linf:0.1", 1, AttackConfig("pgd", "linf", 0.1, 1)),
    ("gaussian:0.054", 0, AttackConfig("gaussian", None, 0.054, 0)),
])
def test_parse_constraint(text: str, steps: int, expected: AttackConfig) -> None:
    assert parse_constraint(text, steps) == expected


@pytest.mark.parametrize("text", ["l3:1", "l2", "l2:", "l2:abc", "linf:4/0", "gaussian:-1", "pgd:0.1", "linf:nan"])
def test_bad_constraints_list_the_forms(text: str) -> None:
    with pytest.raises(RtxError, match="l2:EPS.*linf:EPS.*gaussian:SIGMA") as err:
        parse_constraint(text, 3)
    assert "\n" not in str(err.value)


def test_pgd_constraint_needs_steps() -> None:
    with pytest.raises(RtxError, match="steps"):
        parse_constraint("l2:1.5", 0)


def test_alpha_is_c_eps_over_k() -> None:
    assert parse_constraint("l2:1.5", 3).alpha == pytest.approx(2.5 * 1.5 / 3)
    assert AttackConfig("pgd", "linf", 0.1, 4, step_mult=2.0).alpha == pytest.approx(0.05)


def test_registry_lists_kinds_and_rejects_unknown(batch) -> None:
    assert attack_names() == sorted(["none", "pgd", "gaussian"]) == sorted(ATTACKS)
    assert sorted(NORMS) == ["l2", "linf"]
    x, y = batch
    with pytest.raises(RtxError, match="valid choices: gaussian, none, pgd"):
        perturb(torch.nn.Identity(), x, y, AttackConfig("fgsm", "l2", 1.0, 1))
    with pytest.raises(RtxError, match="valid choices: l2, linf"):
        perturb(torch.nn.Identity(), x, y, AttackConfig("pgd", "l1", 1.0, 1))


# --- invariants ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("constraint", ["l2:1.5", "l2:0.3", "linf:0.1", "linf:8/255"])
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("random_start", [False, True])
def test_perturbation_stays_in_ball_and_pixel_range(model, batch, constraint, steps, random_start) -> None:
    x, y = batch
    base = parse_constraint(constraint, steps)
    cfg = AttackConfig(base.kind, base.norm, base.eps, steps, random_start=random_start)
    x_adv = perturb(model, x, y, cfg, torch.Generator().manual_seed(1))
    delta = (x_adv - x).flatten(1)
    size = delta.norm(dim=1) if cfg.norm == "l2" else delta.abs().amax(dim=1)
    assert x_adv.shape == x.shape
    assert float(size.max()) <= cfg.eps + TOL
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float(size.mean()) > 0.5 * cfg.eps  # it did move


def test_pgd1_from_zero_reaches_the_sphere(model) -> None:
    """With zero init the single step is longer than eps and is projected onto the sphere (Section 7's PGD(1))."""
    x = torch.full((4, 1, 28, 28), 0.5)  # mid-grey: no clipping at 0 or 1
    y = torch.arange(4)
    x_adv = perturb(model, x, y, parse_constraint("l2:1.5", 1))
    assert torch.allclose((x_adv - x).flatten(1).norm(dim=1), torch.full((4,), 1.5), atol=1e-4)


def test_gaussian_noise_has_sigma_and_is_seeded() -> None:
    x, y = torch.full((64, 1, 28, 28), 0.5), torch.zeros(64, dtype=torch.long)
    cfg = parse_constraint("gaussian:0.054", 0)
    a = perturb(torch.nn.Identity(), x, y, cfg, torch.Generator().manual_seed(3))
    b = perturb(torch.nn.Identity(), x, y, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert float((a - x).std()) == pytest.approx(0.054, rel=0.02)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_none_returns_the_input(batch) -> None:
    x, y = batch
    assert torch.equal(perturb(torch.nn.Identity(), x, y, parse_constraint("none", 0)), x)


# --- strength --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("constraint", ["l2:1.5", "linf:0.1"])
def test_pgd_raises_the_loss_over_clean_and_random_noise(model, batch, constraint) -> None:
    x, y = batch
    cfg = parse_constraint(constraint, 3)
    x_adv = perturb(model, x, y, cfg)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    if cfg.norm == "l2":
        noise = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * cfg.eps  # same L2 norm as the ball
    else:
        noise = noise.sign() * cfg.eps  # a random corner of the Linf ball
    x_noise = (x + noise).clamp(0, 1)
    clean, random, adversarial = _loss(model, x, y), _loss(model, x_noise, y), _loss(model, x_adv, y)
    assert adversarial > clean + 0.1
    assert adversarial > random + 0.1


@pytest.mark.parametrize("constraint", ["l2:1.5", "linf:0.1", "l2:0.5"])
def test_more_steps_never_weaken_the_attack(model, batch, constraint) -> None:
    x, y = batch
    losses = [_loss(model, perturb(model, x, y, parse_constraint(constraint, k)), y) for k in (1, 2, 4, 8)]
    for fewer, more in zip(losses, losses[1:], strict=False):
        assert more >= fewer - 0.02 * abs(fewer), losses


@pytest.mark.parametrize("constraint", ["l2:1.5", "linf:0.1"])
def test_batched_pgd_matches_the_reference(model, batch, constraint) -> None:
    """Same images up to float error. Where the softmax saturates (loss > 10) the gradient is tiny and its
    rounding differs between a batch and a single image, so there only the attained loss is compared."""
    x, y = batch[0][:8], batch[1][:8]
    cfg = parse_constraint(constraint, 3)
    fast, ref = perturb(model, x, y, cfg), pgd_reference(model, x, y, cfg)
    same = (fast - ref).flatten(1).abs().amax(dim=1) < 1e-4
    assert int(same.sum()) >= 6, same
    with torch.no_grad():
        loss_fast = F.cross_entropy(model(fast), y, reduction="none")
        loss_ref = F.cross_entropy(model(ref), y, reduction="none")
    assert torch.allclose(loss_fast, loss_ref, rtol=1e-3)


def test_any_batch_size_gives_the_same_images(model, batch) -> None:
    """Eval-mode BN and a summed loss: a batch of 1 and a batch of 5 give the same perturbations."""
    x, y = batch[0][:5], batch[1][:5]
    cfg = parse_constraint("l2:1.5", 2)
    together = perturb(model, x, y, cfg)
    alone = torch.cat([perturb(model, x[i:i + 1], y[i:i + 1], cfg) for i in range(5)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_model_is_in_eval_mode_during_the_attack_and_restored_after(model, batch) -> None:
    x, y = batch[0][:8], batch[1][:8]
    seen: list[bool] = []
    first_block = model.model.blocks()[0][1]
    handle = first_block.register_forward_hook(lambda mod, inp, out: seen.append(mod.training))
    bn = model.model.net.bn1
    stats = bn.running_mean.clone()
    try:
        model.train()
        perturb(model, x, y, parse_constraint("linf:0.1", 2))
        assert model.training and first_block.training
        model.eval()
        perturb(model, x, y, parse_constraint("linf:0.1", 2))
        assert not model.training
    finally:
        handle.remove()
        model.eval()
    assert seen == [False] * 4
    assert torch.equal(bn.running_mean, stats)  # eval mode: BN statistics untouched by the attack


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(model, batch) -> None:
    import copy

    x, y = batch[0][:16], batch[1][:16]
    cfg = parse_constraint("l2:1.5", 3)
    gpu = copy.deepcopy(model).cuda()
    assert torch.allclose(perturb(gpu, x.cuda(), y.cuda(), cfg).cpu(), perturb(model, x, y, cfg), atol=1e-3)
