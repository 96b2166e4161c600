"""LruStore: the one in-memory store of the engine's device data and prefix activations and of PrefixCache."""

from __future__ import annotations

from compute.lru import LruStore


def test_values_are_made_once_and_the_least_recently_used_goes_first() -> None:
    made: list[str] = []
    store: LruStore[str] = LruStore(capacity=2)

    def get(key: str) -> str:
        return store.get(key, lambda: made.append(key) or key.upper())

    assert [get("a"), get("b"), get("a")] == ["A", "B", "A"]
    assert made == ["a", "b"]  # "a" was kept, not made again
    get("c")  # over capacity: "b" is the least recently used ("a" was read after it)
    assert "a" in store and "c" in store and "b" not in store
    get("b")
    assert made == ["a", "b", "c", "b"]
    store.clear()
    assert "a" not in store
