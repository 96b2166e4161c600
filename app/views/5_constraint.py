"""Which constraint? L2 vs Linf and small vs large eps (Fig. 5); PGD(k), PGD(1), Gaussian vs natural (Fig. 8)."""

import pandas as pd
import streamlit as st

from app import charts, data, ui

st.title("Which constraint transfers best?")
snap = data.snapshot()
summary, sources = data.final_summary(snap), data.source_models(snap)
natural = data.natural_source(snap)
ui.stop_if(summary.empty or sources.empty, snap, "fine-tuned runs of several source models")

labels = {row["name"]: data.source_label(row) for _, row in sources.iterrows()}
pgd = sources[sources["name"].isin(summary["source"].unique()) & (sources["kind"] == "pgd")
              & (sources["steps"].fillna(0) > 1)].sort_values("eps")
l2 = pgd.loc[pgd["norm"] == "l2", "name"].tolist()
linf = pgd.loc[pgd["norm"] == "linf", "name"].tolist()  # small eps first
pairs = [(a, b) for a in l2 for b in linf] + [(linf[i], linf[j]) for i in range(len(linf)) for j in range(i + 1, len(linf))]

left, right = st.columns([3, 1])
with left:
    targets = ui.pick_many("targets", sorted(summary["target"].unique()), key="constraint-targets")
with right:
    blocks = ui.blocks_picker(summary, key="constraint-blocks")

st.subheader("L2 vs L∞, small vs large ε (Fig. 5)")
chosen = ui.pick_many("differences (first minus second)", [f"{a} − {b}" for a, b in pairs], key="constraint-pairs")
frames = []
for a, b in pairs:
    if f"{a} − {b}" in chosen:
        d = data.delta_summary(snap, b, "final")
        frames.append(d[d["source"] == a].assign(source=f"{labels[a]}  −  {labels[b]}"))
fig5 = pd.concat(frames) if frames else pd.DataFrame()
fig5 = fig5[fig5["target"].isin(targets) & (fig5["blocks"] == blocks)] if not fig5.empty else fig5
if fig5.empty:
    ui.empty_state(snap, "runs of an L2 and an L∞ source (or two L∞ budgets) on the same subsets")
else:
    ui.chart(charts.delta_vs_size, fig5, "accuracy difference")
    ui.footer(f"First source's accuracy minus the second's on the same subsets (paired by seed), {blocks} blocks; "
              f"mean and 95% interval; {ui.backing(fig5)}.", fig5, "constraint_deltas")

st.subheader(f"PGD(k), PGD(1) and Gaussian noise vs natural (Fig. 8; natural = {natural or 'none'})")
fig8 = data.delta_summary(snap, natural, "final") if natural else pd.DataFrame()
if not fig8.empty:
    fig8 = fig8[fig8["target"].isin(targets) & (fig8["blocks"] == blocks)]
    fig8 = fig8.assign(source=fig8["source"].map(lambda s: labels.get(s, s)))
ui.stop_if(fig8.empty, snap, "robust and natural runs on the same subsets")
ui.chart(charts.delta_vs_size, fig8, "minus natural")
ui.footer(f"Each source's accuracy minus {natural}'s on the same subsets, {blocks} blocks; PGD(k) = k attack steps "
          f"during source training, Gaussian = random noise of the same budget. {ui.backing(fig8)}.", fig8, "vs_natural")
