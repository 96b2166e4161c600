"""Shape vs texture: robust vs natural on low-resolution / low-pass variants of a target (the paper's Table 2)."""

import streamlit as st

from app import charts, data, ui

st.title("Does the robust advantage survive losing texture?")
st.markdown("Low resolution and low-pass filtering remove fine texture but keep shape. If robust models rely more "
            "on shape (Section 5), their advantage over natural models should hold or grow on these variants.")
snap = data.snapshot()
summary = data.final_summary(snap)
natural = data.natural_source(snap)
variants = data.variant_targets(snap)  # base dataset -> its variant targets (recorded columns)
ui.stop_if(not variants or natural is None, snap,
           "runs on low-res / low-pass target variants (targets like `mnist5k+lowpass(400)`)")

cols = st.columns(4)
base = cols[0].selectbox("target", sorted(variants), key="shape-base")
targets = [base, *variants[base]]
cell = summary[summary["target"].isin(targets)]
robust_options = sorted(s for s in cell["source"].unique() if s != natural)
with cols[1]:
    robust = ui.pick_one("robust model", robust_options, [data.headline_robust(snap)], key="shape-robust")
with cols[2]:
    blocks = ui.blocks_picker(cell, key="shape-blocks")
with cols[3]:
    sizes = sorted(cell.loc[cell["blocks"] == blocks, "n_train"].unique())
    n_train = ui.pick_one("training images", sizes, sizes[-1:], key="shape-size")

rows = cell[cell["source"].isin([robust, natural]) & (cell["blocks"] == blocks) & (cell["n_train"] == n_train)]
ui.stop_if(rows.empty, snap, f"runs of {robust} and {natural} on {base} and its variants with these settings")
st.subheader(f"Accuracy on {base} and its variants, {n_train} training images (Table 2 analogue)")
ui.chart(charts.variant_bars, rows)
ui.footer(f"Final test accuracy of {robust} and {natural}, {blocks} blocks; bar = mean over seeds, whisker = 95% "
          f"interval; {ui.backing(rows)}.", rows, "shape_texture")

delta = data.delta_summary(snap, natural, "final")
delta = delta[(delta["source"] == robust) & delta["target"].isin(targets) & (delta["blocks"] == blocks)]
ui.stop_if(delta.empty, snap, f"paired runs of {robust} and {natural} on the variants")
st.subheader(f"{robust} minus {natural} on each variant, by training images")
ui.chart(charts.delta_vs_size, delta)
ui.footer(f"Robust minus natural accuracy on the same subsets (paired by seed); a line above the base target's means "
          f"the robust advantage grows when texture is removed. {ui.backing(delta)}.", delta, "shape_texture_delta")
