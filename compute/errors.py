"""The one exception type a user sees: a one-line message saying what is wrong and how to fix it."""

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class RtxError(Exception):
    """A user-facing error; the CLI prints `str(err)` on one line and exits with status 2."""


def lookup(kind: str, table: Mapping[str, T], name: str) -> T:
    """`table[name]`, or the standard one-line error listing the valid names."""
    if name not in table:
        raise unknown_name(kind, name, list(table))
    return table[name]


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> RtxError:
    """The standard error for a registry miss: names the valid choices."""
    return RtxError(f"unknown {kind} {name!r}; valid choices: {', '.join(sorted(valid))}")


def problems_error(subject: str, problems: list[str] | tuple[str, ...]) -> RtxError:
    """One error listing every problem found before any work (numbered, on one line), so a user fixes them all at
    once instead of one per run."""
    listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
    return RtxError(f"{subject}: {len(problems)} input(s) missing or wrong: {listed}")
