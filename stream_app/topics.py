"""Every topic the processor reads or writes, with its partitions and configuration."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .settings import Settings

# The broker stamps each record when it is appended. Producers may send event time as
# the record timestamp, and replayed or backfilled data then looks months old: with
# CreateTime, time-based retention deletes it before it is processed. Event time lives
# in the payload; the record timestamp measures processing latency.
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
COMPACTED = {**APPEND_TIME, "cleanup.policy": "compact"}
STATE = {
    **COMPACTED,
    "max.message.bytes": str(16 * 1024 * 1024),
    "segment.ms": str(3600 * 1000),
}


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Inputs, the repartition topic and the state changelogs share one partition count
    so that co-partitioned topics line up partition for partition (docs/topology.md)."""
    t = settings.topics
    n = settings.partitions

    def spec(name: str, config: dict[str, str] = APPEND_TIME) -> NewTopic:
        return NewTopic(name, num_partitions=n, replication_factor=1, topic_configs=config)

    return [
        spec(t.clicks),
        spec(t.conversions),
        spec(t.spend),
        spec(t.reviews),
        spec(t.reviews_scored),
        spec(t.clicks_scored),
        spec(t.model_quality, COMPACTED),
        spec(t.campaign_deltas),
        spec(t.campaign_roi),
        spec(t.campaign_roi_latest, COMPACTED),
        spec(t.conversions_unattributed),
        spec(t.dead_letter),
        spec(settings.state_topic("attribution"), STATE),
        spec(settings.state_topic("aggregation"), STATE),
    ]


async def create_topics(settings: Settings) -> list[str]:
    """Create whatever topics are missing; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in topic_specs(settings) if s.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile elsewhere
                await admin.create_topics(missing)
            await _wait_for_leaders(admin, [s.name for s in missing])
        return [s.name for s in missing]
    finally:
        await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], limit_seconds: float = 30.0
) -> None:
    """Return once every partition has a leader, so first clients see no retriable errors."""
    async with asyncio.timeout(limit_seconds):
        while True:
            described = await admin.describe_topics(names)
            if all(
                t["error_code"] == 0
                and t["partitions"]
                and all(p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                return
            await asyncio.sleep(0.1)
