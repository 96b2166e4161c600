"""app.pairing: one grouping of influence results for the explorer and the demo, method in every key and label."""

from __future__ import annotations

import sys

import pandas as pd

from app.pairing import MAX_ROBUST, comparisons, default_comparison, influence_cells
from compute.roles import SourceRoles


def _results(methods: tuple[str, ...] = ("fast", "tracincp")) -> pd.DataFrame:
    rows = []
    for method in methods:
        for source in ("natural", "l2_1.5", "linf_0.1"):
            rows.append({"key": f"{method}-{source}", "source": source, "target": "mnist5k", "subset_size": 50,
                         "seed": 7, "blocks": 3, "method": method, "cutoff": 0.05})
    rows.append({"key": "other-subset", "source": "natural", "target": "digits", "subset_size": 20, "seed": 7,
                 "blocks": 1, "method": "fast", "cutoff": 0.05})
    return pd.DataFrame(rows)


NATURAL = SourceRoles("natural", "l2_1.5").naturals  # the natural reference, as CacheReader.source_roles reads it


def test_cells_keep_methods_apart_and_put_natural_last() -> None:
    cells = influence_cells(_results(), NATURAL)
    assert [(c.target, c.method) for c in cells] == [("digits", "fast"), ("mnist5k", "fast"), ("mnist5k", "tracincp")]
    fast = cells[1]
    assert list(fast.keys) == ["l2_1.5", "linf_0.1", "natural"] and fast.natural == "natural"
    assert set(fast.keys.values()) == {"fast-natural", "fast-l2_1.5", "fast-linf_0.1"}
    labels = [c.label for c in cells]
    assert len(set(labels)) == len(labels) and all(c.method in c.label for c in cells)
    assert cells[1].subset_label == cells[2].subset_label


def test_comparisons_are_unique_per_method_and_cutoff() -> None:
    results = pd.concat([_results(), _results(("fast",)).assign(cutoff=1e-20, key=lambda f: f["key"] + "-tiny")])
    choices = comparisons(influence_cells(results, NATURAL))
    assert len(choices) == 3  # fast 0.05, fast 1e-20, tracincp 0.05; digits has no robust member
    labels = [c.label for c in choices]
    assert len(set(labels)) == len(labels)
    assert all(c.method in c.label and f"{c.cell.cutoff:g}" in c.label and "mnist5k" in c.label for c in choices)
    for choice in choices:  # no roles recorded: both robust members, then natural, each from this method
        assert [s.source for s in choice.sides] == ["l2_1.5", "linf_0.1", "natural"]
        assert [s.role for s in choice.sides] == ["robust", "robust_2", "natural"]
        assert all(s.key.startswith(choice.method) for s in choice.sides)


def test_a_cell_without_roles_and_more_robust_members_is_split_not_cut() -> None:
    extra = _results(("fast",)).query("source == 'natural' and target == 'mnist5k'").assign(source="linf_0.2", key="fast-linf_0.2")
    cells = influence_cells(pd.concat([_results(("fast",)), extra]), NATURAL)
    choices = comparisons(cells)
    assert [[s.source for s in c.sides] for c in choices] == [["l2_1.5", "linf_0.1", "natural"],
                                                               ["linf_0.2", "natural"]]
    assert all(len(c.sides) <= MAX_ROBUST + 1 for c in choices)
    assert choices[1].label.endswith(" · linf_0.2") and choices[0].label.endswith(" · l2_1.5, linf_0.1")


def test_default_comparison_prefers_the_preset_cell_and_the_fast_method() -> None:
    choices = comparisons(influence_cells(_results(("tracincp", "fast")), NATURAL))
    chosen = default_comparison(choices, [("digits", 20, 7, 1, ("natural",)), ("mnist5k", 50, 7, 3, ("linf_0.1",))])
    assert (chosen.target, chosen.method) == ("mnist5k", "fast")  # digits has no robust member: no comparison
    assert chosen.side("natural").source == "natural" and chosen.side("best_budget") is None
    assert default_comparison(choices).method == "fast"
    assert default_comparison([]) is None


def test_pairing_does_not_load_torch() -> None:
    import subprocess

    code = "import sys, app.pairing, app.influence_compare; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
