"""The paper's Table 7 (Utrera et al., ICLR 2021) and how this cache's sources and targets map onto it.

Table 7 lists test accuracy (%) after fine-tuning 3 blocks of four ImageNet ResNet-50 sources, for six
targets and ten subset sizes. A cache built here usually holds other sources (e.g. the demo's small
ResNets trained on Fashion-MNIST), so the mapping is by role, not by name: the natural reference ->
`natural`, the L2 PGD(k>1) source -> `l2_eps3`, the smaller / larger Linf PGD(k>1) sources ->
`linf_eps4_255` / `linf_eps8_255` (an exact 4/255 or 8/255 wins). PGD(1) and Gaussian sources have no
Table 7 column. Targets match by name, plus `TARGET_ALIASES`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from compute.departures import DEPARTURES

TABLE7 = Path(__file__).resolve().parents[1] / "assets" / "paper_table7.csv"
PAPER_MODELS = ("natural", "l2_eps3", "linf_eps4_255", "linf_eps8_255")
# mnist5k is 5,000 MNIST digits (400 train / 100 test per class): the same task as the paper's MNIST, with a
# smaller test set, so its cells are comparable up to test-set sampling.
TARGET_ALIASES = {"mnist5k": "mnist"}


def paper_table() -> pd.DataFrame:
    """Table 7 in long form: target, n_train, model, paper_acc (fraction 0..1)."""
    wide = pd.read_csv(TABLE7, comment="#")
    long = wide.melt(id_vars=["target", "n_train"], var_name="model", value_name="paper_pct")
    return long.assign(paper_acc=long["paper_pct"] / 100).drop(columns="paper_pct")


def paper_columns(sources: pd.DataFrame, natural: str | None) -> dict[str, str]:
    """Cache source name -> Table 7 column, for the sources that have a counterpart (see module docstring)."""
    mapping: dict[str, str] = {natural: "natural"} if natural else {}
    pgd = sources[(sources["kind"] == "pgd") & (sources["steps"].fillna(0) > 1)]  # recorded columns, not text
    l2 = pgd[pgd["norm"] == "l2"]
    if not l2.empty:
        best = l2.assign(gap=(l2["eps"] - 3).abs()).sort_values(["gap", "steps"], ascending=[True, False])
        mapping[str(best["name"].iloc[0])] = "l2_eps3"
    linf = pgd[pgd["norm"] == "linf"].sort_values("eps")
    exact = {4 / 255: "linf_eps4_255", 8 / 255: "linf_eps8_255"}
    for _, row in linf.iterrows():
        for eps, column in exact.items():
            if abs(row["eps"] - eps) < 1e-9:
                mapping[row["name"]] = column
    if not any(c.startswith("linf") for c in mapping.values()) and not linf.empty:
        mapping[str(linf["name"].iloc[0])] = "linf_eps4_255"  # the smaller budget plays "small"
        if len(linf) > 1:
            mapping[str(linf["name"].iloc[-1])] = "linf_eps8_255"
    return mapping


def comparison(summary: pd.DataFrame, sources: pd.DataFrame, natural: str | None, blocks: int) -> pd.DataFrame:
    """Every Table 7 cell beside this cache's mean and 95% interval for the same cell (NaN where no run).

    Columns: target, n_train, model, paper_acc, here_target, source, arch, n_seeds, here_acc, lo, hi, diff.
    """
    table = paper_table()
    table = table[table["model"].isin(PAPER_MODELS)]
    columns = paper_columns(sources, natural)
    here = summary[(summary["blocks"] == blocks) & summary["source"].isin(list(columns))].copy()
    here["model"] = here["source"].map(columns)
    here["here_target"] = here["target"]
    here["target"] = here["target"].map(lambda t: TARGET_ALIASES.get(t, t))
    here = here.merge(sources[["name", "arch"]].rename(columns={"name": "source"}), on="source", how="left")
    here = here.rename(columns={"mean": "here_acc"})[
        ["target", "n_train", "model", "here_target", "source", "arch", "n_seeds", "here_acc", "lo", "hi"]]
    merged = table.merge(here, on=["target", "n_train", "model"], how="left")
    return merged.assign(diff=merged["here_acc"] - merged["paper_acc"])


def departures_table() -> pd.DataFrame:
    """compute.departures.DEPARTURES as one row per setting: where the `paper` preset departs from the authors'
    code first, then the settings where it follows the code and only the demo differs."""
    rows = [{"setting": d.setting, "paper (text)": d.paper_text, "authors' code": d.authors_code, "here": d.here,
             "option": d.option or "none (fixed)", "what it changes": d.effect,
             "paper preset = code": "yes" if d.follows_code else "no"} for d in DEPARTURES]
    return pd.DataFrame(rows).sort_values("paper preset = code", kind="stable").reset_index(drop=True)
