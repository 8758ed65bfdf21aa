"""Records sent to every partition of a topic, to move each partition's event time."""

from __future__ import annotations

import orjson

from stream_app.settings import Settings

from .kafka_io import produce


async def to_every_partition(settings: Settings, topic: str, value: dict[str, object]) -> None:
    """``value`` with ``{p}`` in its string fields replaced by the partition number."""
    records = []
    for p in range(settings.partitions):
        filled = {k: v.format(p=p) if isinstance(v, str) else v for k, v in value.items()}
        records.append((topic, "probe", orjson.dumps(filled), p))
    await produce(settings, records)


async def advance_click_time(settings: Settings, ts: float) -> None:
    """A sentinel click in every partition moves click time past the grace period, so
    conversions whose click never came are given up on (reported as unattributed)."""
    sentinel = {
        "schema_version": 1,
        "event_id": "sentinel-{p}",
        "click_id": "sentinel-{p}",
        "campaign_id": "sentinel",
        "channel": "none",
        "user_id": "none",
        "ts": ts,
    }
    await to_every_partition(settings, settings.topics.clicks, sentinel)


async def advance_conversion_time(settings: Settings, ts: float) -> None:
    """An orphan conversion in every partition moves the conversion watermark to ``ts``."""
    orphan = {
        "schema_version": 1,
        "event_id": f"probe-{{p}}-{ts}",
        "click_id": "probe-{p}",
        "revenue": 1.0,
        "currency": "USD",
        "ts": ts,
    }
    await to_every_partition(settings, settings.topics.conversions, orphan)
