"""Source replicas (compute.replicas): names, the seed -> replica rule, the demo's plan, and a replicated run end to
end (runs recorded under the family, intervals widened by the measured spread, replicas not listed as sources)."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from compute.cache import CacheReader
from compute.data.sampler import paper_seeds
from compute.intervals import RETRAINING, basis
from compute.presets import get_preset
from compute.records import RunRecord
from compute.replicas import family_of, replica_for_seed, replica_index, replica_name
from compute.settings import Settings
from compute.stages import precompute
from compute.sweep import plan
from compute.train_source import source_key


def test_names_round_trip() -> None:
    assert replica_name("l2_0.22", 0) == "l2_0.22"
    assert replica_name("l2_0.22", 2) == "l2_0.22#s2"
    assert family_of("l2_0.22#s2") == "l2_0.22" and family_of("l2_0.22") == "l2_0.22"
    assert replica_index("natural#s1") == 1 and replica_index("natural") == 0


def test_paper_seeds_go_round_robin_and_one_replica_means_the_source() -> None:
    assert [replica_for_seed(s, 3) for s in paper_seeds(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert [replica_for_seed(s, 3) for s in (0, 1, 2, 3)] == [0, 1, 2, 0]
    assert {replica_for_seed(s, 1) for s in paper_seeds(5)} == {0}


def test_demo_trains_natural_and_the_analogue_three_times_with_their_own_keys() -> None:
    preset = get_preset("demo")
    replicas = [s for s in preset.trained_sources() if s not in preset.sources]
    assert [s.name for s in replicas] == ["natural#s1", "natural#s2", "l2_0.22#s1", "l2_0.22#s2"]
    keys = {source_key(s) for s in preset.trained_sources()}
    assert len(keys) == len(preset.trained_sources())  # the seed is in the key: no replica reuses another's weights
    # Replica 0 is the source as it always was: its key (and so every existing cache) is unchanged.
    assert source_key(preset.source("natural")) == "source-0b02c4cf72cc6682"


def test_the_demo_plan_spreads_each_cell_over_the_replicas_without_extra_fine_tunes() -> None:
    preset = get_preset("demo")
    configs = plan(preset, {s.name: "x" for s in preset.trained_sources()})
    unreplicated = plan(replace(preset, source_replicas=()), {s.name: "x" for s in preset.sources})
    assert len(configs) == len(unreplicated)
    ladder20 = [c for c in configs if family_of(c.source) == "natural" and c.n_train == 20 and c.blocks == 3
                and c.target == "mnist5k"]
    counts = {m: sum(c.source == m for c in ladder20) for m in preset.models("natural")}
    assert counts == {"natural": 7, "natural#s1": 7, "natural#s2": 6}
    jobs = {(family_of(c.source), c.target, c.n_train, c.seed, c.blocks) for c in configs}
    assert len(jobs) == len(configs)  # one replica per (family, cell, seed): pairing by seed stays one to one


def test_a_run_is_recorded_under_its_family_and_keeps_its_model_in_the_config() -> None:
    run = RunRecord("k", "done", "natural#s1", "digits", 20, 1, 1, 4, config={"source": "natural#s1"})
    assert run.columns()["source"] == "natural" and run.columns()["config"]["source"] == "natural#s1"


@pytest.mark.slow
def test_a_replicated_tiny_run_widens_its_intervals_and_lists_families(tmp_path: Path) -> None:
    tiny = get_preset("tiny")
    grid = replace(tiny.grids[0], seeds=tuple(paper_seeds(4)), sizes=(20,))
    preset = replace(tiny, grids=(grid,), source_replicas=(("natural", 2), ("l2_1.5", 2)), influence=None,
                     featviz=None)
    precompute(preset, tmp_path, Settings(progress=False), stages=("sources", "finetune"))
    reader = CacheReader(tmp_path)
    try:
        runs = reader.runs("done")
        assert set(runs["source"]) == {"natural", "l2_1.5"} and len(runs) == 8
        models = {json.loads(c)["source"] for c in runs["config"]}
        assert models == {"natural", "natural#s1", "l2_1.5", "l2_1.5#s1"}
        sources = reader.source_models()
        assert list(sources["name"]) == ["l2_1.5", "natural"] and list(sources["replicas"]) == [2, 2]
        final = reader.final_summary()
        assert basis(final) == RETRAINING and final["source_sd"].notna().all()
        deltas = reader.delta_summary("natural")
        assert len(deltas) == 1 and deltas["n_seeds"].iloc[0] == 4 and basis(deltas) == RETRAINING
    finally:
        reader.close()
