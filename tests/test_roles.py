"""Roles decided once (issue 21, item 2): the preset states which source is natural, which the paper analogue and
which plays each Table 7 column; the sources stage records them; compute, the explorer and the demo read them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from app import charts, paper, spectra
from app.data import with_roles
from compute.cache import CacheReader, CacheWriter
from compute.errors import RtxError
from compute.presets import PRESETS, Preset, SourceSpec, get_preset
from compute.records import SourceRecord
from compute.roles import (
    ANALOGUE_ROLE,
    NATURAL_ROLE,
    TABLE7_COLUMNS,
    SourceFacts,
    SourceRoles,
    derive_roles,
)
from compute.stages.sources import record_roles
from tests.helpers.explorer_cache import write_explorer_cache


def _record_sources(root: Path, sources: tuple[SourceSpec, ...]) -> None:
    """Source rows as the sources stage writes them (no weights: roles need only the rows)."""
    with CacheWriter(root) as writer:
        for s in sources:
            writer.record_source_model(SourceRecord(s.name, s.arch, s.constraint, s.attack_steps, s.dataset,
                                                    f"sum-{s.name}", f"sources/{s.name}.safetensors"))


def _recorded(root: Path, preset: Preset) -> SourceRoles:
    """Record `preset`'s sources and roles in a cache at `root`, then read the roles back as every reader does."""
    _record_sources(root, preset.sources)
    with CacheWriter(root) as writer:
        record_roles(preset, writer)
    reader = CacheReader(root)
    try:
        return reader.source_roles()
    finally:
        reader.close()


def _summary(sources: list[str], blocks: int = 3) -> pd.DataFrame:
    return pd.DataFrame([{"source": s, "target": "mnist5k", "n_train": 100, "blocks": blocks, "n_seeds": 3,
                          "mean": 0.8 + 0.01 * i, "sd": 0.01, "lo": 0.78, "hi": 0.82} for i, s in enumerate(sources)])


def _colours(chart_spec: dict) -> dict[str, str]:
    layers = chart_spec["spec"]["layer"] if "spec" in chart_spec else chart_spec["layer"]
    scale = layers[1]["encoding"]["color"]["scale"]
    return dict(zip(scale["domain"], scale["range"], strict=True))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_states_its_roles_once(name: str) -> None:
    preset = get_preset(name)
    roles = preset.roles()
    assert preset.source(roles.natural).constraint == "none"  # the reference is naturally trained
    assert roles.analogue is None or preset.source(roles.analogue).constraint.startswith("l2:")
    assert roles.columns[roles.natural] == "natural" and set(roles.columns.values()) <= set(TABLE7_COLUMNS)
    if roles.analogue:
        assert roles.columns[roles.analogue] == "l2_eps3"


def test_the_paper_and_demo_presets_name_their_table7_sources() -> None:
    assert get_preset("paper").roles().columns == {"natural": "natural", "l2_3": "l2_eps3", "linf_4": "linf_eps4_255",
                                                   "linf_8": "linf_eps8_255"}
    demo = get_preset("demo")
    assert demo.roles().columns == {"natural": "natural", demo.analogue: "l2_eps3", "linf_4": "linf_eps4_255",
                                    "linf_8": "linf_eps8_255"}
    assert demo.analogue == "l2_0.22" and demo.source("linf_4").constraint == "linf:4/255"
    assert demo.source("linf_8").constraint == "linf:8/255"


@pytest.mark.parametrize(("table7", "message"), [
    ((("linf_9", "linf_eps4_255"),), "not a source of the preset"),
    ((("linf_4", "l2_eps9"),), "unknown Table 7 column"),
    ((("linf_4", "l2_eps3"),), "each Table 7 column is played by one source"),  # the analogue's column
    ((("linf_4", "linf_eps4_255"), ("linf_8", "linf_eps4_255")), "each Table 7 column"),
])
def test_a_wrong_role_in_a_preset_is_one_clear_line(table7: tuple, message: str) -> None:
    names = ("natural", "l2_0.22", "linf_4", "linf_8")
    with pytest.raises(RtxError, match=message) as err:
        SourceRoles.declared("natural", "l2_0.22", table7, names)
    assert "\n" not in str(err.value)


def test_the_zoo_natural_source_l2_0_is_drawn_in_the_natural_grey(tmp_path: Path) -> None:
    """The zoo's natural source is `l2_0`: a name-prefix check drew it as one more robust colour."""
    zoo = get_preset("zoo")
    roles = _recorded(tmp_path, zoo)
    assert roles.recorded and roles.natural == "l2_0" and roles.analogue == "l2_3"
    frame = with_roles(_summary(["l2_0", "l2_3", "linf_4", "l2_0.5"]), roles)
    colours = _colours(charts.accuracy_vs_size(frame).to_dict())
    assert colours["l2_0"] == charts.NATURAL_COLOUR
    assert [s for s, c in colours.items() if c == charts.NATURAL_COLOUR] == ["l2_0"]
    assert spectra.model_groups(roles, ["l2_0", "l2_3"]) == {"l2_0": NATURAL_ROLE, "l2_3": "robust"}


def test_a_source_named_like_natural_is_not_natural() -> None:
    """Guards against a name-prefix check coming back: the recorded role (or kind) decides, never the name."""
    rows = [SourceFacts("natural_like_robust", "pgd", "l2", 0.5, 3, {}), SourceFacts("plain", "natural", None, None, 0, {}),
            SourceFacts("natural", "pgd", "l2", 3.0, 3, {})]  # even one called exactly 'natural'
    derived = derive_roles(rows)
    assert derived.natural == "plain" and derived.analogue == "natural" and not derived.recorded
    frame = with_roles(_summary(["natural_like_robust", "plain", "natural"]), derived)
    colours = _colours(charts.accuracy_vs_size(frame).to_dict())
    assert colours["plain"] == charts.NATURAL_COLOUR
    assert colours["natural_like_robust"] != charts.NATURAL_COLOUR and colours["natural"] != charts.NATURAL_COLOUR
    assert charts.palette(["natural", "natural_like_robust"]).to_dict()["range"].count(charts.NATURAL_COLOUR) == 0
    recorded = SourceRoles.declared("plain", "natural_like_robust", (), ["plain", "natural_like_robust"])
    assert recorded.role_of("natural_like_robust") == ANALOGUE_ROLE and recorded.naturals == {"plain"}


def test_paper_vs_here_and_the_analogue_readers_name_the_same_demo_source(tmp_path: Path) -> None:
    """The demo's 'l2_eps3' was `l2_1.5` (L2 eps nearest 3) while the preset, the Influence page and the upload demo
    named `l2_0.22`: now all read the one recorded role."""
    demo = get_preset("demo")
    roles = _recorded(tmp_path, demo)
    sources = CacheReader(tmp_path)
    try:
        frame = sources.source_models()
    finally:
        sources.close()
    compared = paper.comparison(_summary(["natural", "l2_0.22", "l2_1.5", "linf_4", "linf_8"]), frame, roles, 3)
    here = compared.dropna(subset=["here_acc"]).drop_duplicates("model").set_index("model")["source"]
    assert here.to_dict() == {"natural": "natural", "l2_eps3": "l2_0.22", "linf_eps4_255": "linf_4",
                              "linf_eps8_255": "linf_8"}
    assert here["l2_eps3"] == roles.analogue == demo.analogue  # "Paper vs here" = the explorer's analogue reader
    # the influence stage labels its results with the same decision (compute.stages.influence: preset.roles())
    assert demo.roles().role_of(here["l2_eps3"]) == ANALOGUE_ROLE
    assert {s for s in demo.influence.sources if demo.roles().role_of(s) == ANALOGUE_ROLE} == {roles.analogue}


def test_recording_another_preset_replaces_the_roles(tmp_path: Path) -> None:
    _recorded(tmp_path, get_preset("demo"))
    roles = _recorded(tmp_path, get_preset("tiny"))  # tiny's sources share names with the demo's
    assert roles.columns == {"natural": "natural", "l2_1.5": "l2_eps3"}  # the demo's Linf columns are cleared
    reader = CacheReader(tmp_path)
    metas = reader.source_models().set_index("name")["meta"]
    reader.close()
    assert sum(ANALOGUE_ROLE in str(m) for m in metas) == 1 and "table7" not in str(metas["linf_4"])


def test_an_older_cache_without_recorded_roles_derives_them_once(tmp_path: Path) -> None:
    root = write_explorer_cache(tmp_path / "cache")  # written as before: no roles in any source's meta
    reader = CacheReader(root)
    roles = reader.source_roles()
    reader.close()
    assert not roles.recorded and roles.natural == "natural" and roles.analogue == "l2_1.5"
    assert roles.columns == {"natural": "natural", "l2_1.5": "l2_eps3", "linf_0.1": "linf_eps4_255",
                             "linf_0.2": "linf_eps8_255"}
    with CacheWriter(root) as writer:  # what an earlier sources stage recorded: the analogue's mark only
        writer.con.execute("UPDATE source_models SET meta = json_merge_patch(coalesce(meta, '{}'), ?) "
                           "WHERE name = 'linf_0.1'", [f'{{"role": "{ANALOGUE_ROLE}"}}'])
        writer.publish(force=True)
    reader = CacheReader(root)
    marked = reader.source_roles()
    reader.close()
    assert not marked.recorded and marked.analogue == "linf_0.1" and marked.columns["linf_0.1"] == "l2_eps3"
    assert marked.columns == {"natural": "natural", "linf_0.1": "l2_eps3", "linf_0.2": "linf_eps4_255"}


def test_the_explorer_pages_read_roles_from_an_older_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st

    from app import data

    monkeypatch.setenv("RTX_CACHE", str(write_explorer_cache(tmp_path / "cache")))
    st.cache_data.clear()
    st.cache_resource.clear()
    snap = data.snapshot()
    assert data.natural_source(snap) == "natural" and data.analogue_source(snap) == "l2_1.5"
    assert data.headline_robust(snap) == "l2_1.5"
    summary = data.final_summary(snap)
    assert set(summary.loc[summary["role"] == NATURAL_ROLE, "source"]) == {"natural"}
    st.cache_resource.clear()
