"""Records: what the cache stores, as frozen types that `compute.cache` writes and reads.

The stages build records and `CacheWriter.record_*` writes them; one-row reads hand the same records back
(`CacheReader.run` a `RunRecord`, `influence` an `InfluenceRecord`, `source_row` a `SourceRecord`, JSON parsed)
and `KeptRun` is the read-side record of a completed fine-tune as influence needs it. Listings and aggregates
are frames with the same columns. Columns derived from text the program parses elsewhere (a source's
constraint, a run's target spec) are computed here once, by the parsers that own that text, so no reader
re-parses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from compute.attacks import parse_constraint
from compute.data.variants import split_dataset_spec
from compute.errors import RtxError
from compute.replicas import family_of
from compute.run_label import RunLabel

SOURCE_KINDS = ("natural", "pgd", "gaussian")


def _fields(record: Any) -> dict[str, Any]:
    """A record's fields by name, shallow (unlike dataclasses.asdict, which deep-copies)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


class _Record:
    """A record whose columns are its fields."""

    def columns(self) -> dict[str, Any]:
        """The row as `CacheWriter` stores it."""
        return _fields(self)


def constraint_columns(constraint: str, attack_steps: int) -> dict[str, Any]:
    """`source_models` columns kind ('natural' | 'pgd' | 'gaussian'), norm ('l2' | 'linf' | None), eps (None for
    natural; sigma for gaussian) and steps (PGD steps, 0 otherwise) of a constraint text such as 'l2:1.5'.

    An imported PGD source may not know its steps (0): the constraint is still read, with steps 0 recorded.
    """
    attack = parse_constraint(constraint, max(int(attack_steps or 0), 1))
    if attack.kind == "none":
        return {"kind": "natural", "norm": None, "eps": None, "steps": 0}
    return {"kind": attack.kind, "norm": attack.norm, "eps": float(attack.eps),
            "steps": int(attack_steps or 0) if attack.kind == "pgd" else 0}


def target_columns(target: str) -> dict[str, Any]:
    """`runs` columns base_dataset and variant ('lowres(10)', None when none) of a target spec."""
    try:
        base, variant = split_dataset_spec(target)
    except RtxError:  # not a spec this program writes (e.g. a synthetic test target): the whole text is the base
        return {"base_dataset": target, "variant": None}
    return {"base_dataset": base, "variant": None if variant is None else variant.label}


@dataclass(frozen=True)
class SourceRecord:
    """One `source_models` row: a source model's weights (path relative to the cache root) and what made them.

    `constraint` is the text the user wrote ('none', 'l2:1.5', 'gaussian:0.054'); `kind`, `norm`, `eps` and
    `steps` are parsed from it once, here.
    """

    name: str
    arch: str
    constraint: str
    attack_steps: int
    source_dataset: str
    checksum: str
    path: str
    clean_acc: float | None = None
    train_seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def columns(self) -> dict[str, Any]:
        """The row as `CacheWriter` stores it (`constraint_` is the column's name: `constraint` is an SQL word)."""
        return {"name": self.name, "arch": self.arch, "constraint_": self.constraint, "attack_steps": self.attack_steps,
                "source_dataset": self.source_dataset, "checksum": self.checksum, "path": self.path,
                "clean_acc": self.clean_acc, "train_seconds": float(self.train_seconds), "meta": self.meta,
                **constraint_columns(self.constraint, self.attack_steps)}


@dataclass(frozen=True)
class CurvePoint:
    """One evaluated epoch of a fine-tune: test accuracy (a fraction) and mean training loss of that epoch."""

    epoch: int
    test_acc: float
    train_loss: float


@dataclass(frozen=True)
class RunRecord:
    """One `runs` row: a fine-tune, done or failed (then `error` says why and the numbers are None)."""

    key: str
    status: str  # 'done' | 'failed'
    source: str
    target: str
    n_train: int | None
    seed: int
    blocks: int
    epochs: int
    config: dict[str, Any] = field(default_factory=dict)
    subset_indices: tuple[int, ...] | None = None
    final_test_acc: float | None = None
    final_train_loss: float | None = None
    wall_seconds: float | None = None
    device: str | None = None
    error: str | None = None
    model_path: str | None = None

    def columns(self) -> dict[str, Any]:
        """The row as `CacheWriter` stores it, with base_dataset and variant parsed from `target`, and `source` the
        family of a replica (compute.replicas: pages group by family; `config` keeps the model the run started from).
        Read back (`CacheReader.run`), `source` is therefore the family and `config["source"]` the model."""
        row = _fields(self)
        row["source"] = family_of(self.source)
        row["subset_indices"] = None if self.subset_indices is None else list(self.subset_indices)
        return {**row, **target_columns(self.target)}


@dataclass(frozen=True)
class KeptRun:
    """A completed fine-tune as influence needs it (read from the `runs` table: `CacheWriter.done_run`,
    `influence_runs`, `kept_by_source`): what names it, its subset, and where its weights are."""

    key: str
    source: str  # the source family (compute.replicas), as the pages name it
    target: str
    n_train: int | None
    seed: int
    blocks: int
    subset_indices: tuple[int, ...]  # rows of the target's training split, in the order the run saw them
    model_path: str | None  # relative to the cache root; None when the sweep kept no weights

    @property
    def label(self) -> RunLabel:
        return RunLabel(self.source, self.target, self.n_train, self.seed, self.blocks)


@dataclass(frozen=True)
class RobustnessRecord(_Record):
    """One `robustness` row: accuracy of a source on `n_images` test images of `dataset` under one constraint
    (clean accuracy is norm 'none', eps 0, steps 0)."""

    source: str
    dataset: str
    norm: str
    eps: float
    steps: int
    accuracy: float
    n_images: int



@dataclass(frozen=True)
class ThumbnailRecord(_Record):
    """One stored image: dataset index, label and PNG bytes (what the explorer and the demo show)."""

    dataset: str
    split: str
    idx: int
    label: int
    png: bytes


@dataclass(frozen=True)
class InfluenceRecord(_Record):
    """One `influence` row: where a result's matrix and query data are (relative paths), which images it scores,
    and what was derived from the matrix (label-match curve); `meta` says how it was computed."""

    key: str
    run_key: str
    method: str
    cutoff: float
    n_train: int
    n_test: int
    matrix_path: str
    query_path: str | None
    train_indices: list[int]
    test_indices: list[int]
    train_labels: list[int]
    test_labels: list[int]
    test_pred: list[int]
    label_match: list[float]
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FeatvizRecord(_Record):
    """One optimised image: which model, seed photo and unit, with what ascent, as PNG bytes (and the seed's)."""

    key: str
    model: str
    seed_image: str
    unit: int
    steps: int
    step_size: float
    png: bytes
    seed_png: bytes
