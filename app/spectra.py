"""The featviz page's numbers: how much of each visualisation's energy is fine texture, robust vs natural.

Why: the eye can be fooled by a few pictures; the paper's claim (Fig. 1b) is that robust models' visualisations
show shapes and natural ones high-frequency patterns. `compute.spectrum.png_high_frequency_share` measures each
stored picture at the resolution it was optimised at, and the seed photo as the reference; here those numbers
are grouped per model and per kind of model (robust or natural) with their spread over units and seeds, and the
difference robust minus natural gets its own interval (Welch's t over pictures, `compute.intervals`): two groups'
intervals can overlap while their difference is clearly non-zero, so only the difference decides (issue 24).
Each picture counts as one draw; pictures of one seed photo share their start, so the interval is optimistic
where a model's units paint alike. Pure DataFrame functions, tested without Streamlit.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from compute.intervals import Interval, describe, difference_interval, mean_interval
from compute.roles import NATURAL_ROLE, SourceRoles
from compute.spectrum import png_high_frequency_share

__all__ = ["featviz_spectra", "hf_difference", "latest_featviz", "model_groups", "spectrum_caption",
           "spectrum_summary"]


def model_groups(roles: SourceRoles, models: Iterable[str]) -> dict[str, str]:
    """Model name -> 'natural' (the cache's natural reference, compute.roles) or 'robust'."""
    return {str(m): NATURAL_ROLE if roles.role_of(m) == NATURAL_ROLE else "robust" for m in models}


def latest_featviz(viz: pd.DataFrame) -> pd.DataFrame:
    """Only the newest result (job key) per (model, seed photo): a cache keeps older algorithms' pictures too."""
    if viz.empty:
        return viz
    newest = viz.sort_values("created").groupby(["model", "seed_image"])["key"].last()
    keep = [newest[(m, s)] == k for m, s, k in zip(viz["model"], viz["seed_image"], viz["key"], strict=True)]
    return viz[keep]


def featviz_spectra(viz: pd.DataFrame, groups: dict[str, str]) -> pd.DataFrame:
    """One row per visualisation: model, group, seed_image, unit, hf (its high-frequency share), seed_hf."""
    seed_hf = {png: png_high_frequency_share(bytes(png)) for png in {bytes(p) for p in viz["seed_png"]}}
    return pd.DataFrame({
        "model": viz["model"].to_numpy(), "group": [groups.get(m, "robust") for m in viz["model"]],
        "seed_image": viz["seed_image"].to_numpy(), "unit": viz["unit"].to_numpy(),
        "hf": [png_high_frequency_share(bytes(p)) for p in viz["png"]],
        "seed_hf": [seed_hf[bytes(p)] for p in viz["seed_png"]],
    })


def _interval(values: pd.Series) -> pd.Series:
    iv = mean_interval(values)
    return pd.Series({"n": iv.n, "mean": iv.mean, "sd": iv.sd if iv.n > 1 else 0.0, "lo": iv.lo, "hi": iv.hi})


def spectrum_summary(spectra: pd.DataFrame, by: str = "model") -> pd.DataFrame:
    """Mean, sd and 95% t-interval of `hf` over seeds and units per `by` ('model' or 'group'), with the seeds' mean."""
    keys = ["group", "model"] if by == "model" else ["group"]
    out = spectra.groupby(keys)["hf"].apply(_interval).unstack().reset_index()
    seed = spectra.groupby(keys)["seed_hf"].mean().rename("seed_mean").reset_index()
    return out.merge(seed, on=keys).astype({"n": int})


def hf_difference(spectra: pd.DataFrame) -> Interval | None:
    """Robust minus natural mean high-frequency share over pictures, with Welch's 95% interval; None without both."""
    groups = dict(tuple(spectra.groupby("group")["hf"]))
    if not {"robust", "natural"} <= set(groups):
        return None
    return difference_interval(groups["robust"], groups["natural"])


def spectrum_caption(spectra: pd.DataFrame) -> str:
    """What the numbers say, computed from them: robust vs natural mean share, the difference with its interval
    (the verdict), and how each compares with the seed photos."""
    groups = spectrum_summary(spectra, by="group").set_index("group")
    seed = float(spectra["seed_hf"].mean())
    parts = [f"{g} models: {r['mean']:.1%} of the energy above half the Nyquist frequency (95% interval "
             f"{r['lo']:.1%}–{r['hi']:.1%} over {int(r['n'])} seed × unit images)" for g, r in groups.iterrows()]
    text = "; ".join(parts) + f"; the seed photos themselves: {seed:.1%}."
    diff = hf_difference(spectra)
    if diff is not None:
        text += " Robust minus natural: " + describe(
            diff, "robust pictures carry MORE fine texture, the opposite of the paper's Fig. 1b",
            "robust pictures carry less fine texture, as the paper's Fig. 1b shows", what="pictures of the "
            "smaller side (Welch)") + "."
    return text
