"""How a fine-tuned run is named to people, both ways: `RunLabel` formats it and `RunLabel.parse` reads it back.

The explorer's Influence page and the demo name a fine-tune by its source and its subset,
'l2_0.22 · mnist5k · 400 images · seed 0 · 3 blocks'; the subset part ('mnist5k · 400 images · seed 0 ·
3 blocks') is `subset_label`, the one function app/pairing.py labels its comparison groups with. `rtx influence --run`
takes the same text, so
what a page shows can be pasted back. Parsing is lenient where the pages add words: a role after the source
('l2_0.22 · paper analogue · mnist5k · ...', as the Influence page names a model) and a method after the blocks
('... · 3 blocks · fast, cut-off 0.05', as the demo's cell label ends) are accepted and ignored: they name an
influence result of the run, not another run. The progress bars of a sweep (compute.sweep, compute.engine) name
their runs by `RunLabel.progress`, a short form of the same parts. Torch-free: the app imports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from compute.errors import RtxError

SEP = " · "  # between the parts of every label the pages show (app/pairing.py)
ALL_IMAGES = "all"  # a run fine-tuned on the whole training split (n_train None) says 'all images'
_IMAGES = re.compile(r"^(\d+|all) images?$")
_SEED = re.compile(r"^seed (\d+)$")
_BLOCKS = re.compile(r"^(\d+) blocks?$")
FORMAT = "SOURCE · TARGET · N images · seed S · B blocks"


def subset_label(target: str, subset_size: int | None, seed: int, blocks: int) -> str:
    """'mnist5k · 400 images · seed 0 · 3 blocks': which training images a run saw, and how deep it was tuned."""
    size = ALL_IMAGES if subset_size is None else subset_size
    return SEP.join((target, f"{size} images", f"seed {seed}", f"{blocks} blocks"))


class NamedRun(Protocol):
    """What a label is made of: a FinetuneConfig, a RunRecord or anything else with these fields."""

    source: str
    target: str
    n_train: int | None
    seed: int
    blocks: int


@dataclass(frozen=True)
class RunLabel:
    """What names a fine-tune to a person: its source and its subset (target, size, seed, blocks)."""

    source: str
    target: str
    n_train: int | None  # None: the whole training split
    seed: int
    blocks: int

    def __str__(self) -> str:
        return f"{self.source}{SEP}{subset_label(self.target, self.n_train, self.seed, self.blocks)}"

    @classmethod
    def of(cls, run: NamedRun) -> RunLabel:
        """The label of a run's config or record."""
        return cls(run.source, run.target, run.n_train, run.seed, run.blocks)

    def progress(self, siblings: int = 1) -> str:
        """A progress bar's short label, indented under the sweep's bar: '  natural -> mnist5k n=400 seed=0 k=3'
        for one run; '  natural -> mnist5k n=400 k=3 x8' for `siblings` runs trained together that differ only in
        the seed (compute.engine)."""
        size = ALL_IMAGES if self.n_train is None else self.n_train
        runs = f" seed={self.seed}" if siblings == 1 else ""
        return f"  {self.source} -> {self.target} n={size}{runs} k={self.blocks}" + (f" x{siblings}" if siblings > 1 else "")

    @classmethod
    def parse(cls, text: str) -> RunLabel:
        """The label a page shows (see the module docstring for the words it may carry) -> `RunLabel`; anything
        else raises one line saying the format."""
        parts = [p.strip() for p in re.split(r"\s*·\s*", text.strip())]
        for i in range(1, len(parts) - 3):  # parts[i:i + 4] = target, size, seed, blocks
            size, seed, blocks = (pattern.match(part) for pattern, part in
                                  zip((_IMAGES, _SEED, _BLOCKS), parts[i + 1:i + 4], strict=True))
            if size and seed and blocks and parts[0] and parts[i]:
                n = None if size[1] == ALL_IMAGES else int(size[1])
                return cls(parts[0], parts[i], n, int(seed[1]), int(blocks[1]))
        raise RtxError(f"{text!r} is not a run label; expected '{FORMAT}', e.g. "
                       f"'{cls('l2_0.22', 'mnist5k', 400, 0, 3)}'")


def looks_like_label(text: str) -> bool:
    """True for text with the labels' separator: a run key never holds one (compute.paths.job_key)."""
    return "·" in text


__all__ = ["FORMAT", "SEP", "NamedRun", "RunLabel", "looks_like_label", "subset_label"]
