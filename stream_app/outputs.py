"""Reading the output topics back: for the live view, the tools and the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from .domain.records import CampaignLatest

T = TypeVar("T")


async def read_all(
    bootstrap_servers: str, topic: str, *, timeout_ms: int = 1000
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of ``topic`` up to its current end, in partition order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=timeout_ms)
            for records in batch.values():
                out.extend(records)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


def decode_all(records: list[ConsumerRecord[bytes, bytes]], type_: type[T]) -> list[T]:
    decoder = msgspec.json.Decoder(type_)
    return [decoder.decode(r.value) for r in records if r.value is not None]


async def latest_by_campaign(bootstrap_servers: str, topic: str) -> dict[str, CampaignLatest]:
    """The newest ``campaign-roi-latest`` record of each campaign (what a bidder sees)."""
    latest: dict[str, CampaignLatest] = {}
    for record in decode_all(await read_all(bootstrap_servers, topic), CampaignLatest):
        current = latest.get(record.campaign_id)
        if current is None or record.revision > current.revision:
            latest[record.campaign_id] = record
    return latest


async def follow(
    bootstrap_servers: str, topic: str, type_: type[T], *, from_beginning: bool = True
) -> AsyncIterator[T]:
    """Decode records of ``topic`` as they are committed, forever."""
    decoder = msgspec.json.Decoder(type_)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        isolation_level="read_committed",
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    try:
        async for record in consumer:
            if record.value is not None:
                yield decoder.decode(record.value)
    finally:
        await consumer.stop()
