"""Issue 24: influence over fine-tuning seeds (label match as mean and 95% interval), the cut-off sweep the stage
stores, and the sentences the Influence page and the demo compute from them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import influence_seeds
from app.demo.results import Explanation
from app.pairing import InfluenceCell, comparisons, influence_cells
from compute.cache import CacheReader, CacheWriter
from compute.data.sampler import paper_seeds
from compute.intervals import NOT_DISTINGUISHABLE, mean_interval, paired_interval
from compute.presets import get_preset
from compute.settings import Settings
from compute.stages.finetune import finetune_stage
from compute.stages.influence import CUTOFF_SWEEP, influence_stage

SEEDS = tuple(paper_seeds(3))


# --- synthetic cells: the arithmetic -------------------------------------------------------------------------
def _cells(robust: list[list[float]], natural: list[list[float]], sweep: bool = True) -> tuple[list, dict]:
    """One cell per seed with curves robust[i], natural[i]; metas with a two-cut-off sweep whose k=1 values are
    the curves' first value at cut-off 0 and their first value + 0.5 * (robust? 1 : 0) at cut-off 0.05."""
    cells, metas = [], {}
    for i, (r, n) in enumerate(zip(robust, natural, strict=True)):
        keys = {"l2": f"r{i}", "natural": f"n{i}"}
        cells.append(InfluenceCell("mnist5k", 400, SEEDS[i], 3, "fast", 0.05, (("l2", "r" + str(i)), ("natural", f"n{i}")),
                                   "natural", (("l2", "paper analogue", ""), ("natural", "natural", "")),
                                   ((keys["l2"], tuple(r)), (keys["natural"], tuple(n)))))
        if sweep:
            for src, curve in (("l2", r), ("natural", n)):
                lift = 0.2 if src == "l2" else 0.0
                metas[keys[src]] = {"cutoff_sweep": {"cutoffs": [0.0, 0.05], "ranks": [9, 3],
                                                     "label_match": [list(curve), [curve[0] + lift, *curve[1:]]]}}
    return cells, metas


def test_label_match_over_seeds_is_the_t_interval_of_each_k() -> None:
    robust = [[0.80, 0.70], [0.84, 0.71], [0.78, 0.69]]
    natural = [[0.70, 0.60], [0.82, 0.64], [0.75, 0.61]]
    cells, _ = _cells(robust, natural)
    (group,) = influence_seeds.seed_groups(cells)
    assert group.seeds == SEEDS and group.sources() == ["l2", "natural"]
    frame = influence_seeds.label_match_over_seeds(group, group.curves())
    row = frame[(frame["source"] == "l2") & (frame["k"] == 1)].iloc[0]
    iv = mean_interval([0.80, 0.84, 0.78])
    assert (row["match"], row["lo"], row["hi"], row["n_seeds"]) == pytest.approx((iv.mean, iv.lo, iv.hi, 3))
    diff = influence_seeds.match_difference(group, group.curves(), 1).iloc[0]
    paired = paired_interval([0.80, 0.84, 0.78], [0.70, 0.82, 0.75])  # paired by seed, not two independent means
    assert (diff["diff"], diff["lo"], diff["hi"]) == pytest.approx((paired.mean, paired.lo, paired.hi))
    assert diff["verdict"].startswith(NOT_DISTINGUISHABLE)  # +0.05 over 3 seeds with one pair at +0.02
    two = influence_seeds.match_difference(group, group.curves(), 2).iloc[0]
    assert two["verdict"].startswith("robust ahead: +8.3 points")  # +0.10, +0.07, +0.08: all clearly above


def test_cutoff_sweep_says_where_the_direction_holds() -> None:
    robust = [[0.80, 0.70], [0.84, 0.71], [0.78, 0.69]]
    natural = [[0.70, 0.60], [0.82, 0.64], [0.75, 0.61]]
    cells, metas = _cells(robust, natural)
    (group,) = influence_seeds.seed_groups(cells)
    rows = influence_seeds.sweep_rows(group, metas, ks=(1,))
    assert len(rows) == 2 * 3 * 2 and set(rows["cutoff"]) == {0.0, 0.05}
    summary = influence_seeds.sweep_summary(rows)
    assert summary.set_index(["source", "cutoff"]).loc[("l2", 0.05), "rank"] == 3
    diff = influence_seeds.sweep_difference(group, rows)
    signs = diff.set_index("cutoff")["sign"].to_dict()
    assert signs == {0.0: 0, 0.05: 1}  # +0.05 undecided at 0; +0.25 at 0.05 on every seed
    text = influence_seeds.direction_sentence(diff)
    assert text == (f"l2 · paper analogue, top-1: holds at cut-off 0.05; {NOT_DISTINGUISHABLE} at 0 (95% intervals "
                    "over 3 seeds, paired).")
    reversed_ = influence_seeds.direction_sentence(diff.assign(sign=-diff["sign"]))
    assert "holds at no cut-off; reversed (natural ahead) at 0.05" in reversed_
    assert influence_seeds.sweep_rows(group, {}).empty  # results from before the sweep: nothing made up


def test_seed_sentence_and_the_demo_json_carry_the_interval() -> None:
    robust = [[0.80, 0.70], [0.84, 0.71], [0.78, 0.69]]
    natural = [[0.70, 0.60], [0.82, 0.64], [0.75, 0.61]]
    cells, _ = _cells(robust, natural)
    choices = comparisons(cells)
    assert len(choices) == 3 and all(len(c.seed_cells) == 3 for c in choices)
    group = influence_seeds.SeedGroup(choices[0].seed_cells)
    text = influence_seeds.seed_sentence(group, k=2)
    iv = mean_interval([0.70, 0.71, 0.69])
    assert f"l2 · paper analogue {iv.mean:.1%} [{iv.lo:.1%}, {iv.hi:.1%}]" in text and "over 3 fine-tuning seeds" in text
    assert "l2 · paper analogue minus natural: robust ahead: +8.3 points" in text
    explanation = Explanation(choices[0], None, (), 0.0)  # the seed part needs neither an image nor a model
    rows = explanation.label_match_over_seeds()
    assert {(r["source"], r["k"]) for r in rows} == {("l2", 1), ("l2", 2), ("natural", 1), ("natural", 2)}
    assert all(r["n_seeds"] == 3 and r["lo"] < r["mean"] < r["hi"] for r in rows)


# --- the stage on the tiny preset, three seeds -----------------------------------------------------------------
@pytest.fixture(scope="module")
def seeds_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import record_random_source

    root = tmp_path_factory.mktemp("influence-seeds")
    tiny = get_preset("tiny")
    preset = replace(tiny, influence=replace(tiny.influence, seeds=SEEDS))
    with CacheWriter(root) as writer:
        record_random_source(writer, "natural", 0)
        record_random_source(writer, "l2_1.5", 1, "l2:1.5")
        finetune_stage(preset.with_overrides(sizes=(preset.influence.n_train,), seeds=SEEDS), writer,
                       Settings(progress=False))
        influence_stage(preset, writer, progress=False)
    return root


def test_stage_scores_every_seed_and_stores_the_sweep(seeds_cache: Path) -> None:
    reader = CacheReader(seeds_cache)
    results = reader.influence_results()
    assert sorted(zip(results["source"], results["seed"], strict=True)) == sorted((s, seed) for s in ("l2_1.5", "natural")
                                                                      for seed in SEEDS)
    for key in results["key"]:
        row = reader.influence(key)
        sweep = row.meta["cutoff_sweep"]
        assert tuple(sweep["cutoffs"]) == CUTOFF_SWEEP
        assert sweep["ranks"] == sorted(sweep["ranks"], reverse=True)  # a higher cut-off keeps fewer directions
        # The stored result is the fast route at the spec's cut-off 5e-2: the sweep's curve there is the same
        # computation in float64 on the same problem, so equal to rounding of one eigen-solve.
        at = sweep["cutoffs"].index(row.cutoff)
        np.testing.assert_allclose(sweep["label_match"][at], row.label_match, atol=1e-12)
    cells = influence_cells(results, reader.source_roles().naturals)
    reader.close()
    (group,) = influence_seeds.seed_groups(cells)
    assert group.seeds == SEEDS
    frame = influence_seeds.label_match_over_seeds(group, group.curves())
    assert (frame["n_seeds"] == 3).all() and (frame["lo"] <= frame["match"]).all()


def test_influence_page_shows_seeds_and_the_cutoff_sweep(monkeypatch, seeds_cache: Path) -> None:
    from tests.test_explorer_apptest import chart_data, open_page

    at = open_page(monkeypatch, seeds_cache, "influence")
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="influence-seed").options == [str(s) for s in SEEDS]
    match, sweep, diff, heat = chart_data(at)[:4]
    assert (match["n_seeds"] == 3).all() and match["lo"].notna().all()
    assert set(sweep["cutoff"]) == set(CUTOFF_SWEEP) and (sweep["n_seeds"] == 3).all()
    assert set(diff["sign"]) <= {-1, 0, 1} and set(heat["model"]) == {"l2_1.5 · paper analogue, best budget",
                                                                     "natural"}
    said = " ".join(m.value for m in at.markdown)
    assert "Where the paper's direction" in said and "(95% intervals over 3 seeds, paired)" in said
    assert "Robust minus natural, paired by seed" in said and "95% interval over 3 seeds" in said
    at.selectbox(key="influence-seed").set_value(SEEDS[2]).run()
    assert not at.exception


def test_pairing_keeps_curves_of_each_cell(seeds_cache: Path) -> None:
    reader = CacheReader(seeds_cache)
    results = reader.influence_results()
    cells = influence_cells(results, reader.source_roles().naturals)
    reader.close()
    stored = dict(zip(results["key"], results["label_match"], strict=True))
    kept = {k: v for c in cells for k, v in c.curves}
    assert sorted(kept) == sorted(stored)
    for key, curve in kept.items():
        np.testing.assert_array_equal(curve, stored[key])  # copied, not recomputed


def test_a_cell_keeps_the_result_the_latest_stage_labelled() -> None:
    """After a code-version bump the same run has an old result (roles cleared) and a new one (roles set)."""
    def row(key: str, source: str, role: str | None) -> dict:
        return {"key": key, "target": "mnist5k", "subset_size": 400, "seed": SEEDS[0], "blocks": 3, "method": "fast",
                "cutoff": 0.05, "source": source, "role": role, "role_note": None, "label_match": [0.5]}
    results = pd.DataFrame([row("old-l2", "l2", None), row("new-l2", "l2", "paper analogue"),
                            row("old-nat", "natural", None), row("new-nat", "natural", "natural")])
    (cell,) = influence_cells(results, {"natural"})
    assert cell.keys == {"l2": "new-l2", "natural": "new-nat"}


def test_the_demo_plans_every_influence_seed_for_every_source_the_best_budget_may_be() -> None:
    """The best budget is any robust source; the stage re-fine-tunes it on each influence seed, so the demo's plan
    must hold that config for every source, and the influence pair's weights must be kept on every seed."""
    from compute.replicas import family_of
    from compute.sweep import influence_keys, plan

    demo = get_preset("demo")
    spec = demo.influence
    assert len(spec.all_seeds) >= 5
    configs = plan(demo, {s.name: "x" for s in demo.trained_sources()})
    cells = {(family_of(c.source), c.target, c.n_train, c.seed, c.blocks) for c in configs}
    assert {(s.name, spec.target, spec.n_train, seed, spec.blocks) for s in demo.sources
            for seed in spec.all_seeds} <= cells
    assert len(influence_keys(demo, configs)) == len(spec.sources) * len(spec.all_seeds)
    at_20 = [c for c in configs if c.n_train == 20 and c.target == "mnist5k" and c.blocks == 3]
    assert {sum(family_of(c.source) == s.name for c in at_20) for s in demo.sources} == {20}  # Table 4's at small n
