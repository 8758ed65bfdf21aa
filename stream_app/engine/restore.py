"""Rebuilding a partition's state from its compacted changelog before it processes."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)


async def read_changelog(
    bootstrap_servers: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, dict[str, object]]:
    """The surviving value of every key of each changelog partition, up to its end.

    Reads ``read_committed`` up to the last stable offset, so state written by a
    transaction that never committed (a crashed worker) is not restored.
    """
    tps = list(partitions)
    state: dict[TopicPartition, dict[str, object]] = {tp: {} for tp in tps}
    if not tps:
        return state
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await reader.start()
    try:
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        end = await reader.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await reader.getmany(*remaining, timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                values = state[tp]
                for record in records:
                    key = record.key.decode() if record.key else ""
                    if record.value is None:
                        values.pop(key, None)
                    else:
                        values[key] = orjson.loads(record.value)
            for tp in list(remaining):
                if await reader.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await reader.stop()
    for tp, values in state.items():
        log.info("restored %s[%d]: %d keys", tp.topic, tp.partition, len(values))
    return state
