"""Which budget transfers best? Robust minus natural against each source's training budget (Salman et al. 2020's
question on this paper's setting), beside each source's clean and attacked accuracy."""

import streamlit as st

from app import budget, charts, data, ui

st.title("Which budget transfers best?")
st.markdown("Each robust source was trained against one budget ε. Salman et al. (2020) found the transfer benefit "
            "largest at small budgets and gone at large ones; the paper used one budget per norm (L2 ε = 3, L∞ 4/255 "
            "and 8/255 on ImageNet; L2 3 is about L2 0.22 on 28×28 grey images at the same change per pixel). "
            "Top: accuracy after fine-tuning minus the natural source's on the same subsets; bottom: the sources' "
            "own clean and attacked accuracy on the same ε axis, the price paid for the budget.")
snap = data.snapshot()
summary, sources = data.final_summary(snap), data.source_models(snap)
natural = data.natural_source(snap)
ui.stop_if(summary.empty or sources.empty or natural is None, snap, "fine-tuned runs of natural and robust sources")
ui.stop_if(not budget.has_budgets(sources), snap,
           "source budgets (the `kind`, `norm`, `eps` columns of cache schema v2; any `rtx precompute` upgrades)")
deltas = budget.budget_deltas(data.delta_summary(snap, natural, "final"), sources)
ui.stop_if(deltas.empty, snap, "robust and natural runs on the same subsets")

cols = st.columns(4)
with cols[0]:
    targets = sorted(deltas["target"].unique())
    target = ui.pick_one("target", targets, [t for t in targets if deltas[deltas["target"] == t]["source"].nunique()
                                             == deltas["source"].nunique()], key="budget-target")
cell = deltas[deltas["target"] == target]
with cols[1]:
    blocks = ui.blocks_picker(cell, key="budget-blocks")
with cols[2]:
    sizes = sorted(cell.loc[cell["blocks"] == blocks, "n_train"].unique())
    n_train = ui.pick_one("training images", sizes, sizes[:1], key="budget-size")
robust = data.robustness(snap)
attacks = sorted({budget.attack_label(n, e, k) for n, e, k in zip(robust.get("norm", []), robust.get("eps", []),
                                                                   robust.get("steps", []), strict=True)} - {"clean"})
with cols[3]:
    attack = ui.pick_one("attack for the sources' robust accuracy", attacks or ["clean"], key="budget-attack")

rows = cell[(cell["blocks"] == blocks) & (cell["n_train"] == n_train)]
ui.stop_if(rows.empty, snap, f"paired runs on {target} with {n_train} images and {blocks} blocks")
accuracy = budget.budget_accuracy(sources, robust, attack, natural)
ui.chart(charts.budget_chart, rows, accuracy)
# Each comparison the sentence makes is paired by seed: every source minus the best one and minus each family's
# largest budget (delta_summary against that source, read once per snapshot).
references = {rows.loc[rows["mean"].idxmax(), "source"],
              *(g.loc[g["eps"].idxmax(), "source"] for _, g in rows.groupby("family") if len(g) > 1)}
versus = {src: data.delta_summary(snap, src, "final") for src in references}
st.markdown(f"**What this cell says** ({target}, {n_train} training images, {blocks} fine-tuned blocks): "
            + budget.budget_summary(rows, versus))
ui.footer(f"Top: each robust source's final test accuracy minus {natural}'s on the same {target} subsets (paired by "
          f"seed), mean and 95% interval; x = the budget it was trained with (Gaussian: noise σ per pixel). "
          f"{ui.backing(rows)}.", rows, "budget_deltas")
ui.footer(f"Bottom: each source's accuracy on the first {int(accuracy['n_images'].max()) if not accuracy.empty else 0} "
          f"test images of its own training set, clean and under {attack}; grey rules = {natural}.", accuracy,
          "budget_source_accuracy")
