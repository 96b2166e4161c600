"""How many blocks? Accuracy per number of fine-tuned blocks (Fig. 4a, 11a) and 3 minus 1 blocks (Fig. 4b, 11b)."""

import streamlit as st

from app import charts, data, ui

st.title("How many blocks should be fine-tuned?")
snap = data.snapshot()
summary = data.final_summary(snap)
ui.stop_if(summary.empty, snap, "fine-tuned runs")
ui.stop_if(summary["blocks"].nunique() < 2, snap, "runs with two or more numbers of fine-tuned blocks",
           f"{data.FILL_COMMAND} --blocks 0,1,3")

left, right = st.columns([1, 3])
with left:
    source = ui.pick_one("source model", sorted(summary["source"].unique()), [data.headline_robust(snap)],
                         key="blocks-source")
with right:
    targets = ui.pick_many("targets", sorted(summary["target"].unique()), key="blocks-targets")

rows = summary[(summary["source"] == source) & summary["target"].isin(targets)]
st.subheader(f"Test accuracy of {source} per number of fine-tuned blocks (Fig. 4a)")
ui.chart(charts.accuracy_by_blocks, rows)
ui.footer(f"Final test accuracy vs training images for each number of fine-tuned blocks (0 = FC layer only); mean "
          f"and 95% interval; {ui.backing(rows)}.", rows, "accuracy_by_blocks")

options = sorted(summary["blocks"].unique())
a, b = st.columns(2)
high = a.selectbox("more blocks", options, index=options.index(3) if 3 in options else len(options) - 1, key="blocks-high")
low = b.selectbox("fewer blocks", options, index=options.index(1) if 1 in options else 0, key="blocks-low")
st.subheader(f"{high} blocks minus {low} (Fig. 4b)")
delta = data.blocks_delta(snap, int(high), int(low))
delta = delta[(delta["source"] == source) & delta["target"].isin(targets)] if not delta.empty else delta
ui.stop_if(high == low or delta.empty, snap, f"runs of {source} with both {high} and {low} blocks on the same subsets")
ui.chart(charts.delta_vs_size, delta, f"{high} minus {low} blocks")
ui.footer(f"Accuracy with {high} fine-tuned blocks minus with {low} on the same subset (paired by seed); above zero = "
          f"more blocks help. {ui.backing(delta)}.", delta, "blocks_delta")
