"""Label match over fine-tuning seeds and against the cut-off: the Influence page's numbers, as pure DataFrame functions.

Why: one fine-tune's label match is one draw. Two machines' single demo runs ordered the models differently
(issue 24: natural 0.814 vs 0.936 at top-1), so the page shows the mean and 95% interval over the seeds the
influence stage scored (`InfluenceSpec.all_seeds`), and robust minus natural *paired by seed* (the same seed is the
same training subset). The cut-off view reads the stage's `cutoff_sweep` (label match of the exact route at each
relative cut-off, stored in each result's meta) and says at which cut-offs the paper's direction holds. Intervals
come from `compute.intervals` (Student t over seeds), as every other computed sentence of the app.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from app.pairing import InfluenceCell, but_seed
from compute.intervals import NOT_DISTINGUISHABLE, Interval, describe, mean_interval, paired_interval
from compute.roles import NATURAL_ROLE

SWEEP_KS = (1, 5)  # the paper's two figures: top-1 (78.6% robust) and top-5 (77.3% vs 53.8%)


@dataclass(frozen=True)
class SeedGroup:
    """Influence cells that differ only in the fine-tuning seed: one subset size, method and cut-off."""

    cells: tuple[InfluenceCell, ...]  # one per seed, sorted by seed

    @property
    def first(self) -> InfluenceCell:
        return self.cells[0]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(c.seed for c in self.cells)

    @property
    def subset_label(self) -> str:
        """'mnist5k · 400 images · 3 blocks · 5 seeds': the subsets, whatever the method."""
        c = self.first
        return (f"{c.target} · {c.subset_size} images · {c.blocks} blocks · "
                f"{len(self.cells)} seed{'s' if len(self.cells) != 1 else ''}")

    def sources(self) -> list[str]:
        """Sources compared on every seed, robust first and natural last (the first cell's order)."""
        common = set.intersection(*(set(c.compared) for c in self.cells))
        return [s for s in self.first.compared if s in common]

    def name(self, source: str) -> str:
        return self.first.name(source)

    def replicas(self, source: str) -> int:
        """How many source models (compute.replicas) the source's runs over these seeds started from."""
        return len({model for c in self.cells for s, model in c.models if s == source}) or 1

    def retraining(self) -> str:
        """What the seeds' interval covers besides fine-tuning, per model: '; natural, l2_0.22: seeds from 3 source
        replicas each (retraining the source is inside the interval); l2_0.5: one source model (retraining it is
        not covered)'."""
        by_count: dict[int, list[str]] = {}
        for source in self.sources():
            by_count.setdefault(self.replicas(source), []).append(source)
        parts = [f"{', '.join(names)}: seeds from {count} source replicas each (retraining the source is inside "
                 "the interval)" if count > 1 else f"{', '.join(names)}: one source model (retraining it is not "
                 "covered)" for count, names in sorted(by_count.items(), reverse=True)]
        return "; " + "; ".join(parts)

    def keys(self, source: str) -> list[str]:
        """The source's influence key on each seed, in seed order."""
        return [c.compared[source] for c in self.cells]

    def curves(self) -> dict[str, tuple[float, ...]]:
        """Influence key -> stored label-match curve, over every seed."""
        return {key: curve for c in self.cells for key, curve in c.curves}


def seed_groups(cells: Sequence[InfluenceCell]) -> list[SeedGroup]:
    """Group cells by `pairing.but_seed` (target, subset size, blocks, method, cut-off), each sorted by seed."""
    groups: dict[tuple, list[InfluenceCell]] = {}
    for cell in cells:
        groups.setdefault(but_seed(cell), []).append(cell)
    return [SeedGroup(tuple(sorted(g, key=lambda c: c.seed))) for g in groups.values()]


def _role(group: SeedGroup, source: str) -> str | None:
    """The recorded role that draws a model in the natural grey (`app.charts.natural_values`), else None."""
    return NATURAL_ROLE if source == group.first.natural else None


def _row(mean_of: str, iv: Interval, **labels: object) -> dict[str, object]:
    return {**labels, mean_of: iv.mean, "lo": iv.lo, "hi": iv.hi, "n_seeds": iv.n}


def label_match_over_seeds(group: SeedGroup, curves: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Per model and k: mean label match over seeds with its 95% t-interval (`curves`: influence key -> stored
    label-match curve). Columns model, source, k, match, lo, hi, n_seeds."""
    rows = []
    for source in group.sources():
        per_seed = [list(curves[key]) for key in group.keys(source) if curves.get(key) is not None]
        if not per_seed:
            continue
        for k in range(min(len(c) for c in per_seed)):
            iv = mean_interval([c[k] for c in per_seed])
            rows.append(_row("match", iv, model=group.name(source), source=source, role=_role(group, source),
                             k=k + 1))
    return pd.DataFrame(rows, columns=["model", "source", "role", "k", "match", "lo", "hi", "n_seeds"])


def _paired(group: SeedGroup, values: Mapping[str, float], source: str, natural: str) -> Interval:
    """Interval of source minus natural over the seeds where both have a value."""
    pairs = [(values[a], values[b]) for a, b in zip(group.keys(source), group.keys(natural), strict=True)
             if a in values and b in values]
    return paired_interval([a for a, _ in pairs], [b for _, b in pairs])


def match_difference(group: SeedGroup, curves: Mapping[str, Sequence[float]], k: int) -> pd.DataFrame:
    """Robust minus natural label match @k, paired by seed, per robust model: columns model, source, k, diff, lo,
    hi, n_seeds, verdict (the sentence `compute.intervals.describe` writes)."""
    natural = group.first.natural
    rows = []
    if natural is None:
        return pd.DataFrame(columns=["model", "source", "k", "diff", "lo", "hi", "n_seeds", "verdict"])
    at_k = {key: float(c[k - 1]) for key, c in curves.items() if c is not None and len(c) >= k}
    for source in group.sources():
        if source == natural:
            continue
        iv = _paired(group, at_k, source, natural)
        rows.append({**_row("diff", iv, model=group.name(source), source=source, k=k),
                     "verdict": describe(iv, "robust ahead", "natural ahead")})
    return pd.DataFrame(rows, columns=["model", "source", "k", "diff", "lo", "hi", "n_seeds", "verdict"])


def sweep_rows(group: SeedGroup, metas: Mapping[str, Mapping[str, Any]], ks: Sequence[int] = SWEEP_KS) -> pd.DataFrame:
    """One row per (source, seed, cut-off, k) from each result's stored `cutoff_sweep`: model, source, seed,
    influence_key, cutoff, rank (Hessian directions kept), k, match. Results without a sweep are left out."""
    rows = []
    for source in group.sources():
        for seed, key in zip(group.seeds, group.keys(source), strict=True):
            meta = metas.get(key) or {}  # parsed by the cache's reader (`InfluenceRecord.meta`)
            sweep = meta.get("cutoff_sweep")
            if not sweep:
                continue
            for cutoff, rank, curve in zip(sweep["cutoffs"], sweep["ranks"], sweep["label_match"], strict=True):
                for k in ks:
                    if k <= len(curve):
                        rows.append({"model": group.name(source), "source": source,
                                     "role": _role(group, source), "seed": seed,
                                     "influence_key": key, "cutoff": float(cutoff), "rank": int(rank), "k": k,
                                     "match": float(curve[k - 1])})
    return pd.DataFrame(rows, columns=["model", "source", "role", "seed", "influence_key", "cutoff", "rank", "k",
                                       "match"])


def sweep_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean label match over seeds and its 95% interval per (model, cut-off, k), with the mean rank kept."""
    out = []
    for (model, source, cutoff, k), g in rows.groupby(["model", "source", "cutoff", "k"], sort=True):
        role = g["role"].iloc[0] if "role" in g else None
        iv = mean_interval(g["match"])
        out.append({**_row("match", iv, model=model, source=source, role=role, cutoff=cutoff, k=k),
                    "rank": float(g["rank"].mean())})
    return pd.DataFrame(out, columns=["model", "source", "role", "cutoff", "k", "match", "lo", "hi", "n_seeds",
                                      "rank"])


def sweep_difference(group: SeedGroup, rows: pd.DataFrame) -> pd.DataFrame:
    """Robust minus natural label match per (robust model, cut-off, k), paired by seed: model, source, cutoff, k,
    diff, lo, hi, n_seeds, sign (+1 the paper's direction holds, -1 reversed, 0 not distinguishable here)."""
    natural = group.first.natural
    columns = ["model", "source", "cutoff", "k", "diff", "lo", "hi", "n_seeds", "sign"]
    if natural is None or rows.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for (cutoff, k), g in rows.groupby(["cutoff", "k"], sort=True):
        values = dict(zip(g["influence_key"], g["match"], strict=True))
        for source in group.sources():
            if source == natural:
                continue
            iv = _paired(group, values, source, natural)
            out.append({**_row("diff", iv, model=group.name(source), source=source, cutoff=cutoff, k=k),
                        "sign": iv.sign})
    return pd.DataFrame(out, columns=columns)


def seed_sentence(group: SeedGroup, k: int = 5) -> str:
    """The demo's line about the stored test images: each model's label match @k as mean and 95% interval over the
    group's seeds, and each robust model minus natural (paired by seed) with its verdict."""
    curves = group.curves()
    match = label_match_over_seeds(group, curves)
    match = match[match["k"] == min(k, int(match["k"].max()))] if not match.empty else match
    if match.empty:
        return ""
    k = int(match["k"].iloc[0])
    n = len(group.seeds)

    def share(row: pd.Series) -> str:
        if row["n_seeds"] < 2:
            return f"{row['model']} {row['match']:.1%} (one seed: no interval)"
        return f"{row['model']} {row['match']:.1%} [{row['lo']:.1%}, {row['hi']:.1%}]"

    diff = match_difference(group, curves, k)
    text = (f"Label match @{k} on the stored test images over {n} fine-tuning seed"
            f"{'s' if n != 1 else ''} of this subset (mean and 95% interval{group.retraining()}): "
            + "; ".join(share(r) for _, r in match.iterrows()))
    if not diff.empty:
        text += ". " + "; ".join(f"{m} minus natural: {v}" for m, v in zip(diff["model"], diff["verdict"], strict=True))
    return text + "."


def _cutoffs(values: Sequence[float]) -> str:
    return ", ".join(f"{c:g}" for c in values) if values else "none"


def direction_sentence(diff: pd.DataFrame) -> str:
    """Where the paper's direction (robust models' influential images share the test label more often) holds: per
    robust model and k, the cut-offs where robust minus natural is above zero with 95% confidence, those where it
    is below, and those where it is not distinguishable here."""
    if diff.empty:
        return "No robust and natural results of the cut-off sweep on common seeds."
    parts = []
    for (model, k), g in diff.groupby(["model", "k"], sort=False):
        g = g.sort_values("cutoff")
        holds, reversed_, unclear = ([float(c) for c in g.loc[g["sign"] == s, "cutoff"]] for s in (1, -1, 0))
        n = int(g["n_seeds"].max())
        if len(holds) == len(g):
            what = "holds at every cut-off"
        elif not holds:
            what = "holds at no cut-off"
        else:
            what = f"holds at cut-off {_cutoffs(holds)}"
        text = f"{model}, top-{k}: {what}"
        if reversed_:
            text += f"; reversed (natural ahead) at {_cutoffs(reversed_)}"
        if unclear and holds:
            text += f"; {NOT_DISTINGUISHABLE} at {_cutoffs(unclear)}"
        elif unclear and not reversed_:
            text += f" ({NOT_DISTINGUISHABLE} at any)"
        parts.append(text + f" (95% intervals over {n} seeds, paired)")
    return "; ".join(parts) + "."


__all__ = ["SWEEP_KS", "SeedGroup", "direction_sentence", "label_match_over_seeds", "match_difference",
           "seed_groups", "seed_sentence", "sweep_difference", "sweep_rows", "sweep_summary"]
