"""The featviz page's numbers (app.spectra): per-image high-frequency share from stored PNGs, grouped robust vs
natural, and a caption that follows the numbers whichever way they go."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app import charts, spectra
from compute.images import to_png
from compute.roles import SourceRoles

SMOOTH = np.outer(np.sin(np.linspace(0, np.pi, 28)), np.sin(np.linspace(0, np.pi, 28)))


def _viz(robust_noisy: bool) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model in ("natural", "l2_0.22"):
        noisy = (model == "natural") != robust_noisy
        for seed in ("chelsea", "coffee"):
            for unit in (3, 7):
                image = rng.random((28, 28)) if noisy else np.clip(SMOOTH + 0.01 * rng.random((28, 28)), 0, 1)
                rows.append({"key": f"k-{model}", "model": model, "seed_image": seed, "unit": unit, "steps": 64,
                             "step_size": 0.1, "png": to_png(image, 112), "seed_png": to_png(SMOOTH, 112),
                             "created": pd.Timestamp("2026-01-01")})
    return pd.DataFrame(rows)


def test_spectra_follow_the_pictures_and_the_caption_follows_the_numbers() -> None:
    groups = spectra.model_groups(SourceRoles("natural", "l2_0.22"), ["natural", "l2_0.22"])
    assert groups == {"natural": "natural", "l2_0.22": "robust"}
    assert spectra.model_groups(SourceRoles("l2_0.22"), ["natural", "l2_0.22"]) == {  # the role decides, not the name
        "natural": "robust", "l2_0.22": "natural"}
    frame = spectra.featviz_spectra(_viz(robust_noisy=False), groups)
    assert len(frame) == 8 and (frame["seed_hf"] < 0.01).all()
    assert (frame.loc[frame["group"] == "natural", "hf"] > 0.5).all()
    assert (frame.loc[frame["group"] == "robust", "hf"] < 0.05).all()
    summary = spectra.spectrum_summary(frame)
    assert set(summary["model"]) == {"natural", "l2_0.22"} and (summary["n"] == 4).all()
    assert (summary["lo"] <= summary["mean"]).all() and (summary["mean"] <= summary["hi"]).all()
    caption = spectra.spectrum_caption(frame)
    assert "robust pictures carry less fine texture" in caption and "seed photos themselves" in caption
    diff = spectra.hf_difference(frame)
    assert diff.hi < 0 and diff.mean == pytest.approx(
        frame.loc[frame["group"] == "robust", "hf"].mean() - frame.loc[frame["group"] == "natural", "hf"].mean())
    opposite = spectra.spectrum_caption(spectra.featviz_spectra(_viz(robust_noisy=True), groups))
    assert "MORE fine texture" in opposite and "opposite of the paper" in opposite
    layers = charts.featviz_spectrum_chart(frame, summary).to_dict()["layer"]
    assert layers[0]["encoding"]["y"]["field"] == "hf" and layers[1]["encoding"]["y2"]["field"] == "hi"


def test_the_caption_says_not_distinguishable_when_the_difference_interval_covers_zero() -> None:
    """Both kinds paint the same noise: the difference's interval covers zero and the caption decides nothing."""
    frame = spectra.featviz_spectra(_viz(robust_noisy=False), spectra.model_groups(SourceRoles("natural", "l2_0.22"), ["natural", "l2_0.22"]))
    rng = np.random.default_rng(1)
    same = frame.assign(hf=0.5 + 0.05 * rng.standard_normal(len(frame)))
    diff = spectra.hf_difference(same)
    assert diff.lo < 0 < diff.hi
    caption = spectra.spectrum_caption(same)
    assert "Robust minus natural: not distinguishable here" in caption
    assert "less fine texture" not in caption and "MORE" not in caption
    assert spectra.hf_difference(frame[frame["group"] == "robust"]) is None


def test_only_the_newest_result_per_model_and_seed_is_shown() -> None:
    new = _viz(False)
    old = new.assign(key="old", created=pd.Timestamp("2025-01-01"), unit=new["unit"] + 100)
    kept = spectra.latest_featviz(pd.concat([old, new], ignore_index=True))
    assert len(kept) == len(new) and set(kept["unit"]) == {3, 7}
