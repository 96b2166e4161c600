"""Feature visualization: penultimate-layer activation maximisation from out-of-distribution seeds (Fig. 1b)."""

import streamlit as st

from app import data, ui

st.title("What do the models' features look like?")
st.markdown("Starting from a photo that is in neither dataset (the *seed*), gradient ascent maximises one unit of "
            "the penultimate layer. Robust models tend to paint perceptible strokes and shapes, natural models "
            "high-frequency noise (the paper's Fig. 1b, following Engstrom et al., 2019).")
snap = data.snapshot()
viz = data.featviz(snap)
ui.stop_if(viz.empty, snap, "feature visualizations")

left, right = st.columns(2)
with left:
    models = ui.pick_many("models", sorted(viz["model"].unique()), key="featviz-models")
with right:
    units = ui.pick_many("units (penultimate-layer channels)", sorted(viz["unit"].unique()), key="featviz-units")
rows = viz[viz["model"].isin(models) & viz["unit"].isin(units)]
if rows.empty:
    st.warning("Nothing matches these filters; widen them.")
    st.stop()

for (seed, unit), group in rows.groupby(["seed_image", "unit"], sort=True):
    st.markdown(f"**seed `{seed}`, unit {unit}**")
    cols = st.columns(1 + len(models))
    cols[0].image(bytes(group["seed_png"].iloc[0]), caption="seed", width=160)
    for col, (_, row) in zip(cols[1:], group.sort_values("model").iterrows(), strict=False):
        col.image(bytes(row["png"]), caption=f"{row['model']} ({row['steps']} steps)", width=160)

meta = rows.drop(columns=["png", "seed_png"])
ui.footer(f"{len(rows)} visualizations: {rows['seed_image'].nunique()} seeds x {rows['unit'].nunique()} units x "
          f"{rows['model'].nunique()} models, {int(rows['steps'].max())} steps of size {rows['step_size'].max():g}.",
          meta, "featviz")
