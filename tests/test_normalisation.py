"""Input statistics of a fine-tune: the authors' rule gives a source whose file stored none the target's; keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compute.data import load_dataset
from compute.errors import RtxError
from compute.finetune import FinetuneConfig, PrefixCache, finetune, key_fields, prepare_model
from compute.models import build_model, load_checkpoint, save_checkpoint
from compute.models.architectures import IMAGENET_MEAN, IMAGENET_STD
from compute.normalisation import AUTHORS_TARGET_STATISTICS, split_statistics, target_statistics
from compute.presets import get_preset
from compute.sweep import plan
from compute.train_source import import_source
from tests.test_checkpoints import madry_layout

CPU = torch.device("cpu")


def _cfg(**kw) -> FinetuneConfig:
    base = dict(source="s", source_checksum="x", target="mnist5k", n_train=20, seed=20_000_000, blocks=1, epochs=2,
                test_every=1, batch_size=10, augment="none", test_limit=100)
    return FinetuneConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """natural: a torchvision state dict (stores no statistics); robust: a MadryLab file storing ImageNet's."""
    folder = tmp_path_factory.mktemp("sources")
    net = build_model("small_resnet", 10, seed=2).net
    torch.save(net.state_dict(), folder / "natural.pth")
    torch.save({"model": madry_layout(net), "epoch": 90}, folder / "robust.pt")
    loaded = {name: load_checkpoint(folder / file, "small_resnet")[0]
              for name, file in (("natural", "natural.pth"), ("robust", "robust.pt"))}
    return {**loaded, "folder": folder}


def _stats(model: torch.nn.Module) -> list[float]:
    """mean then std, 6 values."""
    return model.normalize.mean.flatten().tolist() + model.normalize.std.flatten().tolist()


def test_loaders_say_whether_the_file_stored_statistics(sources) -> None:
    assert sources["natural"].statistics_origin == "architecture"
    assert sources["robust"].statistics_origin == "checkpoint"


@pytest.mark.parametrize(("target", "mean", "std"), [("mnist5k", 0.1307, 0.3081), ("fmnist", 0.1801, 0.3421),
                                                     ("kmnist", 0.1801, 0.3421), ("mnist+lowres(10)", 0.1307, 0.3081)])
def test_natural_source_takes_the_targets_statistics_under_the_authors_rule(sources, target, mean, std) -> None:
    model = prepare_model(sources["natural"], _cfg(target=target, normalisation="authors"), 10, CPU)
    assert _stats(model) == pytest.approx([mean] * 3 + [std] * 3, abs=1e-7)  # float32 buffers of the constants
    assert _stats(sources["natural"]) == pytest.approx([0.5] * 3 + [0.25] * 3)  # the source untouched
    kept = prepare_model(sources["natural"], _cfg(target=target, normalisation="source"), 10, CPU)
    assert _stats(kept) == _stats(sources["natural"])


def test_colour_targets_use_the_authors_constants() -> None:
    assert target_statistics("cifar100") == target_statistics("cifar10")
    assert target_statistics("cifar10").mean == (0.4914, 0.4822, 0.4465)
    assert target_statistics("svhn").std == (0.1980, 0.2010, 0.1970)
    assert target_statistics("caltech101").mean == IMAGENET_MEAN
    assert set(AUTHORS_TARGET_STATISTICS) >= set(get_preset("paper").grids[0].targets)


def test_robust_source_keeps_its_checkpoints_statistics(sources) -> None:
    for policy in ("authors", "source"):
        model = prepare_model(sources["robust"], _cfg(normalisation=policy), 10, CPU)
        assert _stats(model) == pytest.approx([*IMAGENET_MEAN, *IMAGENET_STD])


def test_a_target_without_the_authors_constants_gets_its_own_split_statistics(sources) -> None:
    """The authors' MNIST pair is MNIST's training pixels' mean and std: the same rule on mnist5k (5,000 of
    MNIST's digits) lands within 0.005 of it (a subset's statistics: measured 0.1315 / 0.3088), which is the
    rule used for targets their code never saw (digits here)."""
    mean, std = split_statistics("mnist5k").mean[0], split_statistics("mnist5k").std[0]
    assert abs(mean - 0.1307) < 0.005 and abs(std - 0.3081) < 0.005
    model = prepare_model(sources["natural"], _cfg(target="digits", normalisation="authors"), 10, CPU)
    images = load_dataset("digits", "train").images.double()
    assert _stats(model) == pytest.approx([images.mean().item()] * 3 + [images.std(unbiased=False).item()] * 3)


def test_the_choice_survives_conversion_into_the_cache(sources, tmp_path: Path) -> None:
    """Sources are re-saved in our format: the sidecar carries the loader's answer; sidecars written before it
    existed are read by format (a torchvision file stores no statistics)."""
    cases = (({"statistics": "architecture", "format": "torchvision"}, "architecture"),
             ({"format": "torchvision"}, "architecture"), ({"format": "madry"}, "checkpoint"), ({}, "checkpoint"))
    for i, (meta, origin) in enumerate(cases):
        path = save_checkpoint(sources["natural"], tmp_path / f"s{i}.safetensors", meta)
        assert load_checkpoint(path)[0].statistics_origin == origin
    for file, origin in (("natural.pth", "architecture"), ("robust.pt", "checkpoint")):  # `rtx import-source`
        row = import_source(sources["folder"] / file, file, "small_resnet", "none", 0, "imagenet", tmp_path / "cache")
        assert load_checkpoint(tmp_path / "cache" / row.path)[0].statistics_origin == origin


def test_normalisation_reaches_training_and_the_prefix_cache_keeps_policies_apart(sources) -> None:
    """Feature-cached runs share one PrefixCache: a run under the other policy must not reuse the first one's
    prefix activations (they were computed with other statistics)."""
    natural, robust = sources["natural"], sources["robust"]
    cfg = _cfg(feature_cache=True)
    shared = PrefixCache()
    own = finetune(natural, cfg, device="cpu", prefix_cache=shared)
    authors = finetune(natural, _cfg(feature_cache=True, normalisation="authors"), device="cpu", prefix_cache=shared)
    alone = finetune(natural, _cfg(feature_cache=True, normalisation="authors"), device="cpu")
    assert [p.train_loss for p in authors.curve] == [p.train_loss for p in alone.curve]
    assert [p.train_loss for p in authors.curve] != [p.train_loss for p in own.curve]
    same = [finetune(robust, _cfg(normalisation=p), device="cpu").curve for p in ("source", "authors")]
    assert same[0] == same[1]  # a robust source is untouched by the policy


def test_keys_differ_between_variants_and_defaults_keep_old_keys() -> None:
    """The default config's key was recorded before sampler/normalisation existed (computed with the code of
    main at 80fd9e0): unchanged, so the tiny/demo caches stay valid. Each variant has its own key."""
    old = FinetuneConfig(source="natural", source_checksum="abc", target="mnist5k", n_train=20, seed=20_000_000,
                         blocks=3, epochs=20, test_every=4, augment="none", feature_cache=True)
    assert old.key == "finetune-da0bb7e00ddf233a"
    assert "sampler" not in key_fields(old) and "normalisation" not in key_fields(old)
    keys = {_cfg(**kw).key for kw in ({}, {"sampler": "authors"}, {"normalisation": "authors"},
                                      {"sampler": "authors", "normalisation": "authors"})}
    assert len(keys) == 4
    with pytest.raises(RtxError, match="unknown normalisation 'imagenet'; valid choices: source, authors"):
        _cfg(normalisation="imagenet").validate(4)


def test_presets_and_cli_select_the_variants() -> None:
    checksums = {"natural": "a", "l2_3": "b", "linf_4": "c", "linf_8": "d"}
    paper = get_preset("paper").with_overrides(targets=("mnist",), sizes=(100,), seeds=(20_000_000,), blocks=(3,))
    authors = plan(paper, checksums)
    assert {(c.sampler, c.normalisation) for c in authors} == {("authors", "authors")}
    text = plan(paper.with_overrides(sampler="per-label", normalisation="source"), checksums)
    assert {(c.sampler, c.normalisation) for c in text} == {("per-label", "source")}
    assert not {c.key for c in authors} & {c.key for c in text}
    for name in ("tiny", "demo"):
        assert {(g.sampler, g.normalisation) for g in get_preset(name).grids} == {("per-label", "source")}
    assert {(g.sampler, g.normalisation) for g in get_preset("zoo").grids} == {("authors", "authors")}

    from compute.cli import build_parser
    from compute.cli.args import UsageError
    from compute.cli.sweep import preset_from_args

    args = build_parser().parse_args(["finetune", "--preset", "paper", "--sampler", "per-label",
                                      "--normalisation", "source"])
    preset = preset_from_args(args)
    assert {(g.sampler, g.normalisation) for g in preset.grids} == {("per-label", "source")}
    with pytest.raises(UsageError, match="--sampler"):  # the CLI's one-line usage error (compute.cli.args)
        build_parser().parse_args(["finetune", "--sampler", "random"])


def test_the_engine_keeps_cached_test_activations_of_the_two_policies_apart(sources) -> None:
    """The engine caches the test images' prefix activations per process: after a 'source' run, an 'authors' run
    of the same source and target must evaluate on activations made with the target's statistics."""
    from compute import engine

    def curve(policy: str) -> list[float]:
        (_, result), = engine.run_siblings(sources["natural"], [_cfg(normalisation=policy)], device="cpu")
        assert not isinstance(result, BaseException), result
        return [p.test_acc for p in result.curve]

    engine._PREFIX.clear()
    curve("source")
    after_source = curve("authors")
    engine._PREFIX.clear()
    assert after_source == curve("authors")
