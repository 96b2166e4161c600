"""The paper's Table 7 (Utrera et al., ICLR 2021) and how this cache's sources and targets map onto it.

Table 7 lists test accuracy (%) after fine-tuning 3 blocks of four ImageNet ResNet-50 sources, for six
targets and ten subset sizes. A cache built here usually holds other sources (e.g. the demo's small
ResNets trained on Fashion-MNIST), so the mapping is by role, not by name: which source plays each Table 7
column is decided once, by the preset, and recorded by the sources stage (compute.roles: natural plays
`natural`, the paper analogue `l2_eps3`, the sources the preset names the Linf columns). Targets match by
name, plus `TARGET_ALIASES`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from compute.departures import DEPARTURES
from compute.roles import TABLE7_COLUMNS, SourceRoles

TABLE7 = Path(__file__).resolve().parents[1] / "assets" / "paper_table7.csv"
PAPER_MODELS = TABLE7_COLUMNS
# mnist5k is 5,000 MNIST digits (400 train / 100 test per class): the same task as the paper's MNIST, with a
# smaller test set, so its cells are comparable up to test-set sampling.
TARGET_ALIASES = {"mnist5k": "mnist"}


def paper_table() -> pd.DataFrame:
    """Table 7 in long form: target, n_train, model, paper_acc (fraction 0..1)."""
    wide = pd.read_csv(TABLE7, comment="#")
    long = wide.melt(id_vars=["target", "n_train"], var_name="model", value_name="paper_pct")
    return long.assign(paper_acc=long["paper_pct"] / 100).drop(columns="paper_pct")


def comparison(summary: pd.DataFrame, sources: pd.DataFrame, roles: SourceRoles, blocks: int) -> pd.DataFrame:
    """Every Table 7 cell beside this cache's mean and 95% interval for the same cell (NaN where no run); the
    source of each column is the one `roles` says plays it.

    Columns: target, n_train, model, paper_acc, here_target, source, arch, n_seeds, here_acc, lo, hi, diff.
    """
    table = paper_table()
    table = table[table["model"].isin(PAPER_MODELS)]
    columns = roles.columns
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
