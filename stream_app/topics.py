"""Every topic the processor reads or writes, with its partitions and configuration."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from .engine.clients import AUTHENTICATION_ERRORS, KafkaAuthenticationError, client_config
from .settings import Settings

ADMIN_TIMEOUT_S = 30.0

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
# The broker's default (1 MiB + 12 bytes of record-batch overhead), set deliberately:
# stream_app.engine.deadletter.MAX_DEAD_LETTER_BYTES (1,000,000) keeps every dead letter's
# value below it, so a dead letter of a huge input is never rejected (which would abort
# the transaction that carries it).
DEAD_LETTER = {**APPEND_TIME, "max.message.bytes": "1048588"}


BROKER_DEFAULT = -1
"""``NewTopic``'s replication factor that leaves it to the broker (KIP-464)."""


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Inputs, the repartition topic and the state changelogs share one partition count
    so that co-partitioned topics line up partition for partition (docs/topology.md).

    Replication factor and min ISR come from the settings, else from the broker's defaults
    (``default.replication.factor``, ``min.insync.replicas``), which a managed cluster sets
    for production and the local single-node broker sets to 1.
    """
    t = settings.topics
    n = settings.partitions
    replicas = settings.replication_factor or BROKER_DEFAULT
    durability = (
        {"min.insync.replicas": str(settings.min_insync_replicas)}
        if settings.min_insync_replicas is not None
        else {}
    )

    def spec(name: str, config: dict[str, str] = APPEND_TIME) -> NewTopic:
        return NewTopic(
            name, num_partitions=n, replication_factor=replicas, config={**config, **durability}
        )

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
        spec(t.bid_signals, COMPACTED),
        spec(t.campaign_alerts),
        spec(t.campaign_alerts_latest, COMPACTED),
        spec(t.review_topics),
        spec(t.conversions_unattributed),
        spec(t.dead_letter, DEAD_LETTER),
        spec(settings.state_topic("attribution"), STATE),
        spec(settings.state_topic("aggregation"), STATE),
        spec(settings.state_topic("sentiment"), STATE),
    ]


async def create_topics(settings: Settings) -> list[str]:
    """Create whatever topics are missing; returns the names created.

    Returns once every partition of them has a leader that serves it, so their first
    clients see no retriable errors.
    """
    return await asyncio.to_thread(_create_topics, settings)


def _create_topics(settings: Settings) -> list[str]:
    errors: list[KafkaError] = []
    admin = AdminClient(client_config(settings.kafka, {"error_cb": errors.append}))
    existing = set(_first_metadata(admin, errors, settings).topics)
    missing = [s for s in topic_specs(settings) if s.topic not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        missing, operation_timeout=ADMIN_TIMEOUT_S, request_timeout=ADMIN_TIMEOUT_S
    )
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # created meanwhile
                raise
    names = [s.topic for s in missing]
    _wait_for_leaders(admin, names)
    return names


def _first_metadata(admin: AdminClient, errors: list[KafkaError], settings: Settings) -> Any:
    """The cluster's metadata, or KafkaAuthenticationError as soon as the cluster refuses
    the credentials or the TLS handshake (librdkafka would only time out, after 30 s, with
    "broker transport failure", and say why in a log line)."""
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while True:
        try:
            return admin.list_topics(timeout=1.0)
        except KafkaException:
            admin.poll(0)  # serves error_cb
            refused = [e for e in errors if e.code() in AUTHENTICATION_ERRORS]
            if refused:
                user = settings.kafka_sasl_username
                who = f" of user {user!r}" if user else ""
                raise KafkaAuthenticationError(
                    f"Kafka at {settings.bootstrap_servers} ({settings.kafka_security_protocol})"
                    f" refused the connection{who}: {refused[0].str()}. Check "
                    "STREAM_APP_KAFKA_SASL_USERNAME, _PASSWORD and the SSL settings "
                    "(docs/deployment.md)."
                ) from None
            if time.monotonic() > deadline:
                raise


def _wait_for_leaders(admin: AdminClient, names: list[str], limit_seconds: float = 30.0) -> None:
    """Return once every partition of ``names`` has a leader that serves it.

    Metadata names a leader a moment (~0.2 s) before the broker answers for the partition;
    until then, requests for it fail (NOT_LEADER_FOR_PARTITION, UNKNOWN_LEADER_EPOCH, ...).
    Raises TimeoutError, from the last such error, if that lasts ``limit_seconds``.
    """
    deadline = time.monotonic() + limit_seconds
    last: KafkaException | None = None
    while True:
        topics = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        if all(
            (t := topics.get(name)) is not None
            and t.error is None
            and t.partitions
            and all(p.leader >= 0 and p.error is None for p in t.partitions.values())
            for name in names
        ):
            partitions = [TopicPartition(n, p) for n in names for p in topics[n].partitions]
            try:
                _list_offsets(admin, partitions)
                return
            except KafkaException as exc:  # just created by us: not served yet
                last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not served after {limit_seconds:.0f} s: {names}") from last
        time.sleep(0.1)


def _list_offsets(admin: AdminClient, partitions: list[TopicPartition]) -> None:
    """Ask each partition's leader for its end offset; raises the first failure."""
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # (no annotations)
    futures = admin.list_offsets({tp: latest for tp in partitions}, request_timeout=ADMIN_TIMEOUT_S)
    for future in futures.values():
        future.result()
