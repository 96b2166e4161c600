"""Source training: the schedule, keys, resume after interruption, checkpoint sources, and the tiny preset
end to end through the CLI (robust keeps more PGD accuracy than natural)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from compute.cache import CacheReader, CacheWriter
from compute.cli import main
from compute.errors import RtxError
from compute.models import build_model, load_checkpoint
from compute.paths import cache_dir, file_checksum
from compute.presets import Preset, SourceSpec, get_preset
from compute.stages.sources import sources_stage
from compute.train_source import lr_at, source_key, train_source

SMALL = SourceSpec("s", "small_resnet", "l2:1.5", 1, "fmnist", epochs=2, train_size=384)


def test_lr_decays_tenfold_at_one_and_two_thirds_of_the_steps() -> None:
    lrs = [lr_at(step, 9, 0.1) for step in range(9)]
    assert lrs == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001] * 3)


def test_source_key_depends_on_what_determines_the_weights() -> None:
    assert source_key(SMALL) == source_key(replace(SMALL, name="other", note="a note"))
    for change in ({"epochs": 3}, {"constraint": "l2:1.0"}, {"attack_steps": 3}, {"train_size": 512},
                   {"lr": 0.05}, {"dataset": "mnist5k"}):
        assert source_key(replace(SMALL, **change)) != source_key(SMALL), change
    assert source_key(SMALL).startswith("source-")


def test_pgd_source_without_steps_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RtxError, match="steps"):
        train_source(replace(SMALL, attack_steps=0), tmp_path, progress=False)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    whole = train_source(SMALL, tmp_path / "a", progress=False)

    def stop_after_first(epoch: int, epochs: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_source(SMALL, tmp_path / "b", progress=False, on_epoch=stop_after_first)
    assert list((tmp_path / "b" / "sources").glob("*.resume.safetensors"))
    epochs_run: list[int] = []
    resumed = train_source(SMALL, tmp_path / "b", progress=False, on_epoch=lambda e, n: epochs_run.append(e))
    assert epochs_run == [2]  # epoch 1 came from the resume file
    assert resumed.checksum == whole.checksum  # bit-identical weights
    assert not list((tmp_path / "b" / "sources").glob("*.resume.safetensors"))
    assert len(resumed.meta["history"]) == 2
    assert resumed.path == whole.path and not Path(resumed.path).is_absolute()
    assert file_checksum(tmp_path / "b" / resumed.path) == resumed.checksum


def test_sources_trained_in_worker_processes_equal_those_trained_here(tmp_path: Path) -> None:
    specs = (SMALL, replace(SMALL, name="n", constraint="none", attack_steps=0))
    preset = Preset("p", "test", specs, (), natural="n")
    with CacheWriter(cache_dir(tmp_path / "workers")) as writer:
        sources_stage(preset, writer, progress=False, workers=2)
        parallel = {s.name: writer.source_row(s.name).checksum for s in specs}
    # Workers run one torch thread (compute.workers) with torch's default oneDNN setting; so does this process
    # here, whatever the suite's settings (`make test`'s kernel-path pass uses two threads and no oneDNN): same
    # machine, same kernels, same reduction order -> the same bits. Two processes of one machine, never two machines.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.backends.mkldnn.flags(enabled=True):
            here = {s.name: train_source(s, tmp_path / "here", progress=False).checksum for s in specs}
    finally:
        torch.set_num_threads(threads)
    assert parallel == here


def test_checkpoint_source_is_loaded_from_the_given_folder(tmp_path: Path) -> None:
    spec = SourceSpec("ext", "small_resnet", "l2:3", 20, "imagenet", checkpoint="ext_net.pth")
    preset = Preset("p", "test", (spec,), (), natural="ext")
    with CacheWriter(cache_dir(tmp_path / "cache")) as writer:
        with pytest.raises(RtxError) as err:
            sources_stage(preset, writer, progress=False, checkpoint_dir=tmp_path / "ckpts")
        message = str(err.value)
        assert "ext_net.pth" in message and str(tmp_path / "ckpts") in message and "--checkpoint-dir" in message
        assert "\n" not in message
        net = build_model("small_resnet", 10, seed=5).net.eval()
        (tmp_path / "ckpts").mkdir()
        torch.save(net.state_dict(), tmp_path / "ckpts" / "ext_net.pth")
        sources_stage(preset, writer, progress=False, checkpoint_dir=tmp_path / "ckpts")
        row = writer.source_row("ext")
        model = load_checkpoint(writer.root / row.path)[0]
    assert (row.constraint, row.attack_steps) == ("l2:3", 20)
    assert row.clean_acc is None  # no ImageNet offline: not measured
    assert row.meta["checkpoint"] == "ext_net.pth"
    x = torch.rand(2, 3, 28, 28)
    with torch.no_grad():
        expected = net((x - model.normalize.mean) / model.normalize.std)
        assert torch.allclose(model(x), expected, atol=1e-5)


@pytest.mark.numerics  # a float32 training outcome: must hold on other kernel paths too (conftest)
def test_tiny_preset_end_to_end_robust_beats_natural(tmp_path: Path, monkeypatch, capsys) -> None:
    """`rtx train-source --preset tiny` then `rtx eval-robustness`: recorded, skipped on re-run, and the L2
    model keeps clearly more PGD(3) accuracy at eps 1.5 than the natural one."""
    root = tmp_path / "cache"
    monkeypatch.setenv("RTX_CACHE", str(root))
    assert main(["--cache", str(root), "train-source", "--preset", "tiny", "--no-progress"]) == 0
    assert main(["--cache", str(root), "eval-robustness", "--preset", "tiny", "--no-progress"]) == 0
    reader = CacheReader(root)
    sources = reader.source_models().set_index("name")
    assert set(sources.index) == {s.name for s in get_preset("tiny").sources}
    for name, row in sources.iterrows():
        assert file_checksum(root / row.path) == row.checksum, name
        assert row["clean_acc"] > 0.4, name  # 16 SGD steps already learn Fashion-MNIST's easy classes
    rob = reader.robustness().set_index(["source", "norm"])
    reader.close()
    assert len(rob) == 4 and set(rob["n_images"]) == {1000} and set(rob["dataset"]) == {"fmnist"}
    natural, robust = rob.loc[("natural", "l2"), "accuracy"], rob.loc[("l2_1.5", "l2"), "accuracy"]
    # Scored with BatchNorm in eval mode throughout (see tests/test_regression_tiny.py): 0.148 vs 0.078 in the
    # fixtures. The earlier margin of 0.08 was calibrated on the old evaluation (0.263 vs 0.107), which scored
    # attacked batches in train mode; the corrected gap is 0.07, about twice the natural model's accuracy.
    assert robust > natural + 0.05 and robust > 1.5 * natural, (robust, natural)
    assert rob.loc[("natural", "none"), "eps"] == 0.0 and rob.loc[("l2_1.5", "l2"), "steps"] == 3

    # Re-runs are no-ops: same weights, no new robustness rows.
    mtimes = {n: (root / r["path"]).stat().st_mtime_ns for n, r in sources.iterrows()}
    capsys.readouterr()
    assert main(["--cache", str(root), "train-source", "--preset", "tiny", "--no-progress"]) == 0
    assert main(["--cache", str(root), "eval-robustness", "--preset", "tiny", "--no-progress"]) == 0
    assert "0 robustness rows recorded" in capsys.readouterr().out
    assert {n: (root / r["path"]).stat().st_mtime_ns for n, r in sources.iterrows()} == mtimes

    # A custom eps list adds rows without redoing the others.
    assert main(["--cache", str(root), "eval-robustness", "--preset", "tiny", "--eps", "linf:0.1",
                 "--sources", "natural", "--no-progress"]) == 0
    assert "1 robustness rows recorded" in capsys.readouterr().out


def test_custom_source_from_the_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RTX_CACHE", str(tmp_path))
    args = ["--cache", str(tmp_path), "train-source", "--name", "g", "--constraint", "gaussian:0.1", "--steps", "0",
            "--epochs", "1", "--train-size", "256", "--no-progress"]
    assert main(args) == 0
    assert "g: clean accuracy" in capsys.readouterr().out
    with CacheWriter(tmp_path) as writer:
        row = writer.source_row("g")
    assert (row.arch, row.constraint, row.source_dataset) == ("small_resnet", "gaussian:0.1", "fmnist")
    assert main(args) == 0
    assert "already in the cache" in capsys.readouterr().out
    assert main([*args[:-1], "--constraint", "linf:lots", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read constraint 'linf:lots'" in err[0]
