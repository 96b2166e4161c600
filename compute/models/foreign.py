"""Checkpoints made elsewhere: torchvision state dicts and MadryLab `robustness` files.

Formats recognised (all read with `torch.load(weights_only=True)` unless the caller trusts the file):
- torchvision: a plain state dict (`resnet50-0676ba61.pth`), keys `conv1.weight`, ..., `fc.bias`; also with a
  `module.` prefix (saved from DataParallel), or wrapped as {'state_dict': ...} / {'model': ...}.
- MadryLab `robustness` (the paper's `imagenet_l2_3_0.pt`, `imagenet_linf_4.pt`, `imagenet_linf_8.pt` and the
  later zoo's `resnet50_l2_eps3.ckpt`, ...): a dict whose 'model' (older files: 'state_dict') holds the
  AttackerModel's keys: `module.model.*` (the network we keep), `module.attacker.model.*` (a second reference
  to the same network, dropped) and `module.normalizer.new_mean/new_std` (the input normalisation: copied into
  our Classifier's normaliser, so a model trained with other constants still sees the same inputs).
  `CheckpointInfo.meta['statistics']` and `Classifier.statistics_origin` say whether the file stored them
  ('checkpoint') or the architecture's defaults were filled in ('architecture': every torchvision file).
- A whole pickled `nn.Module`, only with `trust_pickle=True`.

Every failure is a one-line `RtxError` naming the file and what to do.
"""

from __future__ import annotations

import functools
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compute.errors import RtxError
from compute.models.architectures import ARCHITECTURES, Classifier, arch_names, build_model
from compute.models.state import CheckpointInfo, load_state

MADRY_PREFIX = "module.model."
MADRY_DROP = ("module.attacker.", "module.normalizer.")
MADRY_NORMALIZER = ("module.normalizer.new_mean", "module.normalizer.new_std")


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    """torch.load with errors turned into one-line messages; never unpickles code unless trusted."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the weights-only unpickler warns about pickle protocols
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        text = str(err)
        if not trust_pickle and "Unsupported global" in text:
            what = text.split("Unsupported global:", 1)[1].split(" was not", 1)[0].strip()
            raise RtxError(
                f"{path}: the checkpoint needs pickle to load ({what}), which can run arbitrary code; "
                "pass --trust-pickle if you trust where the file comes from"
            ) from err
        raise RtxError(f"{path}: not a PyTorch checkpoint (unpickling failed); check the file") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        first = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise RtxError(f"{path}: truncated or corrupt checkpoint ({first}); download or copy it again") from err
    except Exception as err:  # any other unpickling failure means "not a checkpoint"
        raise RtxError(f"{path}: not a PyTorch checkpoint ({type(err).__name__}); check the file") from err


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    """Find the network's state dict in whatever container the file holds -> (state, format, extra meta)."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    meta: dict[str, Any] = {}
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], dict | nn.Module):
                inner = obj[key]
                meta = {k: obj[k] for k in ("epoch",) if isinstance(obj.get(k), int | float)}
                obj = inner.state_dict() if isinstance(inner, nn.Module) else inner
                break
    if not _is_state_dict(obj):
        raise RtxError(
            f"{path}: no state dict found (expected tensors, or a dict with 'model' or 'state_dict'); "
            "this is not a torchvision or MadryLab checkpoint"
        )
    state = dict(obj)
    if any(k.startswith(MADRY_PREFIX) for k in state):
        net = {k[len(MADRY_PREFIX):]: v for k, v in state.items() if k.startswith(MADRY_PREFIX)}
        unknown = [k for k in state if not k.startswith((MADRY_PREFIX, *MADRY_DROP))]
        net.update({k: state[k] for k in unknown})  # reported as unexpected keys by the loader
        if all(k in state for k in MADRY_NORMALIZER):
            meta["normalizer"] = (state[MADRY_NORMALIZER[0]], state[MADRY_NORMALIZER[1]])
        return net, "madry", meta
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}, "torchvision", meta
    return state, "torchvision", meta


def _body_shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every tensor but the classifier's (fc.*, whose size is the source's class count)."""
    return {k: tuple(v.shape) for k, v in state.items() if not k.startswith("fc.")}


@functools.cache
def _arch_shapes(name: str) -> dict[str, tuple[int, ...]]:
    return _body_shapes(ARCHITECTURES[name].factory(1).state_dict())


def _guess_arch(state: dict[str, torch.Tensor]) -> str | None:
    """The registered architecture whose keys and shapes (fc aside) equal the file's (None if none or several)."""
    shapes = _body_shapes(state)
    matches = [name for name in arch_names() if ARCHITECTURES[name].guessable
               and _arch_shapes(name) == shapes and {"fc.weight", "fc.bias"} <= set(state)]
    return matches[0] if len(matches) == 1 else None


def architecture_mismatch(path: Path, arch: str, trust_pickle: bool = False) -> str | None:
    """Why the torchvision/MadryLab checkpoint at `path` cannot hold a `arch` (one clause), or None when its keys and
    shapes (fc aside) are that architecture's. Reads the file's tensors; builds no model from them, so a whole
    grid's inputs are checked in seconds before any work. Unreadable files raise the loader's one-line RtxError."""
    state, _, _ = _unwrap(_torch_load(Path(path), trust_pickle), Path(path))
    got, want = _body_shapes(state), _arch_shapes(arch)
    if got == want:
        return None
    wrong = [k for k in want if k in got and got[k] != want[k]]
    missing = [k for k in want if k not in got]
    detail = (f"{wrong[0]} has shape {got[wrong[0]]}, a {arch} {want[wrong[0]]}" if wrong
              else f"{len(missing)} {arch} keys missing, e.g. {missing[0]}" if missing
              else f"{len(set(got) - set(want))} keys a {arch} does not have")
    guess = _guess_arch(state)
    return f"holds {'a ' + guess if guess else 'no registered architecture'}, not a {arch} ({detail})"


def load_foreign(path: Path, arch: str | None, num_classes: int | None,
                 trust_pickle: bool) -> tuple[Classifier, CheckpointInfo]:
    """A torchvision or MadryLab checkpoint -> (Classifier in eval mode, CheckpointInfo)."""
    path = Path(path)
    if not path.is_file():
        raise RtxError(f"checkpoint {path} does not exist; check the path")
    state, fmt, extra = _unwrap(_torch_load(path, trust_pickle), path)
    if arch is None:
        arch = _guess_arch(state)
        if arch is None:
            raise RtxError(f"{path}: cannot tell the architecture from the keys; pass --arch "
                           f"(one of {', '.join(arch_names())})")
    fc = state.get("fc.weight")
    if num_classes is None:
        if fc is None or fc.dim() != 2:
            raise RtxError(f"{path}: no fc.weight of shape (classes, features); check --arch or pass --num-classes")
        num_classes = int(fc.shape[0])
    model = build_model(arch, num_classes)
    full = {f"net.{k}": v for k, v in state.items()}
    extra["statistics"] = "checkpoint" if "normalizer" in extra else "architecture"
    mean, std = extra.pop("normalizer", (model.normalize.mean, model.normalize.std))
    try:
        full["normalize.mean"] = mean.reshape(model.normalize.mean.shape).to(model.normalize.mean.dtype)
        full["normalize.std"] = std.reshape(model.normalize.std.shape).to(model.normalize.std.dtype)
    except RuntimeError as err:
        raise RtxError(f"{path}: normalizer mean/std of shape {tuple(mean.shape)} do not fit {arch}'s 3 channels; "
                       "check the file") from err
    load_state(model, full, path)
    model.statistics_origin = extra["statistics"]
    meta = {"source_file": path.name, **extra}
    return model.eval(), CheckpointInfo(arch, num_classes, model.input_size, fmt, meta)
