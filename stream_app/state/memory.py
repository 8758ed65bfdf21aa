"""The in-memory store: dicts and heaps, nothing persisted (unit tests, the default)."""

from __future__ import annotations

import heapq
from typing import Any


class MemoryTable(dict[str, Any]):
    """A dict behind the :class:`~.interface.Table` interface.

    A dict itself, not a wrapper: ``get``, ``in``, ``put`` (``dict.__setitem__``) run as C
    calls with no Python frame per event, and values are kept as they are (no copy, no
    encoding): the default store costs about what the plain dicts did.
    """

    __slots__ = ()

    put = dict.__setitem__

    def delete(self, key: str) -> None:
        self.pop(key, None)


class MemoryIndex:
    """(order, item) entries grouped by order: a list of items per order, and a min-heap
    of the distinct orders.

    Most entries share their order with many others (hour buckets), so adding one is a
    dict lookup and an append, with no tuple and no comparison of items; a new order is
    pushed on the heap once.

    Examples
    --------
    >>> index = MemoryIndex()
    >>> index.add(3.0, "c"); index.add(1.0, "a"); index.add(2.0, "b"); index.add(1.0, "a")
    >>> index.pop_before(3.0)
    [(1.0, 'a'), (2.0, 'b')]
    """

    __slots__ = ("_items", "_orders")

    def __init__(self) -> None:
        self._items: dict[float, list[str]] = {}
        self._orders: list[float] = []  # min-heap of the keys of _items

    def add(self, order: float, item: str) -> None:
        items = self._items.get(order)
        if items is None:
            self._items[order] = [item]
            heapq.heappush(self._orders, order)
        else:
            items.append(item)

    def pop_before(self, bound: float) -> list[tuple[float, str]]:
        orders, by_order = self._orders, self._items
        out: list[tuple[float, str]] = []
        while orders and orders[0] < bound:
            order = heapq.heappop(orders)
            items = by_order.pop(order)
            # ascending, one entry per (order, item), as on disk
            out.extend((order, item) for item in (sorted(set(items)) if len(items) > 1 else items))
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
