"""Rebuilding a partition's state from its compacted changelog before it processes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)


async def read_changelog(
    bootstrap_servers: str, partitions: Iterable[TopicPartition], wait_seconds: float = 60.0
) -> dict[TopicPartition, dict[str, object]]:
    """The surviving value of every key of each changelog partition, up to its end.

    Reads ``read_committed`` up to the high watermark: state written by a transaction that
    never committed (a crashed worker) is skipped, and a transaction whose commit markers
    are not written yet is waited for. (Stopping at the last stable offset instead would,
    right after the previous owner's final commit, restore state without that commit while
    its input offsets are already committed: seen in a test, as a model restored cold.) A
    crashed owner's open transaction blocks until the broker aborts it, so ``wait_seconds``
    should exceed the transaction timeout.
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
        end = await _high_watermarks(bootstrap_servers, tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while remaining:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"changelog not readable to its end: {sorted(remaining)}")
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


async def _high_watermarks(
    bootstrap_servers: str, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """End offsets including records of transactions not yet resolved."""
    probe = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_uncommitted",
    )
    await probe.start()
    try:
        ends: dict[TopicPartition, int] = await probe.end_offsets(tps)
        return ends
    finally:
        await probe.stop()
