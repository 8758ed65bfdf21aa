"""Counting each event once: event ids remembered for a bounded horizon of event time."""

from __future__ import annotations

from .journal import BucketedLog, Change

BUCKET_SECONDS = 3600


class Deduplicator:
    """Remembers event ids seen within ``horizon_seconds`` of event time.

    Duplicates arrive from producer retries and from upstream replays; the id is kept for
    the horizon after its own event time, then forgotten in whole hour buckets.

    Examples
    --------
    >>> seen = Deduplicator("seen", horizon_seconds=86400)
    >>> seen.first_time("e1", ts=1000.0), seen.first_time("e1", ts=1000.0)
    (True, False)
    """

    def __init__(self, name: str, horizon_seconds: float) -> None:
        self.horizon_seconds = horizon_seconds
        self._bucket_of: dict[str, int] = {}
        self._log: BucketedLog[str] = BucketedLog(name)

    def __len__(self) -> int:
        return len(self._bucket_of)

    def first_time(self, event_id: str, ts: float) -> bool:
        if event_id in self._bucket_of:
            return False
        bucket = int(ts // BUCKET_SECONDS)
        self._bucket_of[event_id] = bucket
        self._log.append(bucket, event_id)
        return True

    def expire(self, watermark: float) -> list[Change]:
        first_kept = int((watermark - self.horizon_seconds) // BUCKET_SECONDS)
        buckets, tombstones = self._log.expire_before(first_kept)
        if buckets:
            gone = set(buckets)
            self._bucket_of = {e: b for e, b in self._bucket_of.items() if b not in gone}
        return tombstones

    def changes(self) -> list[Change]:
        return self._log.changes()

    def owns(self, key: str) -> bool:
        return self._log.owns(key)

    def restore(self, key: str, value: list[str]) -> None:
        bucket, ids = self._log.restore(key, value)
        for event_id in ids:
            self._bucket_of[event_id] = bucket
