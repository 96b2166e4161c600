"""Transfer faster? Test accuracy during fine-tuning at one subset size (Fig. 3a) and its delta (Fig. 3b)."""

import streamlit as st

from app import charts, data, ui

st.title("Do robust models transfer faster?")
snap = data.snapshot()
curves = data.curve_summary(snap)
natural = data.natural_source(snap)
ui.stop_if(curves.empty, snap, "learning curves")

targets, sources, blocks, (far,) = ui.run_filters(curves, "faster", (2, 2, 1, 1))
with far:
    sizes = sorted(curves.loc[curves["blocks"] == blocks, "n_train"].unique())
    n_train = ui.pick_one("training images", sizes, (3200, sizes[len(sizes) // 2]), key="faster-size")

cell = (curves["blocks"] == blocks) & (curves["n_train"] == n_train)
rows = curves[cell & curves["target"].isin(targets) & curves["source"].isin(sources)]
if rows.empty:
    st.warning("No learning curves match these filters; widen them.")
    st.stop()
st.subheader(f"Test accuracy during fine-tuning on {n_train} images (Fig. 3a)")
ui.chart(charts.accuracy_vs_epoch, rows)
ui.footer(f"Test accuracy at each evaluated epoch, {blocks} fine-tuned blocks, {n_train} training images; mean and "
          f"95% interval; {ui.backing(rows)}.", rows, "accuracy_vs_epoch")

st.subheader(f"Robust minus natural during fine-tuning (Fig. 3b; natural = {natural or 'none'})")
delta = data.delta_summary(snap, natural, "curve") if natural else curves.iloc[0:0]
if not delta.empty:
    delta = delta[(delta["blocks"] == blocks) & (delta["n_train"] == n_train) & delta["target"].isin(targets)
                  & delta["source"].isin(sources)]
ui.stop_if(delta.empty, snap, "paired robust and natural learning curves for this cell")
ui.chart(charts.delta_vs_epoch, delta)
ui.footer(f"Accuracy minus {natural}'s at the same epoch on the same subset (paired by seed); above zero = learns "
          f"faster. {ui.backing(delta)}.", delta, "delta_vs_epoch")
