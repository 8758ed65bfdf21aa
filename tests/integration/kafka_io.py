"""Producing test input on the real broker, with the product's client (confluent-kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from stream_app.engine.clients import producer_config
from stream_app.settings import Settings

Outgoing = tuple[str, str, bytes] | tuple[str, str, bytes, int | None]
"""(topic, key, value) or (topic, key, value, partition); partition None: by key."""


async def produce(settings: Settings, records: Iterable[Outgoing]) -> None:
    """Send ``records`` in order and return once all are acknowledged; raises the first
    failed delivery."""
    await asyncio.to_thread(_produce, settings.bootstrap_servers, list(records))


def _produce(bootstrap_servers: str, records: list[Outgoing]) -> None:
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failures.append(error)

    # the product's producer settings: Kafka's murmur2 partitioner above all, so a key lands
    # on the partition the co-partitioned topics expect
    producer = Producer(
        producer_config(
            bootstrap_servers,
            {"acks": "all", "enable.idempotence": True, "on_delivery": on_delivery},
        )
    )
    for record in records:
        topic, key, value = record[0], record[1], record[2]
        partition = record[3] if len(record) == 4 else None
        producer.produce(topic, value, key.encode(), -1 if partition is None else partition)
        producer.poll(0)
    undelivered = producer.flush(60)
    if failures:
        raise KafkaException(failures[0])
    if undelivered:
        raise TimeoutError(f"{undelivered} records not delivered within 60 s")
