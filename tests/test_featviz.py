"""compute.featviz: activation maximisation raises the unit, results land in the cache as PNGs, bad input fails."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from compute.cache import CacheReader, CacheWriter
from compute.errors import RtxError
from compute.featviz import SEEDS_DIR, input_channels, load_seed, maximize, seed_names, top_units
from compute.images import from_png
from compute.models import build_model
from compute.presets import FeatvizSpec, get_preset
from compute.records import SourceRecord
from compute.stages.featviz import featviz_stage


def test_shipped_seeds_exist_with_their_licence() -> None:
    assert {"chelsea", "coffee", "rocket"} <= set(seed_names())
    licence = (SEEDS_DIR / "LICENSE.txt").read_text()
    for name in ("chelsea", "coffee", "rocket"):
        assert name in licence
    assert "CC0" in licence and "public domain" in licence
    seed = load_seed("rocket", 28)
    assert seed.shape == (3, 28, 28) and 0 <= float(seed.min()) and float(seed.max()) <= 1
    for path in SEEDS_DIR.glob("*.*g"):
        assert max(from_png(path.read_bytes()).size) <= 128


def test_gradient_ascent_raises_each_unit_inside_the_ball() -> None:
    model = build_model("small_resnet", 10, seed=0).eval()
    seed = load_seed("chelsea", model.input_size)
    units = top_units(model, seed, 3)
    viz = maximize(model, seed, units=units, steps=8, eps=1.0, device="cpu")
    assert viz.images.shape == (3, 3, 28, 28) and viz.units == units
    assert float(viz.images.min()) >= 0 and float(viz.images.max()) <= 1
    distance = (viz.images - seed).flatten(1).norm(dim=1)
    assert (distance <= 1.0 + 1e-5).all() and (distance > 0.5).all()  # inside the ball, and it moved
    assert (viz.final > viz.start).all() and (viz.start > 0).all()
    assert not torch.equal(viz.images[0], viz.images[1])  # each unit has its own image
    unchanged = maximize(model, seed, units=(0,), steps=0, eps=1.0, device="cpu")
    assert torch.equal(unchanged.images[0], seed)


def test_top_units_are_the_seeds_strongest_activations() -> None:
    model = build_model("small_resnet", 10, seed=0).eval()
    seed = load_seed("coffee", model.input_size)
    with torch.no_grad():
        act = model.features(seed[None])[0]
    units = top_units(model, seed, 4)
    assert list(units) == torch.argsort(act, descending=True)[:4].tolist() and float(act[units[0]]) > 0
    with pytest.raises(RtxError, match="top_units"):
        top_units(model, seed, 0)


def test_grey_sources_are_optimised_in_one_channel() -> None:
    assert input_channels("fmnist") == 1 and input_channels("cifar10") == 3 and input_channels("imagenet") == 3
    model = build_model("small_resnet", 10, seed=0).eval()
    grey = load_seed("rocket", model.input_size, channels=1)
    assert grey.shape == (1, 28, 28)
    viz = maximize(model, grey, units=top_units(model, grey, 2), steps=4, eps=0.5, device="cpu")
    assert viz.images.shape == (2, 1, 28, 28) and (viz.final > viz.start).all()
    assert ((viz.images - grey).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all()


def test_bad_units_seeds_and_steps_raise_one_line_errors() -> None:
    model = build_model("small_resnet", 10, seed=0)
    seed = load_seed("coffee", 28)
    with pytest.raises(RtxError, match="0..127"):
        maximize(model, seed, units=(128,), steps=1, eps=0.1)
    with pytest.raises(RtxError, match="eps > 0"):
        maximize(model, seed, units=(0,), steps=1, eps=0)
    with pytest.raises(RtxError, match="valid choices: chelsea, coffee, rocket"):
        load_seed("boat", 28)


def test_stage_stores_pngs_per_source_seed_and_unit(source_cache: Path) -> None:
    preset = get_preset("tiny")
    preset = replace(preset, featviz=FeatvizSpec(("natural", "l2_1.5"), ("chelsea", "rocket"), (0, 3), steps=3))
    with CacheWriter(source_cache) as writer:
        featviz_stage(preset, writer, device="cpu", progress=False)
    rows = CacheReader(source_cache).featviz()
    assert len(rows) == 2 * 2 * 2
    assert set(rows.model) == {"natural", "l2_1.5"} and set(rows.seed_image) == {"chelsea", "rocket"}
    image, seed = from_png(bytes(rows.png[0])), from_png(bytes(rows.seed_png[0]))
    assert image.size == seed.size and min(image.size) >= 56
    assert image.mode == "RGB"  # these stand-in sources say their dataset is 'random': colour input
    assert (rows.steps == 3).all()
    # a second run computes nothing new
    with CacheWriter(source_cache) as writer:
        featviz_stage(preset, writer, device="cpu", progress=False)
    assert list(CacheReader(source_cache).featviz().created) == list(rows.created)
    bad = replace(preset, featviz=FeatvizSpec(("natural",), ("boat",)))
    with CacheWriter(source_cache) as writer, pytest.raises(RtxError, match="seed image"):
        featviz_stage(bad, writer, progress=False)


def test_cli_featviz_with_options(source_cache: Path) -> None:
    from compute.cli import main

    assert main(["--cache", str(source_cache), "featviz", "--preset", "tiny", "--sources", "natural",
                 "--seed-images", "coffee", "--units", "1,2", "--ascent-steps", "2", "--step-size", "0.1", "--device", "cpu",
                 "--no-progress"]) == 0
    rows = CacheReader(source_cache).featviz()
    assert sorted(rows.unit) == [1, 2] and set(rows.seed_image) == {"coffee"} and (rows.step_size == 0.1).all()


def test_stage_optimises_grey_sources_in_grey(tmp_path: Path) -> None:
    from compute.models import save_checkpoint
    from compute.paths import artefact_path, file_checksum

    with CacheWriter(tmp_path) as writer:
        path = save_checkpoint(build_model("small_resnet", 10, seed=0).eval(),
                               artefact_path(tmp_path, "sources", "test-grey", "safetensors"), {"name": "grey"})
        writer.record_source_model(SourceRecord("grey", "small_resnet", "none", 0, "fmnist", file_checksum(path),
                                                str(path.relative_to(tmp_path)), meta={"test": True}))
        preset = replace(get_preset("tiny"), featviz=FeatvizSpec(("grey",), ("coffee",), steps=2, top_units=2))
        featviz_stage(preset, writer, device="cpu", progress=False)
    rows = CacheReader(tmp_path).featviz()
    assert len(rows) == 2 and rows["unit"].nunique() == 2
    assert {from_png(bytes(p)).mode for p in [*rows.png, *rows.seed_png]} == {"L"}
