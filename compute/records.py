"""Records: what the cache stores, as frozen types that `compute.cache` writes and reads.

The stages build records, `CacheWriter.record_*` writes them and `CacheReader` hands back frames with the same
columns. Columns derived from text the program parses elsewhere (a source's constraint, a run's target spec)
are computed here once, by the parsers that own that text, so no reader re-parses it.
"""

from __future__ import annotations

from typing import Any

from compute.attacks import parse_constraint
from compute.data.variants import split_dataset_spec
from compute.errors import RtxError

SOURCE_KINDS = ("natural", "pgd", "gaussian")


def constraint_columns(constraint: str, attack_steps: int) -> dict[str, Any]:
    """`source_models` columns kind ('natural' | 'pgd' | 'gaussian'), norm ('l2' | 'linf' | None), eps (None for
    natural; sigma for gaussian) and steps (PGD steps, 0 otherwise) of a constraint text such as 'l2:1.5'.

    An imported PGD source may not know its steps (0): the constraint is still read, with steps 0 recorded.
    """
    attack = parse_constraint(constraint, max(int(attack_steps or 0), 1))
    if attack.kind == "none":
        return {"kind": "natural", "norm": None, "eps": None, "steps": 0}
    return {"kind": attack.kind, "norm": attack.norm, "eps": float(attack.eps),
            "steps": int(attack_steps or 0) if attack.kind == "pgd" else 0}


def target_columns(target: str) -> dict[str, Any]:
    """`runs` columns base_dataset and variant ('lowres(10)', None when none) of a target spec."""
    try:
        base, variant = split_dataset_spec(target)
    except RtxError:  # not a spec this program writes (e.g. a synthetic test target): the whole text is the base
        return {"base_dataset": target, "variant": None}
    return {"base_dataset": base, "variant": None if variant is None else variant.label}
