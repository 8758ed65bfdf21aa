"""librdkafka configuration shared by every client the product makes (one Kafka client).

Every client starts from :func:`client_config`, which takes the cluster as a
:class:`KafkaConnection` (bootstrap servers plus security: SASL, TLS) or, on a plaintext
cluster, a bare bootstrap string; so a setting such as ``STREAM_APP_KAFKA_SASL_USERNAME``
reaches the worker, the restore reader, the outputs reader, the generator and the admin
client alike (``Settings.kafka`` builds it; ``docs/deployment.md``).

Producers use Kafka's Java-compatible murmur2 partitioner: librdkafka's default hashes
keys differently, and co-partitioned topics (clicks and conversions by ``click_id``) must
land records with the same key in the same partition whoever produced them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

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


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Where the cluster is and how to authenticate to it, for every client alike.

    ``security`` holds librdkafka properties (``security.protocol``, ``sasl.*``,
    ``ssl.*``) with secrets in clear: it is left out of ``repr`` and ``str``, so logging
    a connection never prints a password.
    """

    bootstrap_servers: str
    security: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        return self.bootstrap_servers


Kafka: TypeAlias = KafkaConnection | str
"""What a Kafka client is given: a connection, or bootstrap servers on a plaintext cluster."""


class KafkaAuthenticationError(RuntimeError):
    """The cluster refused this client's credentials (SASL) or its TLS handshake."""


AUTHENTICATION_ERRORS = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL})  # noqa: SLF001
"""librdkafka's local codes for a refused login or TLS handshake: a setting to fix, not an
outage to wait out."""


def client_config(kafka: Kafka, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Bootstrap servers and security of ``kafka``, plus ``extra``, with librdkafka's log
    routed to Python logging."""
    if isinstance(kafka, str):
        kafka = KafkaConnection(kafka)
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        **kafka.security,
        "logger": _LOG,
        **(extra or {}),
    }


def producer_config(kafka: Kafka, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A producer's configuration: murmur2 partitioning and batching for throughput."""
    return client_config(kafka, {**PRODUCER_DEFAULTS, **(extra or {})})
