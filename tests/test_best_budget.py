"""Issue 14: the influence comparison is natural vs the paper analogue vs the budget that transferred best on the
target (chosen from the cache's own results); the cache knows the analogue; old snapshots get a one-line message."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from app.pairing import comparisons, influence_cells
from compute import best_budget
from compute.cache import MIGRATIONS, CacheReader, CacheWriter, db_path, snapshot_path
from compute.errors import RtxError
from compute.presets import InfluenceSpec, get_preset
from compute.roles import ANALOGUE_ROLE, BEST_ROLE, NATURAL_ROLE, SourceRoles
from tests.helpers.explorer_cache import INFLUENCE, SOURCES, write_explorer_cache


def _deltas(rows: list[tuple[str, int, float]], target: str = "mnist5k", blocks: int = 3) -> pd.DataFrame:
    return pd.DataFrame([{"source": s, "target": target, "n_train": n, "blocks": blocks, "n_seeds": 3, "mean": m,
                          "sd": 0.01, "lo": m - 0.02, "hi": m + 0.02} for s, n, m in rows])


def test_choose_takes_the_highest_mean_at_the_nearest_size_with_results() -> None:
    deltas = _deltas([("l2_0.22", 400, 0.01), ("linf_4", 400, 0.03), ("l2_1.5", 400, -0.02), ("l2_1.5", 100, 0.09)])
    best = best_budget.choose(deltas, "mnist5k", 400, 3)
    assert (best.source, best.n_train, best.delta) == ("linf_4", 400, 0.03)
    assert best.chosen_from == "mnist5k n=400 blocks=3"
    assert "on mnist5k n=400 blocks=3: ahead of natural: +3.0 points [+1.0, +5.0] (95% interval over 3 seeds)" \
        in best.note
    assert best_budget.choose(deltas, "mnist5k", 200, 3).n_train == 100  # nearest size with results
    assert best_budget.choose(deltas, "mnist5k", 250, 3).n_train == 400  # a tie goes to the larger size
    assert best_budget.choose(deltas, "digits", 400, 3) is None
    assert best_budget.choose(deltas, "mnist5k", 400, 1) is None
    assert best_budget.choose(pd.DataFrame(), "mnist5k", 400, 3) is None


def test_a_best_budget_within_the_interval_of_another_is_a_tie() -> None:
    """Issue 24: the choice is made on an interval. Sources whose paired difference from the best reaches zero
    (or that share no seed with it) are tied with it, and the note says so; a clear winner says that instead."""
    deltas = _deltas([("linf_4", 400, 0.03), ("l2_0.22", 400, 0.025), ("l2_1.5", 400, -0.02), ("linf_8", 400, 0.0)])
    best = best_budget.choose(deltas, "mnist5k", 400, 3)
    versus = pd.DataFrame([{"source": s, "target": "mnist5k", "n_train": 400, "blocks": 3, "n_seeds": 5, "mean": m,
                            "sd": 0.01, "lo": lo, "hi": hi} for s, m, lo, hi in (
        ("l2_0.22", -0.005, -0.02, 0.01),  # reaches zero: tied
        ("l2_1.5", -0.05, -0.07, -0.03),  # clearly below
        ("natural", -0.03, -0.05, -0.01),  # not a candidate (not in deltas)
    )] + [{"source": "l2_0.22", "target": "digits", "n_train": 400, "blocks": 3, "n_seeds": 5, "mean": -0.5,
           "sd": 0.01, "lo": -0.6, "hi": -0.4}])  # another cell: ignored
    tied = best_budget.ties(best, deltas, versus)
    assert tied == ("l2_0.22", "linf_8")  # linf_8 has no paired row: nothing decides, so it is tied
    note = replace(best, tied=tied).note
    assert "a tie with l2_0.22, linf_8 (their paired differences from it have 95% intervals that reach zero)" in note
    clear = versus.assign(hi=-0.001)
    clear = pd.concat([clear, clear.assign(source="linf_8")])
    assert best_budget.ties(best, deltas, clear) == ()
    assert "no other budget ties with it" in best.note


def test_best_budget_from_a_synthetic_cache_is_not_the_analogue(tmp_path: Path) -> None:
    root = write_explorer_cache(tmp_path / "cache")
    spec = InfluenceSpec(INFLUENCE["target"], INFLUENCE["n_train"], INFLUENCE["seed"], INFLUENCE["blocks"],
                         ("linf_0.1", "natural"))
    with CacheWriter(root) as writer:
        writer.set_source_roles(SourceRoles("natural", "linf_0.1"))
        best = best_budget.find(writer, spec, "natural")
    bonus = {s[0]: s[4] for s in SOURCES}  # the synthetic seed noise averages to 0 over the three seeds
    assert best.source == max((s for s in bonus if s != "natural"), key=bonus.get) == "l2_1.5"
    assert best.delta == pytest.approx(bonus["l2_1.5"])
    reader = CacheReader(root)
    assert reader.source_roles().analogue == "linf_0.1"
    reader.close()
    with CacheWriter(root) as writer:  # recording other roles moves the mark
        writer.set_source_roles(SourceRoles("natural", "l2_1.5"))
    reader = CacheReader(root)
    assert reader.source_roles().analogue == "l2_1.5"
    assert sum('"paper analogue"' in m for m in reader.source_models()["meta"]) == 1
    reader.close()


def test_recorded_roles_make_a_three_model_cell_labelled_with_the_reason(tmp_path: Path) -> None:
    root = write_explorer_cache(tmp_path / "cache")
    reader = CacheReader(root)
    results = reader.influence_results()
    reader.close()
    assert results["role"].isna().all()  # nothing recorded: every member is compared, as before
    keys = dict(zip(results["source"], results["key"], strict=True))
    with CacheWriter(root) as writer:
        writer.set_influence_roles(list(results["run_key"]), "fc-exact", 0.05, {
            keys["natural"]: {"role": NATURAL_ROLE},
            keys["l2_1.5"]: {"role": BEST_ROLE, "role_note": "best budget on mnist5k n=50 blocks=3: +6.0 points"}})
    reader = CacheReader(root)
    results = reader.influence_results()
    natural = reader.source_roles().naturals
    reader.close()
    # a third (analogue) and a fourth (no role: e.g. an earlier best budget) member of the same cell, synthetic
    extra = results[results["source"] == "natural"].assign(source="linf_0.1", key="k-analogue", role=ANALOGUE_ROLE,
                                                           role_note=None)
    stale = extra.assign(source="linf_0.2", key="k-stale", role=None)
    cells = influence_cells(pd.concat([results, extra, stale]), natural)
    cell = next(c for c in cells if c.target == INFLUENCE["target"])
    assert list(cell.compared) == ["linf_0.1", "l2_1.5", "natural"]  # analogue, best budget, natural last
    assert cell.name("l2_1.5") == "l2_1.5 · best budget" and "+6.0 points" in cell.best_note
    [shown] = comparisons([cell])  # the demo: one choice for the cell, three models side by side
    assert shown.label == cell.label and "mnist5k" in shown.label and "fc-exact" in shown.label
    assert [(s.role, s.source, s.part) for s in shown.sides] == [
        ("analogue", "linf_0.1", "paper analogue"), ("best_budget", "l2_1.5", "best budget on mnist5k"),
        ("natural", "natural", "natural")]
    assert shown.side("best_budget").note.startswith("best budget on mnist5k") and not shown.side("analogue").note
    assert [s.key for s in shown.sides] == ["k-analogue", keys["l2_1.5"], keys["natural"]]  # 'k-stale' is left out
    with CacheWriter(root) as writer:  # a later stage's choice clears the earlier roles of those runs
        writer.set_influence_roles(list(results["run_key"]), "fc-exact", 0.05, {keys["natural"]: {"role": "natural"}})
    reader = CacheReader(root)
    assert pd.isna(reader.influence_results().set_index("source").loc["l2_1.5", "role"])
    reader.close()


def test_tiny_stage_records_natural_and_the_analogue_as_best_budget(demo_cache: Path) -> None:
    reader = CacheReader(demo_cache)
    roles = reader.influence_results().set_index("source")["role"].to_dict()
    assert reader.source_roles().analogue == get_preset("tiny").analogue == "l2_1.5"
    assert {s for s, r in roles.items() if ANALOGUE_ROLE in r} == {reader.source_roles().analogue}  # one decision
    reader.close()
    assert roles["natural"] == NATURAL_ROLE
    assert roles["l2_1.5"] == f"{ANALOGUE_ROLE}, {BEST_ROLE}"  # tiny has one robust source: it is both
    reader = CacheReader(demo_cache)
    [shown] = comparisons(influence_cells(reader.influence_results(), reader.source_roles().naturals))
    reader.close()
    assert [(s.role, s.part) for s in shown.sides] == [("analogue", "paper analogue, best budget on digits"),
                                                       ("natural", "natural")]  # two models, not the same one twice


@pytest.mark.slow
def test_best_budget_without_kept_weights_is_fine_tuned_again(source_cache: Path) -> None:
    from compute.settings import Settings
    from compute.stages import finetune as finetune_stage
    from compute.stages.influence import influence_stage

    tiny = get_preset("tiny")
    spec = replace(tiny.influence, sources=("natural",), n_test=20)  # l2_1.5's fine-tune keeps no weights
    preset = replace(tiny.with_overrides(sizes=(spec.n_train,), seeds=(spec.seed,)), influence=spec, analogue=None)
    with CacheWriter(source_cache) as writer:
        finetune_stage.run(preset, writer, Settings(progress=False))
        before = {r.source: r for r in writer.influence_runs(spec.target, spec.n_train, spec.seed, spec.blocks)}
        assert before["l2_1.5"].model_path is None and "l2_1.5" not in writer.kept_by_source(
            spec.target, spec.n_train, spec.seed, spec.blocks)
        influence_stage(preset, writer, progress=False)
        after = writer.kept_by_source(spec.target, spec.n_train, spec.seed, spec.blocks)
    assert after["l2_1.5"].key == before["l2_1.5"].key and after["l2_1.5"].model_path is not None
    reader = CacheReader(source_cache)
    results = reader.influence_results().set_index("source")
    runs = reader.runs("done").set_index("source")
    reader.close()
    assert results.at["l2_1.5", "role"] == BEST_ROLE and "digits n=40 blocks=1" in results.at["l2_1.5", "role_note"]
    assert results.at["natural", "role"] == NATURAL_ROLE
    assert len(runs.loc[["l2_1.5"]]) == 1  # the same run, recorded again with its weights


def _old_cache(root: Path) -> None:
    """A cache written before migration 2 (no `kind` column), database and snapshot."""
    root.mkdir(parents=True)
    con = duckdb.connect(str(db_path(root)))
    con.execute(MIGRATIONS[0])
    con.execute("CREATE TABLE schema_version (version INTEGER); INSERT INTO schema_version VALUES (1)")
    con.execute("INSERT INTO source_models (name, constraint_, attack_steps) VALUES ('natural', 'none', 0)")
    con.close()
    shutil.copy(db_path(root), snapshot_path(root))


def test_a_snapshot_before_migration_2_gets_one_line_then_migrates_on_write(tmp_path: Path) -> None:
    _old_cache(tmp_path / "old")
    with pytest.raises(RtxError, match=r"older rtx \(schema v1.*run any rtx command that writes") as err:
        CacheReader(tmp_path / "old")
    assert "\n" not in str(err.value)
    CacheWriter(tmp_path / "old").close()  # any writer migrates and publishes
    reader = CacheReader(tmp_path / "old")
    assert reader.source_models().set_index("name").at["natural", "kind"] == "natural"
    reader.close()


def test_headline_robust_is_the_marked_analogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st

    from app import data

    root = write_explorer_cache(tmp_path / "cache")
    monkeypatch.setenv("RTX_CACHE", str(root))
    monkeypatch.setattr(data, "ADOPT_SECONDS", 0.0)  # the second snapshot is read at once
    st.cache_data.clear()
    st.cache_resource.clear()
    assert data.headline_robust(data.snapshot()) == "l2_1.5"  # unrecorded: derived, the L2 PGD(k>1) nearest eps 3
    with CacheWriter(root) as writer:
        writer.set_source_roles(SourceRoles("natural", "linf_0.1"))
    assert data.headline_robust(data.snapshot()) == "linf_0.1"  # a new snapshot: the marked analogue
    st.cache_resource.clear()


def test_the_explorer_says_one_line_on_an_old_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    _old_cache(tmp_path / "old")
    monkeypatch.setenv("RTX_CACHE", str(tmp_path / "old"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "explorer.py"), default_timeout=60).run()
    assert not at.exception
    assert len(at.error) == 1 and "written by an older rtx" in at.error[0].value
