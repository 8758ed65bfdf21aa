"""How domain state describes its own changes, so any durable log can persist it.

State objects hand out *changes* — ``(key, value)`` pairs with JSON-compatible values, or
``(key, None)`` to delete — and rebuild themselves from the surviving pairs. The engine
writes them to a compacted Kafka topic inside the same transaction as the outputs and the
input offsets; this module knows nothing of Kafka.

Append-heavy state (seen event ids, clicks awaiting conversions) would cost one record per
event if keyed per item, so :class:`BucketedLog` writes one record per time bucket per flush
and deletes whole buckets when they expire. What the state keeps per item (a click, an
event id) lives in a :class:`~stream_app.state.StateStore`, on disk or in memory; the
domain never imports a database.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from ..state import MemoryStore, StateStore

log = logging.getLogger(__name__)
Change = tuple[str, Any]
T = TypeVar("T")


class Versioned(Protocol):
    version: str
    samples_seen: int


M = TypeVar("M", bound=Versioned)


def restore_model(current: M, state: str, load: Callable[[str], M]) -> M:
    """The saved model, or ``current`` (cold) when this build cannot or should not use it.

    A changelog may hold a model from an older build: unreadable, or of another version
    (features or pipeline changed). Starting that model cold is logged, never fatal.
    """
    try:
        restored = load(state)
    except Exception:
        log.exception("cannot restore the saved %s; starting it cold", current.version)
        return current
    if restored.version != current.version:
        log.warning("model %s replaces the saved %s", current.version, restored.version)
        return current
    return restored


class BucketedLog(Generic[T]):
    """Items appended under integer time buckets; persisted per flush, expired per bucket.

    The keys written so far live in the ``store`` (an ordered index by bucket, and the
    sequence number in a ``meta`` table), so a restarted worker whose store is current
    knows them without re-reading the changelog, and expiry pops whole buckets.

    Examples
    --------
    >>> log: BucketedLog[str] = BucketedLog("seen")
    >>> log.append(7, "a"); log.append(7, "b")
    >>> log.changes()
    [('seen|7|0', ['a', 'b'])]
    >>> log.expire_before(8)
    ([7], [('seen|7|0', None)])
    """

    def __init__(self, name: str, store: StateStore | None = None) -> None:
        self.name = name
        store = store if store is not None else MemoryStore()
        self._pending: dict[int, list[T]] = defaultdict(list)
        self._keys = store.index(f"log|{name}")
        self._meta = store.table("meta")
        self._seq_key = f"seq|{name}"
        self._seq: int = self._meta.get(self._seq_key) or 0

    def append(self, bucket: int, item: T) -> None:
        self._pending[bucket].append(item)

    def changes(self) -> list[Change]:
        """One record per bucket that received items since the last call."""
        out: list[Change] = []
        for bucket, items in self._pending.items():
            key = f"{self.name}|{bucket}|{self._seq}"
            self._keys.add(bucket, key)
            out.append((key, items))
        self._seq += 1
        self._meta.put(self._seq_key, self._seq)
        self._pending = defaultdict(list)
        return out

    def expire_before(self, bucket: int) -> tuple[list[int], list[Change]]:
        """Forget buckets older than ``bucket``; returns them and their tombstones."""
        popped = self._keys.pop_before(bucket)
        old = sorted({int(b) for b, _ in popped} | {b for b in self._pending if b < bucket})
        for b in old:
            self._pending.pop(b, None)
        return old, [(key, None) for _, key in popped]

    def owns(self, key: str) -> bool:
        return key.startswith(self.name + "|")

    def restore(self, key: str, items: list[T] | None) -> tuple[int, list[T]]:
        """Take back one persisted record; returns its bucket and items.

        A tombstone (``items`` None: the bucket expired) forgets every bucket up to its
        own — all of them expired together — and returns no items.
        """
        _, bucket_s, seq_s = key.split("|")
        bucket = int(bucket_s)
        if items is None:
            self._keys.pop_before(bucket + 1)
            return bucket, []
        self._keys.add(bucket, key)
        if int(seq_s) >= self._seq:
            self._seq = int(seq_s) + 1
            self._meta.put(self._seq_key, self._seq)
        return bucket, items
