"""A second influence method on a synthetic explorer cache: what `rtx influence --method tracincp` adds.

`add_method` scores the same runs as the cache's existing influence results again, with a matrix that is a
noisy copy of the first (so rank correlation and top-k overlap are high but below 1), under its own key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from compute.cache import CacheReader, CacheWriter
from compute.influence.derived import label_match_curve, top_k
from compute.paths import artefact_path, job_key
from compute.records import InfluenceRecord

NOISE = 0.5  # standard deviation of the noise added to the first method's scores


def add_method(root: Path, method: str = "tracincp", exact: bool = False, noise: float = NOISE,
               seed: int = 1) -> list[str]:
    """Score every run that has an influence result again with `method`; returns the new influence keys."""
    reader = CacheReader(root)
    try:
        results = reader.influence_results()
        rows = [reader.influence(key) for key in results["key"]]
    finally:
        reader.close()
    rng = np.random.default_rng(seed)
    keys = []
    with CacheWriter(root) as writer:
        for row in rows:
            base = np.load(root / row.matrix_path)  # (n_train, n_test)
            matrix = (base + rng.normal(0, noise, base.shape)).astype(np.float32)
            key = job_key("influence", {"run_key": row.run_key, "method": method, "cutoff": row.cutoff})
            path = artefact_path(root, "influence", key, "npy")
            np.save(path, matrix)
            k = 5  # the top-5 the pages show
            best = top_k(matrix, k)
            n_test = matrix.shape[1]
            topk = pd.DataFrame({"influence_key": key, "test_pos": np.repeat(np.arange(n_test), k),
                                 "rank": np.tile(np.arange(k), n_test), "train_pos": best.positions.reshape(-1),
                                 "score": best.scores.reshape(-1).astype(np.float64)})
            train_labels, test_labels = np.asarray(row.train_labels), np.asarray(row.test_labels)
            writer.record_influence(InfluenceRecord(
                key=key, run_key=row.run_key, method=method, cutoff=float(row.cutoff), n_train=int(row.n_train),
                n_test=int(row.n_test), matrix_path=str(path.relative_to(root)), query_path=None,
                **{name: getattr(row, name) for name in ("train_indices", "test_indices", "train_labels", "test_labels",
                                                      "test_pred")},
                label_match=label_match_curve(matrix, train_labels, test_labels, len(row.label_match)).tolist(),
                seconds=0.1, meta={"synthetic": True, "exact": exact}), topk)
            keys.append(key)
    return keys
