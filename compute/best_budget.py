"""Which robust budget transferred best on the influence target, and its fine-tune with weights.

Issue 14 asks the influence comparison for three models: natural, the paper's analogue, and the budget that
transferred best on that target *according to the cache's own results*. "Best" is the robust source with the
highest mean robust-minus-natural final test accuracy (paired by seed) at the influence spec's target and blocks,
at its subset size or, when that size has no results, the nearest size that has. The influence stage needs that
source's fine-tune of the spec's exact subset and seed with kept weights; the budget ladder's runs keep none, so
`ensure_run` fine-tunes that one config again (same key, same seed: the same subset) with weights kept and records
the re-run (on the demo cache `l2_1`'s accuracy moved from 0.899 to 0.901: float rounding, not a new subset).

The choice is made on an interval (issue 24): the highest mean is the candidate, and every other robust source whose
difference from it (paired by seed: `delta_summary(best)`) has a 95% interval reaching zero is *tied* with it. A
tie is said in the note, and the influence stage still compares the highest mean (one model has to be shown).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from compute.cache import CacheWriter
from compute.finetune import finetune
from compute.intervals import basis, describe, from_summary, tied
from compute.presets import InfluenceSpec, Preset
from compute.records import KeptRun
from compute.replicas import family_of
from compute.stages.finetune import record_finetune
from compute.sweep import SourceLoader, plan


@dataclass(frozen=True)
class BestBudget:
    """The robust source with the highest mean robust-minus-natural accuracy in one (target, size, blocks) cell."""

    source: str
    delta: float  # mean over seeds of robust minus natural final test accuracy (fraction)
    lo: float  # its 95% t-interval
    hi: float
    n_seeds: int
    target: str
    n_train: int  # the subset size the delta was measured at (the spec's, or the nearest with results)
    blocks: int
    tied: tuple[str, ...] = ()  # robust sources not distinguishable from this one (`ties`)
    over: str = "seeds"  # what the interval is over (compute.intervals.basis): seeds, or seeds and retraining

    @property
    def chosen_from(self) -> str:
        return f"{self.target} n={self.n_train} blocks={self.blocks}"

    @property
    def note(self) -> str:
        """One line for the page: why this source is the best budget, its interval against natural, and any tie."""
        versus = describe(from_summary(self.delta, self.lo, self.hi, self.n_seeds), "ahead of natural",
                          "behind natural", what=self.over)
        tie = (f"; a tie with {', '.join(self.tied)} (their paired differences from it have 95% intervals that "
               "reach zero)" if self.tied else "; no other budget ties with it (every paired difference from it "
               "has a 95% interval below zero)")
        return (f"the highest mean robust-minus-natural final accuracy on {self.chosen_from}: {versus}{tie}")

    def meta(self) -> dict[str, Any]:
        return {"delta": self.delta, "lo": self.lo, "hi": self.hi, "n_seeds": self.n_seeds,
                "chosen_from": self.chosen_from, "tied": list(self.tied)}


def choose(deltas: pd.DataFrame, target: str, n_train: int, blocks: int) -> BestBudget | None:
    """The best source in `deltas` (`delta_summary(natural)` rows) at (target, blocks) and the size nearest
    `n_train` that has results (ties: the larger size); None when the cache has no robust result there."""
    if deltas.empty:
        return None
    cell = deltas[(deltas["target"] == target) & (deltas["blocks"] == blocks) & deltas["n_train"].notna()]
    if cell.empty:
        return None
    sizes = sorted({int(n) for n in cell["n_train"]}, key=lambda n: (abs(n - n_train), -n))
    at = cell[cell["n_train"] == sizes[0]].sort_values(["mean", "source"], ascending=[False, True], kind="stable")
    row = at.iloc[0]
    lo, hi = (float(row[c]) if pd.notna(row[c]) else float(row["mean"]) for c in ("lo", "hi"))
    return BestBudget(str(row["source"]), float(row["mean"]), lo, hi, int(row["n_seeds"]), target, sizes[0], blocks,
                      over=basis(row))


def ties(best: BestBudget, deltas: pd.DataFrame, versus_best: pd.DataFrame) -> tuple[str, ...]:
    """The robust sources of `best`'s cell in `deltas` whose difference from `best` (`versus_best`: the
    `delta_summary(best.source)` rows, paired by seed) has a 95% interval reaching zero, or no interval."""
    def cell(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty:
            return frame
        return frame[(frame["target"] == best.target) & (frame["n_train"] == best.n_train)
                     & (frame["blocks"] == best.blocks)]
    return tied(cell(versus_best), set(cell(deltas)["source"]) - {best.source})


def find(writer: CacheWriter, spec: InfluenceSpec, natural: str) -> BestBudget | None:
    """`choose` over the cache's seed-paired deltas against `natural`, with the sources tied with it."""
    deltas = writer.delta_summary(natural)
    best = choose(deltas, spec.target, spec.n_train, spec.blocks)
    if best is None:
        return None
    return replace(best, tied=ties(best, deltas, writer.delta_summary(best.source)))


def ensure_run(preset: Preset, writer: CacheWriter, spec: InfluenceSpec, source: str,
               device: str | None = None, data_root: str | None = None,
               skip_bad_images: bool = False) -> tuple[KeptRun | None, str]:
    """The done run of `source` on the spec's subset with kept weights, fine-tuning it when the cache has it
    without weights or not at all; (None, why) when the preset plans no such fine-tune."""
    kept = writer.kept_by_source(spec.target, spec.n_train, spec.seed, spec.blocks).get(source)
    if kept is not None:
        return kept, "cached"
    configs = [c for c in plan(preset, writer.source_checksums())
               if (family_of(c.source), c.target, c.n_train, c.seed, c.blocks)
               == (source, spec.target, spec.n_train, spec.seed, spec.blocks)]
    if not configs:
        return None, (f"the preset plans no fine-tune of {source} on {spec.target} n={spec.n_train} "
                      f"seed={spec.seed} blocks={spec.blocks}")
    cfg = configs[0]
    result = finetune(SourceLoader(writer)(cfg.source), cfg, keep_model=True, device=device, data_root=data_root,
                      skip_bad_images=skip_bad_images)
    record_finetune(writer, cfg, result)
    return writer.done_run(cfg.key), ("fine-tuned again with its weights kept; the run's recorded accuracy is now "
                                      f"the re-run's ({result.final_test_acc:.4f}: the sweep's prefix cache and "
                                      "worker processes round differently, by a few test images at most)")


__all__ = ["BestBudget", "choose", "ensure_run", "find", "ties"]
