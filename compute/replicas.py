"""Source replicas: one source trained again with other seeds, so intervals can cover training the source too.

Why: a source is one draw of its training (initialisation, data order, attack noise). With one draw per source, a
robust-minus-natural interval covers the fine-tuning seeds only, and another machine, whose float32 kernels retrain
every source with other last bits, lands outside it far more often than 5% of the time (issue 24: 23 of 33 cells).
A preset names the sources to train `replicas` times (`Preset.source_replicas`); replica k > 0 is the source
`NAME#sK`, trained with source seed `k * SOURCE_SEED_STEP`, and replica 0 is the source itself (so caches and run
keys of unreplicated presets stay as they were). A fine-tuning seed starts from one replica (`replica_for_seed`,
round robin over the paper's seed order), and the `runs` table records the family name: every page groups runs by
family, the replica a run started from stays in its config. `compute.intervals.source_spread` estimates how much
accuracy moves between replicas, and the pages' intervals include it. Torch-free: the app imports it.
"""

from __future__ import annotations

REPLICA_MARK = "#s"
SOURCE_SEED_STEP = 1_000  # replica k trains with seed k * 1000: streams far from replica 0's seeds 0 and 1
# The paper's seeds S_k = {BASE + STEP * i} (paper_facts.md; compute.data.sampler.paper_seeds draws them).
PAPER_SEED_BASE, PAPER_SEED_STEP = 20_000_000, 100_000


def replica_name(family: str, k: int) -> str:
    """The source name of replica `k` of `family` (`family` itself for k = 0)."""
    return family if k == 0 else f"{family}{REPLICA_MARK}{k}"


def family_of(name: str) -> str:
    """The source a replica name belongs to ('natural#s2' -> 'natural'; any other name is its own family)."""
    return name.split(REPLICA_MARK, 1)[0]


def replica_index(name: str) -> int:
    """k of a replica name (0 for the family's own source)."""
    _, _, k = name.partition(REPLICA_MARK)
    return int(k) if k.isdigit() else 0


def replica_for_seed(seed: int, replicas: int) -> int:
    """Which replica a fine-tuning seed starts from: round robin over the paper's seeds in their order (S_5's five
    seeds use replicas 0, 1, 2, 0, 1 of three), so every prefix of the paper's seeds is spread as evenly as it can
    be; any other seed by its value modulo `replicas`."""
    if replicas <= 1:
        return 0
    offset = seed - PAPER_SEED_BASE
    index = offset // PAPER_SEED_STEP if offset >= 0 and offset % PAPER_SEED_STEP == 0 else seed
    return index % replicas


__all__ = ["PAPER_SEED_BASE", "PAPER_SEED_STEP", "REPLICA_MARK", "SOURCE_SEED_STEP", "family_of", "replica_for_seed", "replica_index", "replica_name"]
