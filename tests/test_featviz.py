"""compute.featviz: activation maximisation raises the unit, results land in the cache as PNGs, bad input fails."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from compute.cache import CacheReader, CacheWriter
from compute.errors import RtxError
from compute.featviz import SEEDS_DIR, load_seed, maximize, seed_names
from compute.images import from_png
from compute.models import build_model
from compute.presets import FeatvizSpec, get_preset
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


def test_gradient_ascent_raises_each_unit() -> None:
    model = build_model("small_resnet", 10, seed=0).eval()
    seed = load_seed("chelsea", model.input_size)
    viz = maximize(model, seed, units=(0, 5, 127), steps=8, step_size=0.05, device="cpu")
    assert viz.images.shape == (3, 3, 28, 28)
    assert float(viz.images.min()) >= 0 and float(viz.images.max()) <= 1
    assert (viz.final >= viz.start).all() and (viz.final[viz.start > 0] > viz.start[viz.start > 0]).all()
    assert viz.final[0] > viz.start[0] > 0  # unit 0 is active on this seed
    assert not torch.equal(viz.images[0], viz.images[1])  # each unit has its own image
    unchanged = maximize(model, seed, units=(0,), steps=0, step_size=0.05, device="cpu")
    assert torch.equal(unchanged.images[0], seed)


def test_bad_units_seeds_and_steps_raise_one_line_errors() -> None:
    model = build_model("small_resnet", 10, seed=0)
    seed = load_seed("coffee", 28)
    with pytest.raises(RtxError, match="0..127"):
        maximize(model, seed, units=(128,), steps=1, step_size=0.1)
    with pytest.raises(RtxError, match="step_size"):
        maximize(model, seed, units=(0,), steps=1, step_size=0)
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
