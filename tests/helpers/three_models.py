"""A third model in the demo cache's influence cell: what the influence stage leaves when the best budget is not
the paper analogue (issue 14).

The tiny preset has one robust source, so its cell holds two models ('paper analogue, best budget' and natural).
`add_best_budget` records the natural fine-tune again under a robust source's name (a run and an influence
result sharing the natural model and query files, new keys) and re-records the roles: `l2_1.5` the paper
analogue only, the copy the best budget with a reason. Its answers must therefore equal the natural model's: a
check that each column is computed from its own influence result.
"""

from __future__ import annotations

from pathlib import Path

from compute import records as rec
from compute.cache import CacheReader, CacheWriter
from compute.paths import job_key
from compute.roles import ANALOGUE_ROLE, BEST_ROLE, NATURAL_ROLE

BEST_SOURCE = "linf_best"  # the copy's source name
BEST_NOTE = "the highest mean robust-minus-natural final accuracy on digits n=40 blocks=1: +4.0 points (synthetic)"
RUN_FIELDS = ("key", "status", "source", "target", "n_train", "seed", "blocks", "epochs", "final_test_acc",
              "final_train_loss", "wall_seconds", "device", "error", "model_path")


def add_best_budget(root: Path, analogue: str = "l2_1.5", natural: str = "natural") -> None:
    """Add `BEST_SOURCE` (a copy of `natural`'s fine-tune and influence) to the cell and record the three roles."""
    reader = CacheReader(root)
    try:
        results = reader.influence_results().set_index("source")
        row = reader.influence(results.at[natural, "key"])
        run = reader.run(row["run_key"])
        topk = reader.influence_topk(row["key"]).assign(influence_key=None)
    finally:
        reader.close()
    run_key = job_key("finetune", {"copy_of": run["key"], "source": BEST_SOURCE})
    key = job_key("influence", {"run": run_key})
    fields = {name: run[name] for name in RUN_FIELDS} | {"key": run_key, "source": BEST_SOURCE}
    subset = tuple(int(i) for i in run["subset_indices"]) if run["subset_indices"] is not None else None
    with CacheWriter(root) as writer:
        writer.record_run(rec.RunRecord(**fields, subset_indices=subset), [])
        writer.record_influence(rec.InfluenceRecord(
            key=key, run_key=run_key, method=row["method"], cutoff=float(row["cutoff"]), n_train=int(row["n_train"]),
            n_test=int(row["n_test"]), matrix_path=row["matrix_path"], query_path=row["query_path"],
            **{name: [int(v) for v in row[name]] for name in ("train_indices", "test_indices", "train_labels",
                                                               "test_labels", "test_pred")},
            label_match=[float(v) for v in row["label_match"]], seconds=float(row["seconds"]), meta=row["meta"]),
            topk.assign(influence_key=key)[["influence_key", "test_pos", "rank", "train_pos", "score"]])
        writer.set_influence_roles([*results["run_key"], run_key], row["method"], float(row["cutoff"]), {
            results.at[analogue, "key"]: {"role": ANALOGUE_ROLE},
            key: {"role": BEST_ROLE, "role_note": BEST_NOTE},
            results.at[natural, "key"]: {"role": NATURAL_ROLE}})
