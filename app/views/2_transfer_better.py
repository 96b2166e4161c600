"""Transfer better? Test accuracy vs number of training images (Fig. 2a) and robust minus natural (Fig. 2b)."""

import streamlit as st

from app import charts, data, ui

st.title("Do robust models transfer better?")
snap = data.snapshot()
summary = data.final_summary(snap)
natural = data.natural_source(snap)
ui.stop_if(summary.empty, snap, "fine-tuned runs")

targets, sources, blocks, _ = ui.run_filters(summary, "better")

rows = summary[summary["target"].isin(targets) & summary["source"].isin(sources) & (summary["blocks"] == blocks)]
if rows.empty:
    st.warning("No runs match these filters; widen them.")
    st.stop()
st.subheader("Test accuracy after fine-tuning (Fig. 2a)")
ui.chart(charts.accuracy_vs_size, rows)
ui.footer(f"Final test accuracy vs training images, {blocks} fine-tuned blocks; line = mean over seeds, band = 95% "
          f"interval; {ui.backing(rows)}.", rows, "accuracy_vs_size")

st.subheader(f"Robust minus natural (Fig. 2b; natural = {natural or 'none'})")
delta = data.delta_summary(snap, natural, "final") if natural else summary.iloc[0:0]
delta = delta[delta["target"].isin(targets) & delta["source"].isin(sources) & (delta["blocks"] == blocks)] \
    if not delta.empty else delta
ui.stop_if(delta.empty, snap,
           "robust and natural runs on the same subsets (same target, size, seed and blocks)")
ui.chart(charts.delta_vs_size, delta)
ui.footer(f"Each source's accuracy minus {natural}'s on the same subset (paired by seed), mean and 95% interval; "
          f"above zero = transfers better. {ui.backing(delta)}.", delta, "delta_vs_size")
