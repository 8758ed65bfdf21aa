"""The store interface: what the domain reads and writes, and what the engine commits.

The Kafka changelog is the source of truth; a store is a cache of it. The domain writes
through :class:`Table` and :class:`OrderedIndex`; its reads see its own writes at once.
The engine then, per transaction:

1. ``seal()`` right after the state's changes were taken for the changelog: the writes
   since the previous seal become one batch, tied to that transaction;
2. ``commit(token, offset)`` only after the Kafka transaction committed: every batch up to
   ``token`` is persisted together with the changelog offset it reflects (one atomic
   write). A transaction that aborts never reaches the store: its batches are dropped
   with the store's in-memory layer when the worker rejoins or dies.

So a durable store never holds a write that Kafka did not commit, and its ``position()``
is an offset from which replaying the changelog brings it up to date.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from typing import Any, Protocol


class Table(Protocol):
    """String keys to JSON-compatible values (lists come back as lists, never tuples)."""

    def get(self, key: str) -> Any | None: ...

    def put(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...

    def __contains__(self, key: str) -> bool: ...

    def __len__(self) -> int:
        """Exact; may scan the table on disk (tests and diagnostics, not the hot path)."""
        ...

    def __iter__(self) -> Iterator[str]: ...

    def keys(self) -> AbstractSet[str]: ...


class OrderedIndex(Protocol):
    """(order, item) entries popped in ascending order: expiry by time, never a scan.

    Entries are never deleted one by one: a caller that pops an entry checks it against
    its table (a click converted or re-keyed meanwhile is skipped), as with a lazy heap.
    """

    def add(self, order: float, item: str) -> None: ...

    def pop_before(self, bound: float) -> list[tuple[float, str]]:
        """Remove and return every entry with ``order < bound``, ascending (order, item)."""
        ...


class StateStore(Protocol):
    """Named tables and indexes of one stage partition (names must not contain NUL)."""

    def table(self, name: str) -> Table: ...

    def index(self, name: str) -> OrderedIndex: ...


class DurableStore(StateStore, Protocol):
    """A store the engine can persist after each transaction and reuse after a restart."""

    def seal(self) -> int:
        """Close the current batch of writes; its token for :meth:`commit`."""
        ...

    def commit(self, token: int, offset: int) -> None:
        """Persist every batch up to ``token`` with the changelog ``offset`` (next to read)
        they bring the store to — only after the transaction carrying them committed."""
        ...

    def position(self) -> tuple[str, int] | None:
        """(changelog topic, next offset) that the persisted store reflects; None: nothing."""
        ...

    def close(self) -> None: ...
