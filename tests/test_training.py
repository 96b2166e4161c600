"""compute.training: the one training loop and evaluation, and the device resolver."""

from __future__ import annotations

import torch

from compute.attacks import parse_constraint
from compute.models import build_model
from compute.robustness import evaluate_robustness
from compute.settings import resolve_device
from compute.training import evaluate, shuffled_batches, train_one_epoch


def _data(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_robust_evaluation_scores_in_eval_mode_and_leaves_the_model_untouched() -> None:
    model = build_model("small_resnet", 10, seed=0)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = _data()
    acc = evaluate_robustness(model, images, labels, parse_constraint("l2:0.5", 2), batch_size=8,
                              generator=torch.Generator().manual_seed(0))
    assert model.training  # mode restored
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no BatchNorm statistics drifted
    assert 0.0 <= acc <= 1.0


def test_evaluate_counts_correct_predictions_exactly() -> None:
    model = build_model("small_resnet", 10, seed=0).eval()
    images, labels = _data(30)
    from compute.attacks import OnPixels

    pixels = OnPixels(model, model.input_size)
    with torch.no_grad():
        expected = int((pixels(images).argmax(1) == labels).sum())
    assert evaluate(pixels, images, labels, batch_size=7) == expected / 30


def test_train_one_epoch_is_the_plain_sgd_loop() -> None:
    images, labels = _data()
    models = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models]
    stats = train_one_epoch(models[0], opts[0], shuffled_batches(40, 16, torch.Generator().manual_seed(3),
                                                                 lambda idx: (images[idx], labels[idx])))
    order, total = torch.randperm(40, generator=torch.Generator().manual_seed(3)), 0.0
    for i in range(0, 40, 16):
        idx = order[i:i + 16]
        loss = torch.nn.functional.cross_entropy(models[1](images[idx]), labels[idx])
        opts[1].zero_grad()
        loss.backward()
        opts[1].step()
        total += float(loss) * len(idx)
    assert stats.loss == total / 40
    assert all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True))


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
