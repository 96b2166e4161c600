"""Overview: what the cache holds: source models (Table 5), their robustness (Table 1b), runs, datasets."""

import streamlit as st

from app import charts, data, ui

st.title("What is in the cache?")
snap = data.snapshot()
ui.stop_if(snap.empty, snap, "results")
counts = data.counts(snap).set_index("table")["rows"]
cols = st.columns(4)
for col, (label, table) in zip(cols, [("source models", "source_models"), ("fine-tuned runs", "runs"),
                                      ("influence results", "influence"), ("images stored", "thumbnails")], strict=True):
    col.metric(label, f"{int(counts.get(table, 0)):,}")

sources = data.source_models(snap)
st.subheader("Source models (the paper's Table 5)")
if sources.empty:
    ui.empty_state(snap, "source models")
else:
    shown = sources.assign(model=sources.apply(data.source_label, axis=1))
    if "replicas" not in shown:  # a cache read by an older reader query
        shown = shown.assign(replicas=1)
    st.dataframe(shown[["name", "arch", "constraint_", "attack_steps", "source_dataset", "clean_acc", "replicas",
                        "model"]],
                 hide_index=True, column_config={"clean_acc": st.column_config.NumberColumn("clean acc", format="percent"),
                                                 "constraint_": "constraint", "attack_steps": "PGD(k)",
                                                 "replicas": "trained (seeds)"})
    replicated = shown[shown["replicas"] > 1]
    if not replicated.empty:
        st.caption(f"{len(shown)} sources, {int(shown['replicas'].sum())} source models: "
                   + ", ".join(f"{r.name} trained {int(r.replicas)} times" for r in replicated.itertuples())
                   + " with other source seeds (their fine-tuning seeds start from each in turn, so intervals include "
                   "retraining the source); clean accuracy is the first training's.")

st.subheader("Accuracy under PGD attack (Table 1b analogue)")
robust = data.robustness(snap)
if robust.empty:
    ui.empty_state(snap, "robustness evaluations")
else:
    ui.chart(charts.robustness_bars, robust)
    ui.footer(f"Accuracy of each source on its source test set under PGD attacks; {len(robust)} evaluations "
              f"of {robust['source'].nunique()} sources on {int(robust['n_images'].max())} images each.",
              robust, "robustness")

st.subheader("Fine-tuned runs")
runs = data.run_counts(snap)
if runs.empty:
    ui.empty_state(snap, "fine-tuned runs")
else:
    st.dataframe(runs, hide_index=True)
    ui.footer(f"{int(runs['runs'].sum())} runs over {runs['target'].nunique()} targets and "
              f"{runs['source'].nunique()} sources (failed runs are retried by the next precompute).", runs, "runs")

st.subheader("Datasets")
samples = data.thumbnail_samples(snap)
if samples.empty:
    ui.empty_state(snap, "dataset thumbnails")
for dataset, group in samples.groupby("dataset") if not samples.empty else []:
    st.markdown(f"**{dataset}**: one test image per label")
    st.image([bytes(p) for p in group["png"]], caption=[str(v) for v in group["label"]], width=56)

with st.expander("How to add more"):
    st.markdown(f"""
- The offline demo grid: `{data.FILL_COMMAND}` (resumes: only missing runs are computed).
- More seeds, sizes or targets: `rtx precompute --preset demo --seeds 20000000,20100000 --sizes 20,50,100,200,400,800`.
- The paper's grid on a GPU cluster: `rtx precompute --preset paper --executor ray --address auto`.
- What is there: `rtx status`. This explorer refreshes while those commands write.
""")
