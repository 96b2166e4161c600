"""compute.run_label: the label the pages show a fine-tune by, formatted and parsed back by one module."""

from __future__ import annotations

import pytest

from app.pairing import InfluenceCell
from compute.errors import RtxError
from compute.run_label import RunLabel, looks_like_label, subset_label


@pytest.mark.parametrize("label", [RunLabel("l2_0.22", "mnist5k", 400, 0, 3),
                                   RunLabel("linf_8/255", "mnist5k+lowpass(400)", 20, 20000000, 1),
                                   RunLabel("natural", "folder:/data/my set", None, 5, 4)])
def test_a_label_parses_back_to_itself(label: RunLabel) -> None:
    assert RunLabel.parse(str(label)) == label
    assert looks_like_label(str(label))


def test_the_pages_subset_label_is_the_runs() -> None:
    cell = InfluenceCell("mnist5k", 400, 7, 3, "fast", 0.05, (("l2_0.22", "k1"), ("natural", "k2")), "natural",
                         (("l2_0.22", "paper analogue, best budget", "why"),))
    assert cell.subset_label == subset_label("mnist5k", 400, 7, 3) == "mnist5k · 400 images · seed 7 · 3 blocks"
    expected = RunLabel("l2_0.22", "mnist5k", 400, 7, 3)
    # the model as the Influence page names it (role included) and the demo's cell label (method included)
    assert RunLabel.parse(f"{cell.name('l2_0.22')} · {cell.subset_label}") == expected
    assert RunLabel.parse(f"l2_0.22 · {cell.label}") == expected
    assert RunLabel.parse("  l2_0.22·mnist5k ·400 images· seed 7 · 3 blocks ") == expected  # spacing as typed


@pytest.mark.parametrize("text", ["l2_0.22 · mnist5k · 400 images · seed 7",  # no blocks
                                  "mnist5k · 400 images · seed 7 · 3 blocks",  # no source
                                  "l2 · mnist5k · many images · seed 7 · 3 blocks",
                                  " · mnist5k · 4 images · seed 7 · 3 blocks"])
def test_anything_else_is_one_line_with_the_format(text: str) -> None:
    expected = r"not a run label; expected 'SOURCE · TARGET · N images · seed S · B blocks'"
    with pytest.raises(RtxError, match=expected):
        RunLabel.parse(text)


def test_run_keys_are_not_labels() -> None:
    assert not looks_like_label("finetune-0123456789abcdef")


def test_progress_bars_name_runs_by_the_same_parts() -> None:
    """One run's bar (compute.sweep) names its seed; the engine's bar over siblings (runs that differ only in the
    seed) names their number instead; a run on the whole split says n=all, as the pages' 'all images'."""
    from compute.finetune import FinetuneConfig

    cfg = FinetuneConfig(source="l2_0.22", source_checksum="c", target="mnist5k", n_train=400, seed=7, blocks=3,
                         epochs=1, test_every=1)
    assert RunLabel.of(cfg) == RunLabel("l2_0.22", "mnist5k", 400, 7, 3)
    assert RunLabel.of(cfg).progress() == "  l2_0.22 -> mnist5k n=400 seed=7 k=3"
    assert RunLabel.of(cfg).progress(8) == "  l2_0.22 -> mnist5k n=400 k=3 x8"
    assert RunLabel("natural", "digits", None, 0, 1).progress() == "  natural -> digits n=all seed=0 k=1"
