"""Influence: which training images drive each prediction, natural vs the paper analogue and the best budget
(Section 6: Fig. 7a, 7b and Fig. 6)."""

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, data, influence_charts, influence_seeds, ui
from app.influence_compare import compare_methods, exact_method, overlap_long

PER_PAGE = 6  # test images per grid page
st.title("Which training images influence a prediction?")
snap = data.snapshot()
cells = data.influence_cells(snap)
ui.stop_if(not cells, snap, "influence results")

groups = influence_seeds.seed_groups(cells)  # cells that differ only in the seed
subsets = list(dict.fromkeys(g.subset_label for g in groups))
subset = st.selectbox("fine-tuned subsets (same target, size and blocks; one subset and fine-tune per seed)", subsets,
                      key="influence-pair")
by_method = {g.first.method_label: g for g in groups if g.subset_label == subset}
group = by_method[st.selectbox("influence method", list(by_method), key="influence-method")]
seed = st.selectbox("fine-tuning seed shown in the heatmap and the images", group.seeds, key="influence-seed")
cell = next(c for c in group.cells if c.seed == seed)
methods = {c.method_label: c for c in cells if c.subset == cell.subset}  # this subset's cells, one per method
results = data.influence_results(snap).set_index("key")
names = {src: cell.name(src) for src in cell.compared}  # source -> 'linf_4 · best budget'
keys = {names[src]: key for src, key in cell.compared.items()}  # shown name -> influence key, natural last
target = cell.target
if cell.roles:
    st.caption("Compared: " + "; ".join(f"**{name}**" for name in keys) + ". "
               + (f"The best budget has {cell.best_note}, among this cache's fine-tunes (the \"Which budget "
                  "transfers best?\" page)." if cell.best_note else "No best budget recorded for this subset."))

st.subheader("How often do the top-k influential images share the test label? (Fig. 7b, over seeds)")
curves = group.curves()
match = influence_seeds.label_match_over_seeds(group, curves)
ui.chart(influence_charts.label_match_over_seeds, match)
verdicts = pd.concat([influence_seeds.match_difference(group, curves, k) for k in influence_seeds.SWEEP_KS])
if not verdicts.empty:
    st.markdown("**Robust minus natural, paired by seed** (the paper: 77.3% vs 53.8% at top-5): " + "; ".join(
        f"{m}, top-{k}: {v}" for m, k, v in zip(verdicts["model"], verdicts["k"], verdicts["verdict"], strict=True)))
ui.footer(f"For k = 1..{int(match['k'].max()) if not match.empty else 0}: the share of each test image's k most "
          f"influential training images that carry its label, averaged over {int(results.at[cell.members[0][1], 'n_test'])} "
          f"test images; mean and 95% t-interval over {len(group.seeds)} fine-tuning seeds ({group.first.method_label}; "
          f"each seed is its own training subset and fine-tune{group.retraining()}).", match, "label_match")

st.subheader("Does the answer depend on the cut-off?")
metas = {key: row.meta for src in group.sources() for key in group.keys(src)
         if (row := data.influence_row(snap, key)) is not None}
sweep = influence_seeds.sweep_rows(group, metas)
if sweep.empty:
    ui.empty_state(snap, "label match at each cut-off (results of `rtx influence` from code version influence-2 on)",
                   "rtx influence --preset demo")
else:
    summary = influence_seeds.sweep_summary(sweep)
    diff = influence_seeds.sweep_difference(group, sweep)
    ui.chart(influence_charts.label_match_vs_cutoff, summary)
    ui.chart(influence_charts.cutoff_difference, diff)
    st.markdown("**Where the paper's direction (robust models' influential images share the test label more "
                "often) holds:** " + influence_seeds.direction_sentence(diff))
    ui.footer("Label match of the exact route (`fast`) recomputed at each relative cut-off (Hessian eigenvalues below "
              "cut-off x the largest dropped; 0 = the exact pseudo-inverse, the authors' code used 5e-2) by the "
              "influence stage; top: mean and 95% t-interval over seeds per model, bottom: robust minus natural, "
              "paired by seed. Hover for how many Hessian directions each cut-off keeps.", sweep, "label_match_cutoff")

st.subheader(f"Influence of each training image on each test image (Fig. 7a), seed {seed}")
with st.spinner("Sorting and pooling the influence matrices (once per snapshot)..."):
    heat = pd.concat([data.influence_heatmap(snap, key).assign(model=src) for src, key in keys.items()])
if heat.empty:
    ui.empty_state(snap, "influence matrices (the NPY files beside the database)")
else:
    ui.chart(charts.influence_heatmap, heat)
    ui.footer(f"Test x training influence (rows and columns sorted by label, standardized by the matrix norm, "
              f"mean-pooled to {heat['row_bin'].max() + 1} x {heat['col_bin'].max() + 1} heat) of "
              f"{', '.join(keys)} fine-tuned on the same {cell.subset_size} {target} images (seed {seed}), scored by "
              f"{cell.method_label}.",
              heat, "influence_heatmap")

st.subheader("Most influential training images (Fig. 6)")
rows = {src: data.influence_row(snap, key) for src, key in keys.items()}
first = next(iter(rows.values()))
test_labels, test_idx = np.asarray(first.test_labels), np.asarray(first.test_indices)
per_class = st.toggle("one test image per class", value=True, key="influence-per-class")
positions = (np.unique(test_labels, return_index=True)[1] if per_class else np.arange(len(test_labels))).tolist()
pages = max(1, -(-len(positions) // PER_PAGE))
page = st.pagination(pages, key="influence-page") if pages > 1 else 1
shown = positions[(page - 1) * PER_PAGE: page * PER_PAGE]
topk = {src: data.influence_topk(snap, key, 5) for src, key in keys.items()}
train_of = {src: np.asarray(r.train_indices) for src, r in rows.items()}
wanted = {int(train_of[s][p]) for s, t in topk.items() for p in t[t["test_pos"].isin(shown)]["train_pos"]}
train_png = data.thumbnails(snap, target, "train", tuple(sorted(wanted)))
test_png = data.thumbnails(snap, target, "test", tuple(int(test_idx[p]) for p in shown))


def _influential(src: str, pos: int, k: int) -> list[tuple[bytes, str]]:
    """(png, caption) of the k most influential training images of test position `pos` under model `src`."""
    top = topk[src][topk[src]["test_pos"] == pos].head(k)
    labels = np.asarray(rows[src].train_labels)
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
            pred = np.asarray(rows[src].test_pred)[pos]
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


st.subheader("Methods compared on this subset")
if len(methods) < 2:
    st.caption(f"Only {cell.method_label} scored this subset; `rtx influence --method tracincp` (or another "
               "method) adds one to compare with.")
else:
    curves = pd.DataFrame([{"model": names.get(src, src), "method": label, "k": k + 1, "match": float(v)}
                           for label, c in methods.items() for src, key in c.compared.items()
                           for k, v in enumerate(results.at[key, "label_match"] if results.at[key, "label_match"]
                                                 is not None else [])])
    ui.chart(influence_charts.methods_label_match, curves)
    ui.footer("Label match (Fig. 7b) of each method, per model: the same fine-tunes, scored by each method.",
              curves, "label_match_by_method")
    exact = {label: data.influence_exact(snap, c.members[0][1]) for label, c in methods.items()}
    baseline = exact_method(exact)
    tables = []
    for src, name in names.items():
        matrices = {label: data.influence_matrix(snap, c.keys[src]) for label, c in methods.items() if src in c.keys}
        matrices = {label: m for label, m in matrices.items() if m is not None}
        if baseline in matrices and len(matrices) > 1:
            tables.append(compare_methods(matrices, baseline).assign(model=name))
    if not tables:
        ui.empty_state(snap, "influence matrices of two methods on the same fine-tunes")
    else:
        table = pd.concat(tables, ignore_index=True)
        st.dataframe(table[["model", "method", "spearman", "spearman_sd", "n_test",
                            *[c for c in table.columns if c.startswith("overlap@")]]], hide_index=True)
        ui.chart(influence_charts.methods_overlap, overlap_long(table))
        said = " (exact)" if exact[baseline] else " (the stored result does not say whether it is exact)"
        ui.footer(f"Agreement with {baseline}{said}: Spearman rank correlation of each method's scores over the "
                  "training images, per test image (mean and standard deviation over test images), and the share "
                  f"of {baseline}'s top-k training images that the method also ranks in its top k.", table,
                  "methods_agreement")
