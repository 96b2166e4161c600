"""What the `tiny` preset computes, in a small comparable form (tests/test_regression_tiny.py's fixtures).

`run_tiny(root)` runs the preset's recorded stages in this process with float64 as torch's
default dtype: every model, activation, gradient and optimiser state is float64, so the results are the same on
any x86-64 CPU to far below what the comparison checks (see the test's docstring). `collect(root)` reads the
cache back: every source's clean accuracy, every robustness accuracy, every fine-tune's final numbers and
learning curve (keyed by (source, target, n_train, seed, blocks), not by run key: keys change when config fields
are added) and every influence result (matrix, label-match curve, test predictions), keyed by source.

Re-record only when a change of results is intended, with `python -m tests.helpers.tiny_fixture EMPTY_DIR`
(it writes tests/fixtures/tiny/), and say why in the test's docstring history.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from compute.cache import CacheReader
from tests.helpers.engine_cases import float64  # float64 as torch's default dtype inside

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tiny"
STAGES = ("sources", "robustness", "finetune", "influence")


def _run_id(row: Any) -> str:
    return f"{row['source']}|{row['target']}|n={int(row['n_train'])}|seed={int(row['seed'])}|blocks={int(row['blocks'])}"


def collect(root: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(JSON-able numbers, influence matrices by source) of the cache at `root`."""
    reader = CacheReader(root)
    try:
        sources = {r["name"]: r["clean_acc"] for r in reader.source_models().to_dict("records")}
        robustness = {f"{r['source']}|{r['norm']}|{r['eps']!r}|{int(r['steps'])}": r["accuracy"]
                      for r in reader.robustness().to_dict("records")}
        runs = {}
        for row in reader.runs("done").to_dict("records"):
            curve = reader.learning_curve(row["key"])
            runs[_run_id(row)] = {
                "final_test_acc": row["final_test_acc"], "final_train_loss": row["final_train_loss"],
                "curve": [[int(e), float(a), float(loss)] for e, a, loss in
                          zip(curve["epoch"], curve["test_acc"], curve["train_loss"], strict=True)],
            }
        influence, matrices = {}, {}
        for row in reader.influence_results().to_dict("records"):
            full = reader.influence(row["key"])
            influence[row["source"]] = {"run": _run_id(row | {"n_train": row["subset_size"]}),
                                        "method": row["method"], "cutoff": row["cutoff"],
                                        "label_match": [float(x) for x in full.label_match],
                                        "test_pred": [int(x) for x in full.test_pred]}
            matrices[row["source"]] = np.load(reader.artefact(row["matrix_path"]))
    finally:
        reader.close()
    return {"sources": sources, "robustness": robustness, "runs": runs, "influence": influence}, matrices


def write(root: Path, folder: Path = FIXTURES) -> None:
    numbers, matrices = collect(root)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "numbers.json").write_text(json.dumps(numbers, sort_keys=True) + "\n")
    for source, matrix in matrices.items():
        np.save(folder / f"influence_{source}.npy", matrix)


def load(folder: Path = FIXTURES) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    numbers = json.loads((folder / "numbers.json").read_text())
    return numbers, {s: np.load(folder / f"influence_{s}.npy") for s in numbers["influence"]}


def run_tiny(root: Path) -> None:
    """The tiny preset's stages that have recorded results, in this process (its torch threads), float64."""
    from compute.presets import get_preset
    from compute.settings import Settings
    from compute.stages import precompute

    root.mkdir(parents=True, exist_ok=True)
    with float64():
        precompute(get_preset("tiny"), root, Settings(progress=False), STAGES)


if __name__ == "__main__":
    run_tiny(Path(sys.argv[1]))
    write(Path(sys.argv[1]))
