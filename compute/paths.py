"""Where things live: everything under one cache directory (`RTX_CACHE`, default `./cache`).

`artefact_path` is the only function that makes file names for stored artefacts, and `job_key` the
only one that makes cache keys, so a key always names the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

DB_NAME = "rtx.duckdb"
SNAPSHOT_NAME = "rtx.snapshot.duckdb"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache directory, created on first use."""
    root = Path(override or os.environ.get("RTX_CACHE") or "cache").expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _canonical(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _canonical(asdict(value))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    return value


def job_key(kind: str, fields: Any) -> str:
    """Stable key from everything that determines a result: `kind-<16 hex digits>`."""
    blob = json.dumps(_canonical(fields), sort_keys=True, separators=(",", ":"))
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def source_import_key(file_checksum: str, arch: str, num_classes: int, code: str) -> str:
    """Key of a source imported from a checkpoint file: its content, what it holds, and the importing code."""
    return job_key("source", {"import": file_checksum, "arch": arch, "num_classes": num_classes, "code": code})


def artefact_path(root: Path, kind: str, key: str, ext: str) -> Path:
    """Path of an artefact (model weights, arrays) addressed by its key, e.g. models/<key>.safetensors."""
    folder = root / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}.{ext.lstrip('.')}"


def sidecar_path(weights: Path) -> Path:
    """The JSON sidecar that describes a weights file: <name>.json beside <name>.safetensors."""
    return weights.with_suffix(".json")


def snapshot_path(root: Path) -> Path:
    """The published read-only copy of the cache database that readers open."""
    return root / SNAPSHOT_NAME


def file_checksum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's content (first 16 hex digits), used to key source models."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()[:16]
