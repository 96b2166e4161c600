"""The stage registry: one module per stage under compute/stages/, one signature, run in registry order."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import compute.stages as stages
from compute.errors import RtxError
from compute.presets import get_preset
from compute.settings import Settings


def test_every_stage_module_is_registered_with_one_signature() -> None:
    modules = {m.name for m in pkgutil.iter_modules(stages.__path__)}
    assert modules == set(stages.stage_names())
    for name in stages.stage_names():
        run = importlib.import_module(f"compute.stages.{name}").run
        assert stages.get_stage(name).run is run
        assert list(inspect.signature(run).parameters) == ["preset", "writer", "settings"], name


def test_unknown_stage_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(RtxError, match="unknown stage 'tumbnails'.*thumbnails"):
        stages.precompute(get_preset("tiny"), tmp_path, Settings(progress=False), ["tumbnails"])
    assert not list(tmp_path.iterdir())  # the cache was not even opened


def test_stages_run_in_registry_order_whatever_order_they_are_named(tmp_path: Path, monkeypatch) -> None:
    ran = []
    for name in stages.stage_names():
        stage = stages.STAGES[name]
        monkeypatch.setitem(stages.STAGES, name, stages.Stage(name, lambda p, w, s, n=name: ran.append(n), stage.help))
    stages.precompute(get_preset("tiny"), tmp_path, Settings(progress=False), ["featviz", "sources", "finetune"])
    assert ran == ["sources", "finetune", "featviz"]
