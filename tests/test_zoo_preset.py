"""The `zoo` preset: 15 hub ResNet-50s whose names, budgets and file names agree; offline it asks for the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute.attacks import parse_constraint
from compute.errors import RtxError
from compute.models.hub import parse_hub_uri
from compute.presets import ZOO_IMAGENET_TOP1, get_preset
from compute.train_source import train_source

L2 = [0, 0.01, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 3, 5]
LINF = [0.5, 1, 2, 4, 8]  # /255


def test_zoo_has_every_published_budget_once() -> None:
    zoo = get_preset("zoo")
    budgets = {}
    for spec in zoo.sources:
        attack = parse_constraint(spec.constraint, spec.attack_steps)
        budgets[spec.name] = ("l2" if attack.kind == "none" else attack.norm,
                              round(attack.eps * (255 if attack.norm == "linf" else 1), 6))
        assert spec.arch == "resnet50" and spec.dataset == "imagenet"
    assert sorted(v for k, v in budgets.values() if k == "l2") == L2
    assert sorted(v for k, v in budgets.values() if k == "linf") == LINF
    assert len(budgets) == 15 and zoo.natural == "l2_0" and budgets["l2_0"] == ("l2", 0)


def test_file_names_follow_the_hub_repository() -> None:
    names = {s.name: parse_hub_uri(s.checkpoint) for s in get_preset("zoo").sources}
    assert {hub.repo_id for hub in names.values()} == {"madrylab/robust-imagenet-models"}
    assert names["l2_3"].filename == "resnet50_l2_eps3.ckpt"
    assert names["l2_0.25"].filename == "resnet50_l2_eps0.25.ckpt"
    assert names["linf_4"].filename == "resnet50_linf_eps4.0.ckpt"
    assert names["linf_0.5"].filename == "resnet50_linf_eps0.5.ckpt"


def test_only_the_accuracies_paper_facts_gives_are_recorded() -> None:
    zoo = get_preset("zoo")
    assert ZOO_IMAGENET_TOP1 == {"l2_0": 75.80, "l2_1": 70.43, "l2_3": 62.83, "l2_5": 56.13}
    assert "62.83%" in zoo.source("l2_3").note and "not in paper_facts" in zoo.source("linf_4").note


def test_zoo_source_offline_without_the_file_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(RtxError, match=r"hf download madrylab/robust-imagenet-models resnet50_l2_eps3\.ckpt"):
        train_source(get_preset("zoo").source("l2_3"), tmp_path / "cache", progress=False)
