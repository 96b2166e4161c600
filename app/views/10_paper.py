"""Paper vs here: the paper's Table 7 beside this cache's runs for the same cells, with difference and interval."""

import pandas as pd
import streamlit as st

from app import charts, data, paper, ui
from compute.intervals import basis
from compute.settings import BF16_PARTS

st.title("The paper's numbers vs this cache")
snap = data.snapshot()
summary, sources = data.final_summary(snap), data.source_models(snap)
table = paper.paper_table()
st.subheader("Every departure: the paper's text, the authors' code, and here")
departures = paper.departures_table()
st.dataframe(departures, hide_index=True)
st.caption(f"{(departures['paper preset = code'] == 'no').sum()} settings of the `paper` preset depart from the code "
           "behind Table 7 (listed first, with what each changes); in the others it does what that code does, and "
           "'option' names the switch that selects the paper text's or the demo's behaviour instead.")
if summary.empty or sources.empty:
    ui.empty_state(snap, "fine-tuned runs to compare with")
    st.dataframe(table, hide_index=True)
    ui.footer(f"The paper's Table 7 ({ui.CITATION}), accuracy as a fraction.", table, "paper_table7")
    st.stop()

roles = data.source_roles(snap)
blocks = ui.blocks_picker(summary, key="paper-blocks")
compared = paper.comparison(summary, sources, roles, blocks)
mapping = roles.columns
arch = sources.set_index("name")["arch"]
st.info("The paper fine-tuned ImageNet ResNet-50s (3 blocks); this cache's runs come from the sources listed here, "
        "so expect the trend, not the numbers, to agree. Source mapping: "
        + "; ".join(f"`{s}` ({arch.get(s, '?')}) as **{c}**" for s, c in mapping.items()) + ".")

matched = compared.dropna(subset=["here_acc"])
if matched.empty:
    ui.empty_state(snap, f"runs on the paper's targets and subset sizes with {blocks} blocks (targets: "
                   f"{', '.join(sorted(table['target'].unique()))}; `mnist5k` counts as mnist)")
else:  # the paper's whole curve for each matched (target, model), this cache's points on top
    curve = compared.merge(matched[["target", "model"]].drop_duplicates(), on=["target", "model"])
    plot = pd.concat([curve.assign(origin="paper", acc=curve["paper_acc"]),
                      matched.assign(origin="here", acc=matched["here_acc"])])
    ui.chart(charts.paper_vs_here, plot[["target", "n_train", "model", "origin", "acc"]])

pct = ("paper_acc", "here_acc", "lo", "hi", "diff")
compared = compared.sort_values("here_acc", key=lambda s: s.isna(), kind="stable")  # cells with runs first
text = {c: compared[c].map(lambda v: "–" if pd.isna(v) else f"{100 * v:.2f}") for c in pct}
shown = compared.assign(**text, n_seeds=compared["n_seeds"].map(lambda v: "–" if pd.isna(v) else f"{v:.0f}"))
shown = shown.fillna("–")  # st.dataframe would print None; the CSV below keeps the numbers
# No pandas Styler (greyed rows): marshalling one took 0.04 s of server CPU per visit; "–" says "no run" already
st.dataframe(shown, hide_index=True, column_config={
    "paper_acc": "paper %", "here_acc": "here %", "lo": "95% lo", "hi": "95% hi", "diff": "here − paper",
    "n_seeds": "seeds", "here_target": "cache target"})
ui.footer(f"Every Table 7 cell ({ui.CITATION}); {len(matched)} of {len(compared)} have runs here with {blocks} "
          f"blocks (listed first; the others show – here). Accuracy in percent; interval = 95% interval over "
          f"{basis(summary)}.",
          compared, "paper_vs_here")

st.markdown("**Arithmetic.** Runs with `precision='bf16'` (the paper preset's default on a GPU; the paper does not "
            f"state its own, and the authors' code ran fp32): {BF16_PARTS}. The precision is part of every run's key.")
