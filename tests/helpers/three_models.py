"""A third model in the demo cache's influence cell: what the influence stage leaves when the best budget is not
the paper analogue (issue 14).

The tiny preset has one robust source, so its cell holds two models ('paper analogue, best budget' and natural).
`add_best_budget` records the natural fine-tune again under a robust source's name (a run and an influence
result sharing the natural model and query files, new keys) and re-records the roles: `l2_1.5` the paper
analogue only, the copy the best budget with a reason. Its answers must therefore equal the natural model's: a
check that each column is computed from its own influence result.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from compute.cache import CacheReader, CacheWriter
from compute.paths import job_key
from compute.roles import ANALOGUE_ROLE, BEST_ROLE, NATURAL_ROLE

BEST_SOURCE = "linf_best"  # the copy's source name
BEST_NOTE = "the highest mean robust-minus-natural final accuracy on digits n=40 blocks=1: +4.0 points (synthetic)"


def add_best_budget(root: Path, analogue: str = "l2_1.5", natural: str = "natural") -> None:
    """Add `BEST_SOURCE` (a copy of `natural`'s fine-tune and influence) to the cell and record the three roles."""
    reader = CacheReader(root)
    try:
        results = reader.influence_results().set_index("source")
        row = reader.influence(results.at[natural, "key"])
        run = reader.run(row.run_key)
        topk = reader.influence_topk(row.key).assign(influence_key=None)
    finally:
        reader.close()
    run_key = job_key("finetune", {"copy_of": run.key, "source": BEST_SOURCE})
    key = job_key("influence", {"run": run_key})
    with CacheWriter(root) as writer:
        # the copy's config is empty, as before reads returned records (the fields below were all it copied)
        writer.record_run(replace(run, key=run_key, source=BEST_SOURCE, config={}), [])
        writer.record_influence(replace(row, key=key, run_key=run_key),
                                topk.assign(influence_key=key)[["influence_key", "test_pos", "rank", "train_pos",
                                                                "score"]])
        writer.set_influence_roles([*results["run_key"], run_key], row.method, row.cutoff, {
            results.at[analogue, "key"]: {"role": ANALOGUE_ROLE},
            key: {"role": BEST_ROLE, "role_note": BEST_NOTE},
            results.at[natural, "key"]: {"role": NATURAL_ROLE}})
