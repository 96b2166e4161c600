"""Influence: which training images drive each prediction, robust vs natural (Section 6: Fig. 7a, 7b and Fig. 6)."""

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, data, ui

PER_PAGE = 6  # test images per grid page
st.title("Which training images influence a prediction?")
snap = data.snapshot()
results = data.influence_results(snap)
ui.stop_if(results.empty, snap, "influence results")

pair = st.selectbox("fine-tuned pair (same target, subset, seed and blocks)", sorted(results["pair"].unique()),
                    key="influence-pair")
natural = data.natural_source(snap)
models = results[results["pair"] == pair].sort_values("source", key=lambda s: s == natural)  # robust first
keys = dict(zip(models["source"], models["key"], strict=True))
target = str(models["target"].iloc[0])

st.subheader("Influence of each training image on each test image (Fig. 7a)")
with st.spinner("Sorting and pooling the influence matrices (once per snapshot)..."):
    cells = pd.concat([data.influence_heatmap(snap, key).assign(model=src) for src, key in keys.items()])
if cells.empty:
    ui.empty_state(snap, "influence matrices (the NPY files beside the database)")
else:
    st.altair_chart(charts.influence_heatmap(cells))
    ui.footer(f"Test x training influence (rows and columns sorted by label, standardized by the matrix norm, "
              f"mean-pooled to {cells['row_bin'].max() + 1} x {cells['col_bin'].max() + 1} cells) of "
              f"{', '.join(keys)} fine-tuned on the same {int(models['subset_size'].iloc[0])} {target} images.",
              cells, "influence_heatmap")

st.subheader("How often do the top-k influential images share the test label? (Fig. 7b)")
match = pd.DataFrame([{"model": src, "k": k + 1, "match": float(v)} for src, lm in
                      zip(models["source"], models["label_match"], strict=True) for k, v in enumerate(lm if lm is not None else [])])
st.altair_chart(charts.label_match_chart(match))
ui.footer(f"For k = 1..{len(match) // max(1, len(keys))}: the share of each test image's k most influential training "
          f"images that carry its label, averaged over {int(models['n_test'].iloc[0])} test images, per model.",
          match, "label_match")

st.subheader("Most influential training images (Fig. 6)")
rows = {src: data.influence_row(snap, key) for src, key in keys.items()}
first = next(iter(rows.values()))
test_labels, test_idx = np.asarray(first["test_labels"]), np.asarray(first["test_indices"])
per_class = st.toggle("one test image per class", value=True, key="influence-per-class")
positions = (np.unique(test_labels, return_index=True)[1] if per_class else np.arange(len(test_labels))).tolist()
pages = max(1, -(-len(positions) // PER_PAGE))
page = st.pagination(pages, key="influence-page") if pages > 1 else 1
shown = positions[(page - 1) * PER_PAGE: page * PER_PAGE]
topk = {src: data.influence_topk(snap, key, 5) for src, key in keys.items()}
train_of = {src: np.asarray(r["train_indices"]) for src, r in rows.items()}
wanted = {int(train_of[s][p]) for s, t in topk.items() for p in t[t["test_pos"].isin(shown)]["train_pos"]}
train_png = data.thumbnails(snap, target, "train", tuple(sorted(wanted)))
test_png = data.thumbnails(snap, target, "test", tuple(int(test_idx[p]) for p in shown))


def _influential(src: str, pos: int, k: int) -> list[tuple[bytes, str]]:
    """(png, caption) of the k most influential training images of test position `pos` under model `src`."""
    top = topk[src][topk[src]["test_pos"] == pos].head(k)
    labels = np.asarray(rows[src]["train_labels"])
    out = []
    for p, score in zip(top["train_pos"], top["score"], strict=True):
        if int(train_of[src][p]) in train_png:
            same = " ✓" if labels[p] == test_labels[pos] else ""  # shares the test image's label
            out.append((train_png[int(train_of[src][p])], f"label {labels[p]}{same}, {score:.2g}"))
    return out


for col, pos in zip(st.columns(PER_PAGE), shown, strict=False):
    with col:
        if int(test_idx[pos]) in test_png:
            st.image(test_png[int(test_idx[pos])], caption=f"test: label {test_labels[pos]}", width=96)
        for src in keys:
            pred = np.asarray(rows[src]["test_pred"])[pos]
            for png, caption in _influential(src, pos, 1):
                st.image(png, caption=f"{src} (pred {pred}): {caption}", width=96)
        with st.popover("enlarge", key=f"influence-zoom-{pos}"):
            if int(test_idx[pos]) in test_png:
                st.image(test_png[int(test_idx[pos])], caption=f"test image, label {test_labels[pos]}", width=224)
            for src in keys:
                st.markdown(f"**{src}**: top-5 influential training images (label, ✓ = test label, score)")
                if images := _influential(src, pos, 5):
                    st.image([p for p, _ in images], caption=[c for _, c in images], width=112)
grid = pd.concat([t[t["test_pos"].isin(shown)].assign(model=src) for src, t in topk.items()])
ui.footer("Top row: test images; below: each model's most influential training image (label, ✓ when it is the test "
          "label, and its influence score). Open *enlarge* for bigger images and the top five.", grid, "influence_topk")
