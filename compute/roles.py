"""The parts a model plays, decided once: by the preset, recorded by the sources stage, read everywhere.

A source's roles (`SourceRoles`):
- natural: the naturally trained reference every robust model is compared with (the preset's `natural`),
- paper analogue: the robust source that plays the paper's L2 eps 3 model at the same per-value strength (the
  preset's `analogue`),
- its Table 7 column, if any (`TABLE7_COLUMNS`): natural plays 'natural', the analogue 'l2_eps3', and the sources
  the preset's `table7` names play the Linf columns ("Paper vs here" compares them with the paper's numbers).

The sources stage records them in each source's meta (`role`, `table7`); `CacheReader.source_roles` reads them
back for the explorer, the demo and compute alike. A cache written before they were recorded gets them derived
once, the old way, by `derive_roles` (from the recorded kind, norm, eps and steps columns, never from a name).

An influence result's meta records its part too (by the influence stage): natural, paper analogue, or the best
budget, the robust source with the highest mean robust-minus-natural accuracy on the influence target
(compute.best_budget), with the reason it was chosen (`role_note`); a result can play two parts ('paper
analogue, best budget'). Torch-free: the app imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from compute.errors import RtxError

NATURAL_ROLE = "natural"
ANALOGUE_ROLE = "paper analogue"
BEST_ROLE = "best budget"

# The model columns of the paper's Table 7 (assets/paper_table7.csv): which source plays each is a role.
TABLE7_NATURAL, TABLE7_L2, TABLE7_LINF_SMALL, TABLE7_LINF_LARGE = (
    "natural", "l2_eps3", "linf_eps4_255", "linf_eps8_255")
TABLE7_COLUMNS = (TABLE7_NATURAL, TABLE7_L2, TABLE7_LINF_SMALL, TABLE7_LINF_LARGE)

__all__ = ["ANALOGUE_ROLE", "BEST_ROLE", "NATURAL_ROLE", "TABLE7_COLUMNS", "TABLE7_L2", "TABLE7_LINF_LARGE",
           "TABLE7_LINF_SMALL", "TABLE7_NATURAL", "SourceFacts", "SourceRoles", "derive_roles", "read_roles"]


@dataclass(frozen=True)
class SourceRoles:
    """Which source plays which part in one cache (or one preset).

    `table7` pairs each source with the Table 7 column it plays; natural and the analogue are in it as 'natural'
    and 'l2_eps3'. `recorded` is False when the roles were derived from an older cache (`derive_roles`).
    """

    natural: str | None = None
    analogue: str | None = None
    table7: tuple[tuple[str, str], ...] = ()
    recorded: bool = True

    @classmethod
    def declared(cls, natural: str, analogue: str | None, table7: Iterable[tuple[str, str]],
                 sources: Iterable[str]) -> SourceRoles:
        """The roles a preset states: `table7` names the columns played besides natural's and the analogue's.

        Raises RtxError when a named source is not among `sources`, a column is unknown or played twice."""
        names = set(sources)
        columns = [(natural, TABLE7_NATURAL), *([(analogue, TABLE7_L2)] if analogue else []), *table7]
        for source, column in columns:
            if source not in names:
                raise RtxError(f"role source {source!r} is not a source of the preset; valid: {', '.join(sorted(names))}")
            if column not in TABLE7_COLUMNS:
                raise RtxError(f"unknown Table 7 column {column!r}; valid: {', '.join(TABLE7_COLUMNS)}")
        played = [c for _, c in columns]
        if len(set(played)) < len(played) or len({s for s, _ in columns}) < len(columns):
            raise RtxError(f"each Table 7 column is played by one source, each source plays one: {columns}")
        return cls(natural, analogue, tuple(columns))

    @property
    def naturals(self) -> frozenset[str]:
        """The natural reference as a set (empty when the cache has none): what `app.pairing` takes."""
        return frozenset({self.natural} if self.natural else ())

    @property
    def columns(self) -> dict[str, str]:
        """Source -> the Table 7 column it plays, natural first."""
        return dict(self.table7)

    def role_of(self, source: object) -> str | None:
        """NATURAL_ROLE, ANALOGUE_ROLE or None: the part `source` plays (what charts colour by)."""
        return NATURAL_ROLE if source == self.natural else ANALOGUE_ROLE if source == self.analogue else None

    def meta(self) -> dict[str, dict[str, str]]:
        """Source -> the keys the sources stage merges into its meta (`role`, `table7`), for every source with one."""
        out: dict[str, dict[str, str]] = {}
        for source, column in self.table7:
            out.setdefault(source, {})["table7"] = column
        for source in (self.natural, self.analogue):
            if source:
                out.setdefault(source, {})["role"] = self.role_of(source) or ""
        return out


class SourceFacts(NamedTuple):
    """What the cache records about one source that roles are read or derived from (a `source_models` row)."""

    name: str
    kind: str | None  # 'natural' | 'pgd' | 'gaussian'; None for a constraint the program could not read
    norm: str | None
    eps: float | None
    steps: int
    meta: Mapping[str, Any]


def read_roles(sources: Sequence[SourceFacts]) -> SourceRoles:
    """The roles the sources stage recorded, else (a cache from before they were) `derive_roles`.

    Recorded means some source's meta says role 'natural': the stage records natural with every preset, and no
    earlier program wrote that role on a source (it marked only the paper analogue)."""
    if not any(s.meta.get("role") == NATURAL_ROLE for s in sources):
        return derive_roles(sources)
    natural = next(s.name for s in sources if s.meta.get("role") == NATURAL_ROLE)
    analogue = next((s.name for s in sources if s.meta.get("role") == ANALOGUE_ROLE), None)
    order = {c: i for i, c in enumerate(TABLE7_COLUMNS)}
    table7 = sorted(((s.name, s.meta["table7"]) for s in sources if s.meta.get("table7") in order),
                    key=lambda pair: order[pair[1]])
    return SourceRoles(natural, analogue, tuple(table7))


def derive_roles(sources: Sequence[SourceFacts]) -> SourceRoles:
    """The roles of a cache written before the sources stage recorded them, as the app decided them then.

    natural: the first source by name whose recorded kind is 'natural'. Analogue: the source an earlier sources
    stage marked 'paper analogue', else the L2 PGD(k>1) source whose eps is nearest the paper's 3 (more steps,
    then the name, break ties). Linf columns: a PGD(k>1) source at exactly 4/255 or 8/255, else the smallest
    and the largest Linf budget play 'small' and 'large'. PGD(1) and Gaussian sources play no column."""
    by_name = sorted(sources, key=lambda s: s.name)
    natural = next((s.name for s in by_name if s.kind == "natural"), None)
    multi = [s for s in by_name if s.kind == "pgd" and s.steps > 1 and s.eps is not None]
    l2 = sorted((s for s in multi if s.norm == "l2"), key=lambda s: (abs(float(s.eps or 0) - 3), -s.steps))
    marked = next((s.name for s in by_name if s.meta.get("role") == ANALOGUE_ROLE), None)
    analogue = marked or (l2[0].name if l2 else None)
    columns = [*([(natural, TABLE7_NATURAL)] if natural else []), *([(analogue, TABLE7_L2)] if analogue else [])]
    linf = sorted((s for s in multi if s.norm == "linf" and s.name not in {natural, analogue}),
                  key=lambda s: float(s.eps or 0))
    exact = [(s.name, column) for s in linf for eps, column in ((4 / 255, TABLE7_LINF_SMALL),
                                                               (8 / 255, TABLE7_LINF_LARGE))
             if abs(float(s.eps or 0) - eps) < 1e-9]
    if not exact and linf:  # the smaller budget plays "small", the larger "large"
        exact = [(linf[0].name, TABLE7_LINF_SMALL), *([(linf[-1].name, TABLE7_LINF_LARGE)] if len(linf) > 1 else [])]
    return SourceRoles(natural, analogue, tuple(columns + exact), recorded=False)
