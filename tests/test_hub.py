"""hf://OWNER/REPO/FILE checkpoints: read from a hub cache laid out here, offline (HF_HUB_OFFLINE=1), no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compute.errors import RtxError
from compute.models import build_model
from compute.models.hub import parse_hub_uri, resolve_checkpoint
from compute.paths import sidecar_path
from compute.train_source import import_source

REPO, REVISION = "madrylab/robust-imagenet-models", "3f04ac96136001cfe402022100728124cbe3fac5"
URI = f"hf://{REPO}/resnet50_l2_eps3.ckpt"


def _hub_cache(root: Path, files: dict[str, bytes]) -> Path:
    """huggingface_hub's cache layout: models--OWNER--NAME/{refs/main, snapshots/<rev>/FILE}."""
    repo = root / ("models--" + REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_cached_file_resolves_to_its_snapshot(offline_hub: Path) -> None:
    snapshot = _hub_cache(offline_hub, {"resnet50_l2_eps3.ckpt": b"weights"})
    path = resolve_checkpoint(URI)
    assert path == snapshot / "resnet50_l2_eps3.ckpt" and path.read_bytes() == b"weights"


def test_hf_home_is_honoured_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    snapshot = _hub_cache(tmp_path / "home" / "hub", {"resnet50_l2_eps3.ckpt": b"w"})
    assert resolve_checkpoint(URI) == snapshot / "resnet50_l2_eps3.ckpt"


def test_missing_file_offline_is_one_line_naming_it_and_the_fix(offline_hub: Path) -> None:
    _hub_cache(offline_hub, {"resnet50_l2_eps3.ckpt": b"weights"})
    with pytest.raises(RtxError) as err:
        resolve_checkpoint(f"hf://{REPO}/resnet50_l2_eps5.ckpt")
    text = str(err.value)
    assert "\n" not in text
    assert f"hf download {REPO} resnet50_l2_eps5.ckpt" in text and "unset HF_HUB_OFFLINE" in text
    assert str(offline_hub) in text


def test_empty_cache_offline_fails_the_same_way(offline_hub: Path) -> None:
    with pytest.raises(RtxError, match=r"not in the local hub cache .*HF_HUB_OFFLINE=1"):
        resolve_checkpoint(URI)


@pytest.mark.parametrize("uri", ["hf://madrylab", "hf://madrylab/robust-imagenet-models", "hf://a//b.ckpt"])
def test_short_addresses_show_the_form(uri: str) -> None:
    with pytest.raises(RtxError, match="write hf://OWNER/REPO/FILE"):
        parse_hub_uri(uri)


def test_file_paths_inside_the_repository_keep_their_folders() -> None:
    hub = parse_hub_uri("hf://owner/repo/sub/dir/model.pt")
    assert (hub.repo_id, hub.filename, hub.uri) == ("owner/repo", "sub/dir/model.pt", "hf://owner/repo/sub/dir/model.pt")


def test_local_paths_pass_through(tmp_path: Path) -> None:
    assert resolve_checkpoint("model.pt", tmp_path) == tmp_path / "model.pt"
    assert resolve_checkpoint(tmp_path / "a.pt", "/elsewhere") == tmp_path / "a.pt"
    assert resolve_checkpoint("rel/a.pt") == Path("rel/a.pt")


def test_import_source_from_the_hub_cache(offline_hub: Path, tmp_path: Path) -> None:
    """The CLI's import-source path: a MadryLab-format file in the hub cache becomes a source in our cache."""
    net = build_model("small_resnet", 10, seed=3).net.eval()
    state = {f"module.model.{k}": v for k, v in net.state_dict().items()}
    buffer = tmp_path / "tmp.ckpt"
    torch.save({"model": state, "epoch": 1}, buffer)
    _hub_cache(offline_hub, {"resnet50_l2_eps3.ckpt": buffer.read_bytes()})
    row = import_source(URI, "zoo_l2_3", None, "l2:3", 3, "imagenet", tmp_path / "cache")
    assert row.arch == "small_resnet" and (tmp_path / "cache" / row.path).is_file()
    assert row.meta["imported_from"] == URI  # the address, not the cache's blob path
    assert json.loads(sidecar_path(tmp_path / "cache" / row.path).read_text())["format"] == "madry"
