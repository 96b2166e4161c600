"""compute.departures: the one list of differences from the paper and the authors' code, and the page showing it."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from app.explorer import PAGES
from compute.data import load_dataset, to_model_input
from compute.departures import DEPARTURES, departures_from_code
from compute.finetune import FinetuneConfig

APP = str(Path(__file__).resolve().parents[1] / "app" / "explorer.py")
# What issue 24 asks "Paper vs here" to list (words each row's setting must contain).
REQUIRED = ("normalisation", "sampler", "upscaling", "weights file", "random streams")


def test_every_departure_issue_24_names_is_listed_with_what_it_changes() -> None:
    settings = [d.setting for d in DEPARTURES]
    assert len(set(settings)) == len(settings)
    for word in REQUIRED:
        assert any(word in s for s in settings), word
    for d in DEPARTURES:
        assert all(getattr(d, f.name) not in ("", None) for f in fields(d) if f.name != "option"), d.setting
    assert {d.setting for d in departures_from_code()} >= {"upscaling to 224", "natural ImageNet weights file"}


def test_every_option_named_is_a_config_field_or_a_flag(capsys) -> None:
    """Options quote FinetuneConfig fields (name='value') and `rtx finetune` flags: both must exist."""
    from compute.cli import main

    config_fields = {f.name for f in fields(FinetuneConfig)}
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    finetune_help = capsys.readouterr().out
    for d in DEPARTURES:
        for name in re.findall(r"(\w+)='", d.option):
            assert name in config_fields, (d.setting, name)
        for flag in re.findall(r"--[a-z-]+", d.option):
            assert flag in finetune_help, (d.setting, flag)


def test_upscaling_differs_from_pils_uint8_bilinear_by_at_most_one_level() -> None:
    """Backs the 'upscaling to 224' row: torchvision's Resize on a PIL image (the authors') vs the float bilinear
    here, 28 -> 224 on mnist5k: at most 1/255 per value (PIL rounds to uint8 with its fixed-point filter)."""
    images = load_dataset("mnist5k", "train").images[:32]  # (32, 1, 28, 28), exact multiples of 1/255
    ours = to_model_input(images, 224)[:, 0]
    theirs = torch.stack([torch.from_numpy(np.asarray(
        Image.fromarray((x[0] * 255).round().byte().numpy()).resize((224, 224), Image.BILINEAR), dtype=np.float32))
        for x in images]) / 255
    diff = (ours - theirs).abs()
    assert diff.max() <= 1 / 255 + 1e-6
    assert diff.max() > 0  # they do differ: a real departure


def test_the_paper_page_shows_every_departure_even_without_runs(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RTX_CACHE", str(tmp_path / "empty"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    path = next(p for p, _, url in PAGES if url == "paper")
    at = at.switch_page(path).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = at.dataframe[0].value
    assert list(shown["setting"]) == [d.setting for d in departures_from_code()] + [
        d.setting for d in DEPARTURES if d.follows_code]  # departures from the code first
    assert set(shown["what it changes"]) == {d.effect for d in DEPARTURES}
    assert f"{len(departures_from_code())} settings of the `paper` preset depart" in " ".join(c.value for c in at.caption)
