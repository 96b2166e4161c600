"""`LruStore`: values made on first use and kept for the next callers, the least recently used dropped first.

One store for every per-process cache of tensors: a target's images on the device and the frozen prefix's
activations (compute.engine), the one-run path's prefix activations (compute.finetune.PrefixCache).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LruStore(Generic[V]):
    """At most `capacity` values by key; `get(key, make)` returns the kept value or makes and keeps it."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._store: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        if key not in self._store:
            self._store[key] = make()
            while len(self._store) > self.capacity:
                self._store.popitem(last=False)
        self._store.move_to_end(key)
        return self._store[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._store

    def clear(self) -> None:
        self._store.clear()
