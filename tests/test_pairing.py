"""app.pairing: one grouping of influence results for the explorer and the demo, method in every key and label."""

from __future__ import annotations

import sys

import pandas as pd

from app.pairing import default_pair, find_pairs, influence_cells, natural_sources


def _results(methods: tuple[str, ...] = ("fast", "tracincp")) -> pd.DataFrame:
    rows = []
    for method in methods:
        for source in ("natural", "l2_1.5", "linf_0.1"):
            rows.append({"key": f"{method}-{source}", "source": source, "target": "mnist5k", "subset_size": 50,
                         "seed": 7, "blocks": 3, "method": method, "cutoff": 0.05})
    rows.append({"key": "other-subset", "source": "natural", "target": "digits", "subset_size": 20, "seed": 7,
                 "blocks": 1, "method": "fast", "cutoff": 0.05})
    return pd.DataFrame(rows)


SOURCES = pd.DataFrame({"name": ["natural", "l2_1.5", "linf_0.1"], "constraint_": ["none", "l2:1.5", "linf:0.1"],
                        "kind": ["natural", "pgd", "pgd"]})


def test_natural_sources_read_the_kind_column() -> None:
    assert natural_sources(SOURCES) == {"natural"}
    relabelled = SOURCES.assign(kind=["pgd", "natural", "pgd"])  # the recorded kind decides, not the text
    assert natural_sources(relabelled) == {"l2_1.5"}
    assert natural_sources(pd.DataFrame()) == frozenset()


def test_cells_keep_methods_apart_and_put_natural_last() -> None:
    cells = influence_cells(_results(), natural_sources(SOURCES))
    assert [(c.target, c.method) for c in cells] == [("digits", "fast"), ("mnist5k", "fast"), ("mnist5k", "tracincp")]
    fast = cells[1]
    assert list(fast.keys) == ["l2_1.5", "linf_0.1", "natural"] and fast.natural == "natural"
    assert set(fast.keys.values()) == {"fast-natural", "fast-l2_1.5", "fast-linf_0.1"}
    labels = [c.label for c in cells]
    assert len(set(labels)) == len(labels) and all(c.method in c.label for c in cells)
    assert cells[1].subset_label == cells[2].subset_label


def test_pairs_are_unique_per_method_and_cutoff() -> None:
    results = pd.concat([_results(), _results(("fast",)).assign(cutoff=1e-20, key=lambda f: f["key"] + "-tiny")])
    pairs = find_pairs(influence_cells(results, natural_sources(SOURCES)))
    assert len(pairs) == 2 * 3  # (l2_1.5, linf_0.1) x (fast 0.05, fast 1e-20, tracincp 0.05); digits has no robust
    labels = [p.label for p in pairs]
    assert len(set(labels)) == len(labels)
    assert all(p.method in p.label and f"{p.cutoff:g}" in p.label for p in pairs)
    for pair in pairs:
        assert pair.robust_key.startswith(pair.method) and pair.natural_key.startswith(pair.method)


def test_default_pair_prefers_the_preset_cell_and_the_fast_method() -> None:
    pairs = find_pairs(influence_cells(_results(("tracincp", "fast")), natural_sources(SOURCES)))
    chosen = default_pair(pairs, [("mnist5k", 50, 7, 3, ("linf_0.1",))])
    assert (chosen.robust_source, chosen.method) == ("linf_0.1", "fast")
    assert default_pair(pairs).method == "fast"
    assert default_pair([]) is None


def test_pairing_does_not_load_torch() -> None:
    import subprocess

    code = "import sys, app.pairing, app.influence_compare; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
