"""librdkafka configuration shared by every client the product makes (one Kafka client).

Producers use Kafka's Java-compatible murmur2 partitioner: librdkafka's default hashes
keys differently, and co-partitioned topics (clicks and conversions by ``click_id``) must
land records with the same key in the same partition whoever produced them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError

_LOG = logging.getLogger("librdkafka")

PARTITION_EOF = KafkaError._PARTITION_EOF  # noqa: SLF001 (librdkafka's name for a local event)
"""The error code of the end-of-partition event (``enable.partition.eof``)."""

PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    "batch.size": 1024 * 1024,
    "message.max.bytes": 8 * 1024 * 1024,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1024 * 1024,
}


def client_config(bootstrap_servers: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``bootstrap.servers`` plus ``extra``, with librdkafka's log routed to Python logging."""
    return {"bootstrap.servers": bootstrap_servers, "logger": _LOG, **(extra or {})}


def producer_config(
    bootstrap_servers: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A producer's configuration: murmur2 partitioning and batching for throughput."""
    return client_config(bootstrap_servers, {**PRODUCER_DEFAULTS, **(extra or {})})
