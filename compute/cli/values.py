"""The value types of `rtx` flags: each parses one flag's text or rejects it at parse time, naming what it expects.

argparse calls a flag's `type` with its text; a `ValueType` raises `argparse.ArgumentTypeError` whose message says
what is wrong and what the flag expects ("expected a whole number from 1 to 65535, got '99999'"), so the one-line
error (`compute.cli.RtxParser.error`) names the flag and its valid range or choices before any work starts. Checks
that need more than one flag or the cache (a subset size against a target's training set, blocks against a
source's architecture) are the plan's: compute.validation.

Integers stop at 2**31 - 1 unless a flag says otherwise: the cache stores epochs, sizes and blocks as DuckDB
INTEGERs, so a larger value would fail only when its result is recorded, after the work. Reals must be finite.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INT32_MAX = 2**31 - 1  # DuckDB INTEGER: runs.epochs, n_train, blocks, ...
INT64_MAX = 2**63 - 1  # DuckDB BIGINT: runs.seed


def _reject(reason: str, expects: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"{reason}; expected {expects}")


class ValueType:
    """A flag's `type`: `parse(text)` returns the value or raises ArgumentTypeError; `expects` describes the
    valid values (shown in errors and in `--help`)."""

    expects: str = "a value"

    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def __call__(self, text: str) -> Any:
        return self.parse(text)

    def __repr__(self) -> str:  # argparse names the type in some messages
        return self.expects


@dataclass(frozen=True, repr=False)
class Integer(ValueType):
    """A whole number in [lo, hi]."""

    lo: int
    hi: int = INT32_MAX

    @property
    def expects(self) -> str:  # type: ignore[override]
        return f"a whole number from {self.lo} to {self.hi}"

    def parse(self, text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise _reject(f"{text!r} is not a whole number", self.expects) from None
        if not self.lo <= value <= self.hi:
            raise _reject(f"{text!r} is out of range", self.expects)
        return value


@dataclass(frozen=True, repr=False)
class Real(ValueType):
    """A finite number in the interval `lo`..`hi`, each end open or closed."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    @property
    def expects(self) -> str:  # type: ignore[override]
        if self.lo is not None and self.hi is not None:
            return (f"a number in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}")
        if self.lo is not None:
            return f"a number {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"a number {'<' if self.hi_open else '<='} {self.hi:g}"
        return "a finite number"

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _reject(f"{text!r} is not a number", self.expects) from None
        low_ok = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        high_ok = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        if not math.isfinite(value) or not low_ok or not high_ok:
            raise _reject(f"{text!r} is out of range", self.expects)
        return value


@dataclass(frozen=True, repr=False)
class Choice(ValueType):
    """One name of a registry (`names` is called when a flag is parsed, so registries filled later count)."""

    kind: str
    names: Callable[[], Sequence[str]]

    @property
    def expects(self) -> str:  # type: ignore[override]
        return f"a {self.kind}: {', '.join(self.names())}"

    def parse(self, text: str) -> str:
        valid = list(self.names())
        if text not in valid:
            raise argparse.ArgumentTypeError(f"unknown {self.kind} {text!r}; valid choices: {', '.join(valid)}")
        return text


@dataclass(frozen=True, repr=False)
class Listed(ValueType):
    """A comma-separated list of `item`s, at least one: 'a,b,,c' -> (a, b, c)."""

    item: ValueType

    @property
    def expects(self) -> str:  # type: ignore[override]
        return f"a comma-separated list, each {self.item.expects}"

    def parse(self, text: str) -> tuple:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise _reject(f"{text!r} names nothing", self.expects)
        values = []
        for part in parts:
            try:
                values.append(self.item.parse(part))
            except argparse.ArgumentTypeError as err:
                raise argparse.ArgumentTypeError(f"in {text!r}: {err}" if len(parts) > 1 else str(err)) from None
        return tuple(values)


@dataclass(frozen=True, repr=False)
class SubsetSize(ValueType):
    """A subset size: a whole number of training images >= 1, or 'all' (None)."""

    number: Integer = field(default_factory=lambda: Integer(1))

    @property
    def expects(self) -> str:  # type: ignore[override]
        return f"'all' or {self.number.expects}"

    def parse(self, text: str) -> int | None:
        if text.strip() == "all":
            return None
        try:
            return self.number.parse(text)
        except argparse.ArgumentTypeError:
            raise _reject(f"{text!r} is not a subset size", self.expects) from None


@dataclass(frozen=True, repr=False)
class Text(ValueType):
    """Free text that must not be empty (a flag given an empty value is a mistake); `check` may refuse more."""

    what: str = "text"
    check: Callable[[str], str | None] | None = None  # returns why the text is wrong, or None

    @property
    def expects(self) -> str:  # type: ignore[override]
        return f"non-empty {self.what}"

    def parse(self, text: str) -> str:
        if not text.strip():
            raise _reject("the value is empty", self.expects)
        why = self.check(text) if self.check else None
        if why:  # a registry miss lists the valid choices itself; anything else also says what the flag takes
            raise argparse.ArgumentTypeError(why if "valid choices" in why else f"{why}; expected {self.what}")
        return text


@dataclass(frozen=True, repr=False)
class PathValue(ValueType):
    """A path: `must_exist` 'file' or 'folder' (else it may be missing, but never an existing entry of the other
    kind: `--cache` and `--data-root` are created when missing)."""

    kind: str  # 'file' | 'folder'
    must_exist: bool = True

    @property
    def expects(self) -> str:  # type: ignore[override]
        return f"{'an existing' if self.must_exist else 'a'} {self.kind}"

    def parse(self, text: str) -> str:
        if not text.strip():
            raise _reject("the path is empty", self.expects)
        path = Path(text).expanduser()
        if self.must_exist and not path.exists():
            raise _reject(f"{text} does not exist", self.expects)
        if path.exists() and path.is_dir() != (self.kind == "folder"):
            raise _reject(f"{text} is a {'folder' if path.is_dir() else 'file'}", self.expects)
        return text


class Device(ValueType):
    """A torch device this machine has: 'cpu', 'cuda', 'cuda:1', ..."""

    expects = "a torch device this machine has, e.g. cpu or cuda:0"

    def parse(self, text: str) -> str:
        import torch

        try:
            device = torch.device(text)
        except (RuntimeError, ValueError):
            raise _reject(f"{text!r} is not a torch device", self.expects) from None
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise _reject(f"{text!r}: CUDA is not available on this machine", "cpu")
            if device.index is not None and device.index >= count:
                raise _reject(f"{text!r}: this machine has {count} CUDA device(s)", f"cuda:0 to cuda:{count - 1}")
        elif device.type not in ("cpu", "mps") or device.type == "mps" and not torch.backends.mps.is_available():
            raise _reject(f"{text!r} is not a device this machine has", self.expects)
        return text


class GpuShare(ValueType):
    """GPUs of one Ray task: 0 (a CPU task), a fraction up to 1 (tasks share a GPU) or a whole number."""

    expects = "0, a fraction up to 1 or a whole number up to 1024"

    def parse(self, text: str) -> float:
        try:
            value = Real(0, 1024).parse(text)
        except argparse.ArgumentTypeError as err:
            raise _reject(str(err).split(";")[0], self.expects) from None
        if value > 1 and not value.is_integer():
            raise _reject(f"{text!r} is more than one GPU but not a whole number", self.expects)
        return value


def _constraint_problem(text: str) -> str | None:
    from compute.attacks import parse_constraint
    from compute.errors import RtxError

    try:
        parse_constraint(text, 1)
    except RtxError as err:
        return str(err)
    return None


def _dataset_problem(text: str) -> str | None:
    """Why a dataset spec cannot be a target, from its text alone: syntax, registry name, a folder: that is not
    there. (The folder's layout, sizes and variants are checked with the plan: compute.validation.)"""
    from compute.data.registry import DATASETS
    from compute.data.variants import split_dataset_spec
    from compute.errors import RtxError, unknown_name

    try:
        name, _ = split_dataset_spec(text)
    except RtxError as err:
        return str(err)
    if name.startswith("folder:"):
        folder = Path(name.removeprefix("folder:")).expanduser()
        return None if folder.is_dir() else f"dataset folder {folder} does not exist; check the path after folder:"
    return None if name in DATASETS else str(unknown_name("dataset", name, list(DATASETS)))


def _host_problem(text: str) -> str | None:
    import ipaddress
    import re

    try:
        ipaddress.ip_address(text)
        return None
    except ValueError:
        if re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", text):
            return None
        return f"{text!r} is not a host name or an IP address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)"


def _run_problem(text: str) -> str | None:
    """A run label must parse (compute.run_label); a key is looked up in the cache later, with the plan."""
    from compute.errors import RtxError
    from compute.run_label import RunLabel, looks_like_label

    if not looks_like_label(text):
        return None
    try:
        RunLabel.parse(text)
    except RtxError as err:
        return str(err)
    return None


CONSTRAINT = Text("constraint: none, l2:EPS, linf:EPS (e.g. linf:4/255) or gaussian:SIGMA", _constraint_problem)
DATASET = Text("dataset: a registered name (rtx datasets), folder:PATH, optionally +lowres(R) or +lowpass(K)",
               _dataset_problem)
HOST = Text("host name or IP address", _host_problem)
NAME = Text("name")
RUN = Text("run key (finetune-...) or run label", _run_problem)
POSITIVE = Integer(1)
NON_NEGATIVE = Integer(0)
SEED = Integer(0, INT64_MAX)  # numpy's default_rng takes seeds >= 0; the cache stores them as BIGINT
PROCESSES = Integer(1, 1024)  # worker processes or threads: more than this is a typo, not a machine
PORT = Integer(1, 65_535)  # 0 ("any free port") would hide the address a server is on
DEVICE = Device()
GPUS = GpuShare()


def datasets() -> Sequence[str]:
    from compute.data.registry import dataset_names

    return dataset_names()


__all__ = ["CONSTRAINT", "DATASET", "DEVICE", "GPUS", "HOST", "INT32_MAX", "INT64_MAX", "NAME", "NON_NEGATIVE", "POSITIVE", "PROCESSES",
           "PORT", "RUN", "SEED", "Choice", "Device", "Integer", "Listed", "PathValue", "Real", "SubsetSize", "Text",
           "ValueType", "datasets"]
