"""Feature visualization: penultimate-layer activation maximisation from out-of-distribution seeds (Fig. 1b), with
a number beside the pictures: the share of each picture's spectral energy above half the Nyquist frequency."""

import streamlit as st

from app import charts, data, spectra, ui

PER_ROW = 9  # pictures per row: the seed and eight units, 128 px each, fit the page width

st.title("What do the models' features look like?")
st.markdown("Starting from a photo that is in neither dataset (the *seed*, in the model's own input space: grey for "
            "models trained on grey images), projected gradient ascent inside an L2 ball around the seed maximises "
            "one of the penultimate units the seed activates most. Robust models tend to paint perceptible strokes "
            "and shapes, natural models high-frequency noise (the paper's Fig. 1b, following Engstrom et al., 2019). "
            "The number under each picture is the share of its spectral energy above half the Nyquist frequency: "
            "fine texture scores high, smooth shapes low.")
snap = data.snapshot()
viz = data.featviz(snap)
ui.stop_if(viz.empty, snap, "feature visualizations")

left, right = st.columns(2)
with left:
    models = ui.pick_many("models", sorted(viz["model"].unique()), key="featviz-models")
with right:
    seeds = ui.pick_many("seed photos", sorted(viz["seed_image"].unique()), key="featviz-seeds")
rows = viz[viz["model"].isin(models) & viz["seed_image"].isin(seeds)]
if rows.empty:
    st.warning("Nothing matches these filters; widen them.")
    st.stop()

spec = data.featviz_spectra(snap)
spec = spec[spec["model"].isin(models) & spec["seed_image"].isin(seeds)]
summary = spectra.spectrum_summary(spec)
st.subheader("How much fine texture? Robust vs natural")
ui.chart(charts.featviz_spectrum_chart, spec, summary)
diff = spectra.hf_difference(spec)
if diff is not None:
    st.metric("robust minus natural high-frequency share (95% Welch interval over pictures)",
              f"{diff.mean * 100:+.1f} points",
              help=f"[{diff.lo * 100:+.1f}, {diff.hi * 100:+.1f}] points; below zero = robust pictures carry less fine "
                   "texture (the paper's Fig. 1b); an interval covering zero decides nothing")
st.markdown("**What the numbers say:** " + spectra.spectrum_caption(spec))
ui.footer(f"Share of each optimised image's spectral energy (2-D DCT, constant term left out) above half the Nyquist "
          f"frequency, measured at the resolution it was optimised at; dots = one seed photo × unit each, diamond and "
          f"bar = mean and 95% t-interval per model, dashed rule = the seed photos. {len(spec)} images.", summary,
          "featviz_spectrum")

hf = spec.set_index(["model", "seed_image", "unit"])["hf"].to_dict()
for seed, group in rows.groupby("seed_image", sort=True):
    seed_hf = float(spec.loc[spec["seed_image"] == seed, "seed_hf"].iloc[0])
    st.markdown(f"**seed `{seed}`** (high-frequency share {seed_hf:.1%})")
    for model, per_model in group.sort_values(["model", "unit"]).groupby("model", sort=True):
        pictures = [(bytes(per_model["seed_png"].iloc[0]), f"{model}: seed")] + [
            (bytes(row["png"]), f"unit {row['unit']}: {hf[(model, seed, row['unit'])]:.1%}")
            for _, row in per_model.iterrows()]
        for start in range(0, len(pictures), PER_ROW):  # 16 units per seed: wrap, or captions overlap
            for col, (png, caption) in zip(st.columns(PER_ROW), pictures[start:start + PER_ROW], strict=False):
                col.image(png, caption=caption, width=128)

meta = rows.drop(columns=["png", "seed_png"]).merge(spec, on=["model", "seed_image", "unit"])
ui.footer(f"{len(rows)} visualizations: {rows['seed_image'].nunique()} seeds x {rows['model'].nunique()} models, "
          f"{rows.groupby(['model', 'seed_image'])['unit'].nunique().max()} units each (the ones the seed activates most), "
          f"{int(rows['steps'].max())} steps of L2 length {rows['step_size'].max():.3g}.", meta, "featviz")
