"""Counting each event once: event ids remembered for a bounded horizon of event time."""

from __future__ import annotations

from typing import Any

from ..state import MemoryStore, StateStore
from .journal import BucketedLog, Change

BUCKET_SECONDS = 3600


class Deduplicator:
    """Remembers event ids seen within ``horizon_seconds`` of event time.

    Duplicates arrive from producer retries and from upstream replays; the id is kept for
    the horizon after its own event time, then forgotten in whole hour buckets (popped
    from an index by bucket, never a scan of the ids).

    Examples
    --------
    >>> seen = Deduplicator("seen", horizon_seconds=86400)
    >>> seen.first_time("e1", ts=1000.0), seen.first_time("e1", ts=1000.0)
    (True, False)
    """

    def __init__(self, name: str, horizon_seconds: float, store: StateStore | None = None) -> None:
        store = store if store is not None else MemoryStore()
        self.horizon_seconds = horizon_seconds
        self._ids = store.table(name)
        self._by_bucket = store.index(f"{name}|bucket")
        self._put = self._ids.put  # bound once: the per-event path
        self._index = self._by_bucket.add
        self._log: BucketedLog[str] = BucketedLog(name, store)

    def __len__(self) -> int:
        return len(self._ids)

    def first_time(self, event_id: str, ts: float) -> bool:
        if event_id in self._ids:
            return False
        bucket = int(ts // BUCKET_SECONDS)
        self._put(event_id, bucket)  # _add, inlined: once per event
        self._index(bucket, event_id)
        self._log.append(bucket, event_id)
        return True

    def _add(self, event_id: str, bucket: int) -> None:
        self._ids.put(event_id, bucket)
        self._by_bucket.add(bucket, event_id)

    def _forget_before(self, bucket: int) -> None:
        for _, event_id in self._by_bucket.pop_before(bucket):
            self._ids.delete(event_id)

    def expire(self, watermark: float) -> list[Change]:
        first_kept = int((watermark - self.horizon_seconds) // BUCKET_SECONDS)
        self._forget_before(first_kept)
        return self._log.expire_before(first_kept)[1]

    def changes(self) -> list[Change]:
        return self._log.changes()

    def owns(self, key: str) -> bool:
        return self._log.owns(key)

    def restore(self, key: str, value: list[Any] | None) -> None:
        bucket, ids = self._log.restore(key, value)
        if value is None:
            self._forget_before(bucket + 1)
        for event_id in ids:
            self._add(event_id, bucket)
