"""The in-memory store: dicts and heaps, nothing persisted (unit tests, the default)."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from typing import Any


class MemoryTable:
    """A dict behind the :class:`~.interface.Table` interface."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def get(self, key: str) -> Any | None:
        return self._data.get(key)

    def put(self, key: str, value: Any) -> None:
        self._data[key] = value

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def keys(self) -> AbstractSet[str]:
        return self._data.keys()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MemoryTable):
            return self._data == other._data
        if isinstance(other, dict):
            return self._data == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class MemoryIndex:
    """A min-heap of (order, item).

    Examples
    --------
    >>> index = MemoryIndex()
    >>> index.add(3.0, "c"); index.add(1.0, "a"); index.add(2.0, "b")
    >>> index.pop_before(3.0)
    [(1.0, 'a'), (2.0, 'b')]
    """

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []

    def add(self, order: float, item: str) -> None:
        heapq.heappush(self._heap, (order, item))

    def pop_before(self, bound: float) -> list[tuple[float, str]]:
        heap, out = self._heap, list[tuple[float, str]]()
        while heap and heap[0][0] < bound:
            entry = heapq.heappop(heap)
            if not out or out[-1] != entry:  # one entry per (order, item), as on disk
                out.append(entry)
        return out


class MemoryStore:
    """Tables and indexes in process memory; never current after a restart."""

    def __init__(self) -> None:
        self._tables: dict[str, MemoryTable] = {}
        self._indexes: dict[str, MemoryIndex] = {}
        self._token = 0

    def table(self, name: str) -> MemoryTable:
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = MemoryTable()
        return table

    def index(self, name: str) -> MemoryIndex:
        index = self._indexes.get(name)
        if index is None:
            index = self._indexes[name] = MemoryIndex()
        return index

    def seal(self) -> int:
        self._token += 1
        return self._token

    def commit(self, token: int, offset: int) -> None:
        """Nothing to persist: the changelog alone restores this store."""

    def position(self) -> tuple[str, int] | None:
        return None

    def close(self) -> None:
        """Nothing to release."""
