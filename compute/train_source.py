"""Source models: trained here (natural, PGD(k) adversarial, Gaussian noise) or loaded from a checkpoint.

Training (the paper's Section 7 recipe, scaled down): SGD with momentum 0.9 and weight decay 5e-4, batch
`spec.batch_size`, learning rate `spec.lr` divided by 10 at 1/3 and 2/3 of the training steps. Counting in
steps rather than epochs keeps the two decays for the demo's 2-epoch runs (an epoch-based schedule would
decay at epoch 0 and 1). Adversarial training replaces every batch by its PGD(k) perturbation (Madry et al.,
as the MadryLab `robustness` library does: the attack runs with the model in eval mode, the update in train
mode); Gaussian training adds N(0, sigma^2) noise instead. Perturbations live in the dataset's pixel space
(`compute.attacks.OnPixels`), so the demo's eps are budgets on 28x28 grey images.

Resumable: after every epoch the weights, the optimizer's momentum and both random generators are written
to `<cache>/sources/<key>.resume.safetensors`; a re-run continues from there and gives bit-identical weights.
The finished model is `<cache>/sources/<key>.safetensors` (+ JSON sidecar), with `key = source_key(spec)`.

Checkpoint sources (`spec.checkpoint`, the paper preset) are loaded with `compute.models.load_checkpoint`
from a folder the user names (`--checkpoint-dir`, `$RTX_CHECKPOINTS`, default `<cache>/checkpoints`) and
converted to the same safetensors layout, so every later stage loads sources one way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from compute.attacks import AttackConfig, OnPixels, parse_constraint, perturb
from compute.cache import CacheWriter
from compute.data import load_dataset, sample_subset
from compute.errors import RtxError
from compute.finetune import EVAL_BATCH  # one evaluation batch size for every model (its comment says why)
from compute.models import Classifier, build_model, load_checkpoint, save_checkpoint
from compute.models.hub import is_hub_uri, resolve_checkpoint
from compute.paths import artefact_path, file_checksum, job_key, sidecar_path, source_import_key
from compute.presets import SourceSpec
from compute.records import SourceRecord
from compute.settings import resolve_device
from compute.training import Perturb, evaluate, shuffled_batches, train_one_epoch

__all__ = [
    "CODE_VERSION",
    "checkpoint_folder",
    "ensure_source",
    "import_source",
    "lr_at",
    "record_source",
    "source_key",
    "train_source",
    "training_perturbation",
]

# Bump when a change to this module changes trained weights: it is part of every source model's key.
CODE_VERSION = "source-1"
MOMENTUM = 0.9  # the paper's SGD (A.3, Section 7)
WEIGHT_DECAY = 5e-4


def source_key(spec: SourceSpec) -> str:
    """Cache key from everything that determines the source's weights (not its display name or note)."""
    if spec.checkpoint:
        fields: dict[str, Any] = {"checkpoint": spec.checkpoint, "arch": spec.arch}
    else:
        attack = parse_constraint(spec.constraint, spec.attack_steps)
        fields = {
            "arch": spec.arch, "attack": attack, "dataset": spec.dataset, "epochs": spec.epochs,
            "train_size": spec.train_size, "batch_size": spec.batch_size, "lr": spec.lr, "seed": spec.seed,
            "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
        }
    return job_key("source", {**fields, "code": CODE_VERSION})


def lr_at(step: int, total_steps: int, base_lr: float) -> float:
    """Step decay: base, base / 10 from 1/3 of the steps, base / 100 from 2/3."""
    return base_lr * 0.1 ** ((3 * step >= total_steps) + (3 * step >= 2 * total_steps))


def training_perturbation(pixels: OnPixels, attack: AttackConfig,
                          generator: torch.Generator | None = None) -> Perturb | None:
    """What replaces each training batch (x (B, c, h, w) in [0, 1], y (B,)): its PGD(k) perturbation or its noisy
    copy, or None for natural training.

    A PGD(k) step costs about (k + 1) forward/backward passes, a bit less because the attack's backward passes
    compute no weight gradients (see bench/attacks.py).
    """
    if attack.kind == "none":
        return None
    return lambda x, y: perturb(pixels, x, y, attack, generator)


# --- resume state -----------------------------------------------------------------------------------------
def _resume_path(root: Path, key: str) -> Path:
    return artefact_path(root, "sources", key, "resume.safetensors")


def _save_resume(path: Path, model: Classifier, optimizer: torch.optim.Optimizer,
                 generators: dict[str, torch.Generator], state: dict[str, Any]) -> None:
    """Weights, momentum buffers and generator states after a finished epoch, written atomically."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, param in enumerate(optimizer.param_groups[0]["params"]):
        buf = optimizer.state.get(param, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"momentum.{i}"] = buf.detach().cpu().contiguous()
    tensors.update({f"rng.{name}": gen.get_state().cpu() for name, gen in generators.items()})
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"state": json.dumps(state)})
    tmp.replace(path)


def _load_resume(path: Path, model: Classifier, optimizer: torch.optim.Optimizer,
                 generators: dict[str, torch.Generator]) -> dict[str, Any] | None:
    """Restore what `_save_resume` wrote; None (start over) when the file is missing or unreadable."""
    from safetensors import SafetensorError, safe_open

    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            state = json.loads(fh.metadata()["state"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError):
        tqdm.write(f"ignoring unreadable resume file {path.name}; training from the start")
        return None
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    device = next(model.parameters()).device
    for i, param in enumerate(optimizer.param_groups[0]["params"]):
        if f"momentum.{i}" in tensors:
            optimizer.state[param]["momentum_buffer"] = tensors[f"momentum.{i}"].to(device)
    for name, gen in generators.items():
        try:
            gen.set_state(tensors[f"rng.{name}"])
        except (KeyError, RuntimeError):  # e.g. saved on CUDA, resumed on CPU: the states differ in kind
            tqdm.write(f"{path.name}: cannot restore the {name!r} random generator here; continuing with a fresh one")
    return state


# --- training -----------------------------------------------------------------------------------------------
def train_source(spec: SourceSpec, root: Path, device: str | None = None, progress: bool = True,
                 checkpoint_dir: str | Path | None = None, trust_pickle: bool = False,
                 on_epoch: Callable[[int, int], None] | None = None, data_root: str | None = None,
                 skip_bad_images: bool = False) -> SourceRecord:
    """Train `spec` (or load its checkpoint) into the cache; returns its record.

    Already-finished weights for the same key are reused; an interrupted training resumes from its last epoch.
    `on_epoch(epoch, epochs)` is called after each epoch's resume state is written.
    """
    root = Path(root)
    if spec.checkpoint:
        return _load_checkpoint_source(spec, root, checkpoint_dir, trust_pickle)
    key = source_key(spec)
    final = artefact_path(root, "sources", key, "safetensors")
    if final.exists() and sidecar_path(final).exists():
        return _row_from_sidecar(spec, root, final)
    training = _SourceTraining.start(spec, resolve_device(device), data_root, skip_bad_images)
    resume = _resume_path(root, key)
    state = _load_resume(resume, training.model, training.optimizer, training.generators) or {"epoch": 0, "seconds": 0.0,
                                                                               "history": []}
    _train_epochs(spec, training, state, resume, progress, on_epoch)
    clean_acc = _clean_accuracy(training.model, spec.dataset, data_root, skip_bad_images)
    meta = {
        "key": key, "name": spec.name, "constraint": spec.constraint, "attack_steps": spec.attack_steps,
        "attack": training.attack.label, "alpha": training.attack.alpha if training.attack.kind == "pgd" else None,
        "step_mult": training.attack.step_mult, "dataset": spec.dataset, "epochs": spec.epochs, "train_size": training.n,
        "batch_size": spec.batch_size, "lr": spec.lr, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
        "seed": spec.seed, "code": CODE_VERSION, "note": spec.note, "history": state["history"],
        "device": str(training.device), "threads": torch.get_num_threads(),
        "images_per_second": training.n * spec.epochs / max(state["seconds"], 1e-9), "clean_acc": clean_acc,
        "train_seconds": state["seconds"],
    }
    save_checkpoint(training.model.cpu().to(memory_format=torch.contiguous_format), final, meta)
    resume.unlink(missing_ok=True)
    return _row(spec, root, final, clean_acc, state["seconds"], meta)


@dataclass(frozen=True)
class _SourceTraining:
    """What one source's training works on: its training subset on the device, the model, the optimiser and the
    random streams, all drawn from the one source seed (`SourceSpec.seed`: 0, or a replica's, compute.replicas)."""

    attack: AttackConfig
    device: torch.device
    images: torch.Tensor  # (N, c, h, w)
    labels: torch.Tensor  # (N,)
    model: Classifier
    pixels: OnPixels
    optimizer: torch.optim.Optimizer
    generators: dict[str, torch.Generator]

    @property
    def n(self) -> int:
        return len(self.labels)

    @classmethod
    def start(cls, spec: SourceSpec, dev: torch.device, data_root: str | None,
              skip_bad_images: bool = False) -> _SourceTraining:
        attack = parse_constraint(spec.constraint, spec.attack_steps)
        train = load_dataset(spec.dataset, "train", data_root, skip_bad_images=skip_bad_images)
        subset = torch.as_tensor(sample_subset(train.labels, spec.train_size or len(train), spec.seed))
        model = build_model(spec.arch, len(train.classes), seed=spec.seed).to(dev).to(
            memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        generators = {"order": torch.Generator().manual_seed(spec.seed),
                      "attack": torch.Generator(device=dev).manual_seed(spec.seed + 1)}
        return cls(attack, dev, train.images[subset].to(dev), train.labels[subset].to(dev), model,
                   OnPixels(model, model.input_size), optimizer, generators)


def _train_epochs(spec: SourceSpec, training: _SourceTraining, state: dict[str, Any], resume: Path, progress: bool,
                  on_epoch: Callable[[int, int], None] | None) -> None:
    """The epochs `state` has not done yet, each followed by its resume state (and `on_epoch`)."""
    n, batch = training.n, spec.batch_size
    steps_per_epoch = -(-n // batch)
    total_steps = steps_per_epoch * spec.epochs
    bar = tqdm(total=n * spec.epochs, initial=n * state["epoch"], desc=f"{spec.name} ({spec.constraint}, "
               f"k={spec.attack_steps})", unit="img", unit_scale=True, disable=not progress)
    replace_batch = training_perturbation(training.pixels, training.attack, training.generators["attack"])

    def fetch(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bar.update(len(idx))
        idx = idx.to(training.device)
        return training.images[idx], training.labels[idx]  # (B, c, h, w), (B,)

    for epoch in range(state["epoch"], spec.epochs):
        start = time.perf_counter()
        training.model.train()

        def set_lr(step: int, epoch: int = epoch) -> None:
            for group in training.optimizer.param_groups:
                group["lr"] = lr_at(epoch * steps_per_epoch + step, total_steps, spec.lr)

        stats = train_one_epoch(training.pixels, training.optimizer,
                                shuffled_batches(n, batch, training.generators["order"], fetch), replace_batch, set_lr)
        seconds = time.perf_counter() - start
        state["history"].append({"epoch": epoch + 1, "train_loss": stats.loss, "train_acc": stats.accuracy,
                                 "seconds": seconds})
        state["epoch"], state["seconds"] = epoch + 1, state["seconds"] + seconds
        bar.set_postfix(loss=f"{stats.loss:.3f}", acc=f"{stats.accuracy:.3f}")
        _save_resume(resume, training.model, training.optimizer, training.generators, state)
        if on_epoch is not None:
            on_epoch(epoch + 1, spec.epochs)
    bar.close()


def _clean_accuracy(model: Classifier, dataset: str, data_root: str | None = None,
                    skip_bad_images: bool = False) -> float:
    test = load_dataset(dataset, "test", data_root, skip_bad_images=skip_bad_images)
    return evaluate(OnPixels(model, model.input_size), test.images, test.labels, batch_size=EVAL_BATCH)


def _row(spec: SourceSpec, root: Path, path: Path, clean_acc: float | None, seconds: float,
         meta: dict[str, Any]) -> SourceRecord:
    """The record for `CacheWriter.record_source_model` (path relative to the cache root)."""
    return SourceRecord(spec.name, spec.arch, spec.constraint, spec.attack_steps, spec.dataset, file_checksum(path),
                        str(path.relative_to(root)), clean_acc, float(seconds), meta)


def _row_from_sidecar(spec: SourceSpec, root: Path, final: Path) -> SourceRecord:
    """Weights finished earlier (e.g. trained, then the process died before recording): reuse them."""
    meta = json.loads(sidecar_path(final).read_text())
    meta.update({"name": spec.name, "note": spec.note})
    return _row(spec, root, final, meta.get("clean_acc"), float(meta.get("train_seconds", 0.0)), meta)


# --- checkpoints ----------------------------------------------------------------------------------------------
def checkpoint_folder(root: Path, checkpoint_dir: str | Path | None = None) -> Path:
    """Where checkpoint sources are looked up: the argument (`Settings.checkpoint_dir`, whose default is
    $RTX_CHECKPOINTS), else <cache>/checkpoints."""
    return Path(checkpoint_dir or Path(root) / "checkpoints").expanduser()


def _load_checkpoint_source(spec: SourceSpec, root: Path, checkpoint_dir: str | Path | None,
                            trust_pickle: bool) -> SourceRecord:
    folder = checkpoint_folder(root, checkpoint_dir)
    path = resolve_checkpoint(spec.checkpoint, folder)  # hf:// addresses come from the hub cache
    if not path.is_file():
        raise RtxError(f"source {spec.name!r} needs checkpoint file {Path(spec.checkpoint).name}, not found in "
                       f"{path.parent}; pass --checkpoint-dir DIR (or set RTX_CHECKPOINTS) naming the folder that holds it")
    start = time.perf_counter()
    model, info = load_checkpoint(path, spec.arch, None, trust_pickle)
    if info.arch != spec.arch:
        raise RtxError(f"{path}: holds a {info.arch} but source {spec.name!r} is declared {spec.arch}; check the file")
    key = source_key(spec)
    final = artefact_path(root, "sources", key, "safetensors")
    meta = {"key": key, "name": spec.name, "constraint": spec.constraint, "attack_steps": spec.attack_steps,
            "dataset": spec.dataset, "note": spec.note, "code": CODE_VERSION, "checkpoint": spec.checkpoint,
            "file_checksum": file_checksum(path), "format": info.format,
            **{k: v for k, v in info.meta.items() if isinstance(v, str | int | float)}}
    save_checkpoint(model, final, meta)
    return _row(spec, root, final, None, time.perf_counter() - start, meta)


def import_source(path: str | Path, name: str, arch: str | None, constraint: str, attack_steps: int, dataset: str,
                  root: Path, num_classes: int | None = None, trust_pickle: bool = False,
                  measure: bool = False) -> SourceRecord:
    """Register a checkpoint file (ours, torchvision or MadryLab) as source `name`; returns its row.

    The weights are converted into the cache (`sources/<key>.safetensors`), keyed by the file's checksum,
    so later stages never touch the original file. `measure` evaluates clean accuracy on `dataset`'s test
    split when that dataset is available offline.
    """
    from compute.data import DATASETS

    origin = str(path)  # a local path or hf://OWNER/REPO/FILE (compute.models.hub)
    path = resolve_checkpoint(path)
    parse_constraint(constraint, max(attack_steps, 1))  # validates the text; the steps may be unknown (0)
    start = time.perf_counter()
    model, info = load_checkpoint(path, arch, num_classes, trust_pickle)
    if arch is not None and info.arch != arch:
        raise RtxError(f"{path}: holds a {info.arch}, not the {arch} given by --arch; fix --arch")
    checksum = file_checksum(path)
    key = source_import_key(checksum, info.arch, info.num_classes, CODE_VERSION)
    final = artefact_path(root, "sources", key, "safetensors")
    clean_acc = None
    if measure and dataset in DATASETS and DATASETS[dataset].num_classes == info.num_classes:
        clean_acc = _clean_accuracy(model, dataset)
    spec = SourceSpec(name, info.arch, constraint, attack_steps, dataset, checkpoint=str(path))
    meta = {"key": key, "name": name, "constraint": constraint, "attack_steps": attack_steps, "dataset": dataset,
            "imported_from": origin if is_hub_uri(origin) else str(path.resolve()), "file_checksum": checksum, "format": info.format,
            "code": CODE_VERSION, "clean_acc": clean_acc,
            **{k: v for k, v in info.meta.items() if isinstance(v, str | int | float)}}
    save_checkpoint(model, final, meta)
    return _row(spec, root, final, clean_acc, time.perf_counter() - start, meta)


# --- the stage -----------------------------------------------------------------------------------------------
def _up_to_date(row: SourceRecord | None, spec: SourceSpec, root: Path) -> bool:
    """Recorded with the same key and its weights still on disk."""
    if row is None or not (root / row.path).is_file():
        return False
    return row.meta.get("key") == source_key(spec)


def ensure_source(spec: SourceSpec, writer: CacheWriter, device: str | None = None, progress: bool = True,
                  checkpoint_dir: str | Path | None = None, trust_pickle: bool = False, data_root: str | None = None,
                  skip_bad_images: bool = False) -> SourceRecord | None:
    """Train or load `spec` unless the cache already records it with the same key; returns the new row or None."""
    if _up_to_date(writer.source_row(spec.name), spec, writer.root):
        return None
    row = train_source(spec, writer.root, device=device, progress=progress, checkpoint_dir=checkpoint_dir,
                       trust_pickle=trust_pickle, data_root=data_root, skip_bad_images=skip_bad_images)
    _record(spec, row, writer, progress)
    return row


def record_source(writer: CacheWriter, row: SourceRecord) -> None:
    """Record a source; robustness rows measured on different weights under the same name are dropped."""
    previous = writer.source_row(row.name)
    if previous is not None and previous.checksum != row.checksum:
        writer.forget_robustness(row.name)  # measured on the old weights
    writer.record_source_model(row)


def _record(spec: SourceSpec, row: SourceRecord, writer: CacheWriter, progress: bool) -> None:
    record_source(writer, row)
    if progress:
        acc = "n/a" if row.clean_acc is None else f"{row.clean_acc:.3f}"
        tqdm.write(f"[sources] {spec.name}: clean accuracy {acc}, {row.train_seconds:.1f} s, {row.path}")
