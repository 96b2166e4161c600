"""Which influence results belong together: one grouping shared by the explorer's Influence page and the demo.

An influence result answers one question with one method: "which training images drive this fine-tune's
predictions, by method M with cut-off c". Results are comparable only inside a *cell*: the same target, subset
size, seed and blocks (so the same training images) and the same method and cut-off (so the same kind of
score). Grouping without the method merged `fast` and `tracincp` into one pair (two curves per model, a
heatmap picked at random); the method is therefore part of every key and every label here.

`influence_cells` groups the cache's `influence_results()` rows into cells, robust sources first and the
natural one last; `comparisons` turns each cell into the models the demo shows side by side (its dropdown picks
one). A cell is a natural baseline with one or more robust comparisons: the influence stage records each
result's part (`role`: 'paper analogue', 'best budget' with the reason it was chosen), and when it did, a cell
compares natural with those (`InfluenceCell.compared`) and every label names the part. Torch-free: pandas only
(compute.roles holds the role names), so the explorer never loads torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from compute.roles import ANALOGUE_ROLE, BEST_ROLE, NATURAL_ROLE
from compute.run_label import subset_label  # the one subset label; compute.run_label parses it back

CELL = ("target", "subset_size", "seed", "blocks", "method", "cutoff")  # what makes results comparable
ROLE_ORDER = (ANALOGUE_ROLE, BEST_ROLE)  # robust members with a role come first, in this order


def method_label(method: str, cutoff: float) -> str:
    """'fast, cut-off 0.05': how a method is named in every label."""
    return f"{method}, cut-off {cutoff:g}"


@dataclass(frozen=True)
class CellKey:
    """What makes influence results comparable (`CELL`): the same training images, the same kind of score."""

    target: str
    subset_size: int
    seed: int
    blocks: int
    method: str
    cutoff: float


@dataclass(frozen=True)
class InfluenceCell(CellKey):
    """Influence results of one method on one fine-tuning subset, one per source model."""

    members: tuple[tuple[str, str], ...]  # (source, influence key): robust by role then name, the natural one last
    natural: str | None  # the natural member's source name, None when the cell has none
    roles: tuple[tuple[str, str, str], ...] = ()  # (source, role, why) recorded by the influence stage
    curves: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (influence key, stored label-match curve k = 1..)
    models: tuple[tuple[str, str], ...] = ()  # (source, the source model its run started from: a replica's name)

    @property
    def role_of(self) -> dict[str, tuple[str, str]]:
        """source -> (role, why): 'paper analogue', 'best budget' (with the reason it was chosen), 'natural'."""
        return {source: (role, note) for source, role, note in self.roles}

    def name(self, source: str) -> str:
        """'linf_4 · best budget': a member's source with its part in the comparison."""
        role = self.role_of.get(source, ("", ""))[0]
        return f"{source} · {role}" if role and role != source else source  # not 'natural · natural'

    @property
    def compared(self) -> dict[str, str]:
        """source -> influence key of the models the comparison shows: natural, the paper analogue and the best
        budget when the stage recorded roles (an earlier best budget drops out), else every member."""
        roles = self.role_of
        return {s: k for s, k in self.members if not roles or s in roles or s == self.natural}

    @property
    def best_note(self) -> str:
        """Why the best budget was chosen ('' when the cell has none)."""
        return next((note for _, role, note in self.roles if BEST_ROLE in role and note), "")

    @property
    def subset(self) -> tuple[str, int, int, int]:
        """(target, subset size, seed, blocks): the cells of one subset differ only in method and cut-off."""
        return self.target, self.subset_size, self.seed, self.blocks

    @property
    def subset_label(self) -> str:
        return subset_label(*self.subset)

    @property
    def method_label(self) -> str:
        return method_label(self.method, self.cutoff)

    @property
    def label(self) -> str:
        return f"{self.subset_label} · {self.method_label}"

    @property
    def keys(self) -> dict[str, str]:
        """source -> influence key, robust first."""
        return dict(self.members)


def influence_cells(results: pd.DataFrame, natural: Iterable[str]) -> list[InfluenceCell]:
    """Group `CacheReader.influence_results()` rows by `CELL`; sorted by subset, then method and cut-off.

    `natural` names the natural reference (`compute.roles.SourceRoles.naturals`). A cell holding one source twice
    (the same run scored twice with one method, e.g. by two code versions) keeps the row with a recorded role, else
    the first.
    """
    if results.empty:
        return []
    natural = set(natural)
    results = results.assign(role=results.get("role"), role_note=results.get("role_note"))
    cells = []
    for keys, group in results.groupby(list(CELL), sort=True):
        target, size, seed, blocks, method, cutoff = keys
        # One row per source: the one the latest influence stage labelled (it clears older results' roles, e.g. of
        # an earlier code version on the same run), else the first.
        group = group.assign(_old=group["role"].isna()).sort_values(["source", "_old"], kind="stable")
        group = group.drop_duplicates("source").drop(columns="_old")
        order = group["source"].isin(natural) * 10 + group["role"].map(_role_rank).fillna(len(ROLE_ORDER))
        group = group.iloc[np.argsort(order.to_numpy(), kind="stable")]
        members = tuple(zip(group["source"].astype(str), group["key"].astype(str), strict=True))
        nat = next((s for s, _ in members if s in natural), None)
        roles = tuple((str(r.source), str(r.role), "" if pd.isna(r.role_note) else str(r.role_note))
                      for r in group.itertuples() if isinstance(r.role, str) and r.role)
        curves = tuple((str(key), tuple(float(v) for v in curve)) for key, curve in
                       zip(group["key"], group.get("label_match", [None] * len(group)), strict=True)
                       if curve is not None and not (isinstance(curve, float) and np.isnan(curve)))
        models = tuple((str(r.source), str(r.model)) for r in group.itertuples()
                       if isinstance(getattr(r, "model", None), str))
        cells.append(InfluenceCell(str(target), int(size), int(seed), int(blocks), str(method), float(cutoff),
                                   members, nat, roles, curves, models))
    return cells


def _role_rank(role: object) -> float:
    """Display order of a member: the paper analogue, then the best budget, then the rest."""
    if not isinstance(role, str):
        return float(len(ROLE_ORDER))
    return float(next((i for i, r in enumerate(ROLE_ORDER) if r in role), len(ROLE_ORDER)))


MAX_ROBUST = 2  # robust models per comparison: the paper analogue and the best budget, beside natural


@dataclass(frozen=True)
class Side:
    """One model of a comparison and the part it plays (issue 14), as the demo's column header and JSON show it."""

    role: str  # key of the API's answer: 'analogue', 'best_budget', 'natural'; 'robust' where no role is recorded
    source: str
    key: str  # influence key
    part: str  # 'paper analogue', 'best budget on mnist5k', 'paper analogue, best budget on digits', 'natural'
    note: str = ""  # why (the best budget's delta and where it was measured)


@dataclass(frozen=True)
class Comparison:
    """What the demo shows for one influence cell: its robust models side by side with the natural one (last)."""

    cell: InfluenceCell
    sides: tuple[Side, ...]  # the paper analogue, the best budget (when another model), natural
    label: str  # the cell's label: target, subset and method (plus the robust sources when a cell is split)
    seed_cells: tuple[InfluenceCell, ...] = ()  # this cell and those that differ from it only in the seed

    @property
    def target(self) -> str:
        """The target every model was fine-tuned on (one cell: one format, one set of thumbnails)."""
        return self.cell.target

    @property
    def method(self) -> str:
        """The influence method that scored every side (the default comparison prefers 'fast')."""
        return self.cell.method

    def side(self, role: str) -> Side | None:
        """The side playing `role` ('analogue', 'best_budget', 'natural'), None when the cell has none."""
        return next((s for s in self.sides if s.role == role), None)


def comparisons(cells: Sequence[InfluenceCell]) -> list[Comparison]:
    """One comparison per cell with a natural and a robust member (`InfluenceCell.compared`).

    With recorded roles a cell compares at most the paper analogue and the best budget with natural. A cell
    without roles (a cache from before them) compares every member: it is split into comparisons of
    `MAX_ROBUST` robust models each, their sources named in the label, so no model is dropped unsaid.
    """
    out = []
    for cell in cells:
        if cell.natural is None:
            continue
        same = tuple(sorted((c for c in cells if but_seed(c) == but_seed(cell)), key=lambda c: c.seed))
        robust = [s for s in cell.compared if s != cell.natural]
        chunks = [robust[i:i + MAX_ROBUST] for i in range(0, len(robust), MAX_ROBUST)]
        for chunk in chunks:
            label = cell.label if len(chunks) == 1 else f"{cell.label} · {', '.join(chunk)}"
            out.append(Comparison(cell, _sides(cell, [*chunk, cell.natural]), label, same))
    return out


def but_seed(cell: CellKey) -> tuple:
    """What a cell shares with the same comparison on other fine-tuning seeds."""
    return cell.target, cell.subset_size, cell.blocks, cell.method, cell.cutoff


def _sides(cell: InfluenceCell, sources: Sequence[str]) -> tuple[Side, ...]:
    """Each source with its role key (unique within the comparison: 'robust', 'robust_2', ...) and part."""
    sides: list[Side] = []
    for source in sources:
        recorded, note = cell.role_of.get(source, ("", ""))
        part = recorded or (NATURAL_ROLE if source == cell.natural else "robust")
        base = "natural" if source == cell.natural else \
            "analogue" if ANALOGUE_ROLE in part else "best_budget" if BEST_ROLE in part else "robust"
        role, n = base, 1
        while role in {s.role for s in sides}:
            n += 1
            role = f"{base}_{n}"
        part = f"{part} on {cell.target}" if BEST_ROLE in part else part
        sides.append(Side(role, source, cell.keys[source], part, note))
    return tuple(sides)


def default_comparison(choices: Sequence[Comparison],
                       preferred: Sequence[tuple[str, int, int, int, tuple[str, ...]]] = (),
                       method: str = "fast") -> Comparison | None:
    """The first comparison of a preferred (target, subset size, seed, blocks, robust sources) cell, scored by
    `method` when the cache has it; else the first of `method`; else the first."""
    ranked = sorted(choices, key=lambda c: c.method != method)  # stable: `method` first, order kept otherwise
    for target, size, seed, blocks, sources in preferred:
        for choice in ranked:
            robust = {s.source for s in choice.sides[:-1]}  # natural is last
            if choice.cell.subset == (target, size, seed, blocks) and robust & set(sources):
                return choice
    return ranked[0] if ranked else None


__all__ = ["CELL", "MAX_ROBUST", "CellKey", "Comparison", "InfluenceCell", "Side", "comparisons", "default_comparison",
           "but_seed", "influence_cells", "method_label", "subset_label"]
