"""A real single-node Apache Kafka (KRaft) on 127.0.0.1 for development and tests, no Docker.

Jars come from Maven Central via ``mvn`` into a cache outside the repo; the broker runs
as a detached JVM found again through a pid file. See ``docs/local-kafka.md``.
"""

from stream_app.kafka_local.broker import (
    BrokerInfo,
    BrokerNotReadyError,
    BrokerStartError,
    BrokerStatus,
    is_ready,
    start,
    status,
    stop,
    wait_ready,
)
from stream_app.kafka_local.config import LocalKafkaConfig, LocalKafkaError
from stream_app.kafka_local.resolve import JarResolveError, ensure_jars, jars_ready

__all__ = [
    "BrokerInfo",
    "BrokerNotReadyError",
    "BrokerStartError",
    "BrokerStatus",
    "JarResolveError",
    "LocalKafkaConfig",
    "LocalKafkaError",
    "ensure_jars",
    "is_ready",
    "jars_ready",
    "start",
    "status",
    "stop",
    "wait_ready",
]
