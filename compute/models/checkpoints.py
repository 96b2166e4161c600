"""Saving and loading checkpoints safely.

Own format: `<name>.safetensors` holding the Classifier's state dict plus a JSON sidecar
`<name>.json` describing architecture, classes, input size, training and constraint.
Loading never unpickles arbitrary code unless the caller passes `trust_pickle=True`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compute.errors import RtxError
from compute.models.architectures import Classifier, build_model
from compute.models.state import CheckpointInfo, load_state
from compute.paths import sidecar_path


def save_checkpoint(model: Classifier, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write weights (safetensors) and sidecar atomically: a crash leaves the old pair or none."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    sidecar = {"arch": model.arch, "num_classes": model.num_classes, "input_size": model.input_size, **(meta or {})}
    tmp_weights, tmp_side = path.with_suffix(".safetensors.tmp"), path.with_suffix(".json.tmp")
    save_file(state, str(tmp_weights))
    tmp_side.write_text(json.dumps(sidecar, indent=2, sort_keys=True))
    tmp_weights.replace(path)
    tmp_side.replace(sidecar_path(path))
    return path


def _load_own(path: Path) -> tuple[Classifier, CheckpointInfo]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    side = sidecar_path(path)
    if not side.exists():
        raise RtxError(f"{path}: no sidecar {side.name} describing the architecture; re-save it with `rtx train-source`")
    try:
        meta = json.loads(side.read_text())
        state = load_file(str(path))
    except (SafetensorError, json.JSONDecodeError, OSError) as err:
        raise RtxError(f"{path}: corrupt or truncated checkpoint ({err}); delete it and re-create it") from err
    model = build_model(meta["arch"], int(meta["num_classes"]), int(meta["input_size"]))
    load_state(model, state, path)
    model.statistics_origin = statistics_origin(meta)
    return model, CheckpointInfo(meta["arch"], int(meta["num_classes"]), int(meta["input_size"]), "rtx", meta)


def statistics_origin(meta: dict[str, Any]) -> str:
    """Whether the file this model was converted from stored its input statistics (compute.normalisation).

    A converted source's sidecar carries the loader's answer ('statistics'); sidecars written before it existed
    are read by format: a torchvision state dict stores none, everything else (ours, MadryLab's) does.
    """
    recorded = meta.get("statistics")
    if recorded in ("checkpoint", "architecture"):
        return recorded
    return "architecture" if meta.get("format") == "torchvision" else "checkpoint"


def load_checkpoint(path: str | Path, arch: str | None = None, num_classes: int | None = None,
                    trust_pickle: bool = False) -> tuple[Classifier, CheckpointInfo]:
    """Load any supported checkpoint into a Classifier (eval mode)."""
    path = Path(path)
    if not path.exists():
        raise RtxError(f"checkpoint {path} does not exist; check the path")
    if path.suffix == ".safetensors":
        model, info = _load_own(path)
    else:
        from compute.models.foreign import load_foreign

        model, info = load_foreign(path, arch, num_classes, trust_pickle)
    return model.eval(), info
