"""Reading the output topics back: for the live view, the tools and the tests.

The blocking confluent-kafka (librdkafka) consumer runs in a thread (``asyncio.to_thread``),
so readers never hold up the event loop they are awaited on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import TypeVar

import msgspec
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from .domain.records import CampaignLatest
from .engine.clients import PARTITION_EOF, Kafka, client_config
from .engine.stage import Record

T = TypeVar("T")

READER_GROUP = "stream-app-outputs-reader"
"""librdkafka requires a group id; readers only ``assign()``, so they never join it and
never commit to it."""
METADATA_TIMEOUT_S = 30.0
_BATCH = 5000
_WAIT_S = 0.1
"""Longest wait for a record before the positions are checked again: the end may be a
transaction marker or aborted records, which advance the position but yield no record."""


def _consumer(bootstrap_servers: Kafka) -> Consumer:
    return Consumer(
        client_config(
            bootstrap_servers,
            {
                "group.id": READER_GROUP,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            },
        )
    )


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    """The topic's partition numbers; none if it does not exist (yet)."""
    described = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
    if described is None:
        return []
    error: KafkaError | None = described.error
    if error is not None:
        if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return []
        raise KafkaException(error)
    return sorted(described.partitions)


def _fetch(consumer: Consumer, wait_s: float) -> list[Message]:
    """What has been fetched, or else the first record within ``wait_s``.

    (``consume(n, timeout)`` waits for all ``n`` records or the whole timeout.)
    """
    return consumer.consume(_BATCH, 0) or consumer.consume(1, wait_s)


def _record(message: Message) -> Record:
    kind, ts = message.timestamp()
    return Record(
        message.topic() or "",
        message.partition() or 0,
        message.offset() or 0,
        None if kind == TIMESTAMP_NOT_AVAILABLE else ts,
        message.key(),
        message.value(),
    )


_TRANSIENT = frozenset(  # librdkafka's local codes are spelt with a leading underscore
    (PARTITION_EOF, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)  # noqa: SLF001
)


_LEADER_MOVING = frozenset(
    (
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TRANSPORT,  # noqa: SLF001
        KafkaError._TIMED_OUT,  # noqa: SLF001
    )
)
"""Errors of a partition whose leader is not (yet) there: a broker restarting."""


def _is_record(message: Message) -> bool:
    """True for a record; False for an event librdkafka recovers from by itself (a lost
    connection, say); raises for any other error."""
    error = message.error()
    if error is None:
        return True
    if not error.fatal() and (error.retriable() or error.code() in _TRANSIENT):
        return False
    raise KafkaException(error)


async def read_all(bootstrap_servers: Kafka, topic: str, *, timeout_ms: int = 1000) -> list[Record]:
    """Every committed record of ``topic`` up to its current end, in partition order.

    The end is each partition's last stable offset when the call starts (read_committed):
    records committed later are not returned, and an open transaction is not waited for.
    ``timeout_ms`` bounds one wait for records (at most 0.1 s), not the whole read.
    """
    cancelled = threading.Event()
    try:
        return await asyncio.to_thread(
            _read_all, bootstrap_servers, topic, timeout_ms / 1000, cancelled
        )
    finally:
        cancelled.set()  # a cancelled caller stops the thread at its next fetch


def _read_all(
    bootstrap_servers: Kafka, topic: str, timeout_s: float, cancelled: threading.Event
) -> list[Record]:
    consumer = _consumer(bootstrap_servers)
    try:
        partitions = _partitions(consumer, topic)
        end: dict[int, int] = {}
        for p in partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p))
            if high > low:
                end[p] = high
        out: dict[int, list[Record]] = {p: [] for p in end}
        if not end:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in end])
        remaining = set(end)
        while remaining and not cancelled.is_set():
            for message in _fetch(consumer, min(timeout_s, _WAIT_S)):
                if not _is_record(message):
                    continue
                at, offset = message.partition(), message.offset()
                if at in remaining and offset is not None and offset < end[at]:
                    out[at].append(_record(message))
            # A transaction's marker takes an offset but is no record: the position, not a
            # count of records, says when a partition has reached its end.
            done = [
                tp
                for tp in consumer.position([TopicPartition(topic, p) for p in remaining])
                if tp.offset >= end[tp.partition]
            ]
            if done:
                consumer.pause(done)
                remaining.difference_update(tp.partition for tp in done)
        return [record for p in sorted(out) for record in out[p]]
    finally:
        consumer.close()


def _watermarks(consumer: Consumer, tp: TopicPartition) -> tuple[int, int]:
    """The partition's offsets, waiting out a leader that is still being elected (a broker
    just restarted answers ``NOT_LEADER_FOR_PARTITION`` for a moment)."""
    deadline = time.monotonic() + METADATA_TIMEOUT_S
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=METADATA_TIMEOUT_S)
            return low, high
        except KafkaException as exc:
            error = exc.args[0]
            moving = error.retriable() or error.code() in _LEADER_MOVING
            if error.fatal() or not moving or time.monotonic() > deadline:
                raise
            time.sleep(_WAIT_S)


def decode_all(records: list[Record], type_: type[T]) -> list[T]:
    decoder = msgspec.json.Decoder(type_)
    return [decoder.decode(r.value) for r in records if r.value is not None]


async def latest_by_campaign(bootstrap_servers: Kafka, topic: str) -> dict[str, CampaignLatest]:
    """The newest ``campaign-roi-latest`` record of each campaign (what a bidder sees)."""
    latest: dict[str, CampaignLatest] = {}
    for record in decode_all(await read_all(bootstrap_servers, topic), CampaignLatest):
        current = latest.get(record.campaign_id)
        if current is None or record.revision > current.revision:
            latest[record.campaign_id] = record
    return latest


async def follow(
    bootstrap_servers: Kafka, topic: str, type_: type[T], *, from_beginning: bool = True
) -> AsyncIterator[T]:
    """Decode records of ``topic`` as they are committed, forever.

    Waits for the topic to exist; partitions added to it later are not followed.
    """
    decoder = msgspec.json.Decoder(type_)
    consumer = await asyncio.to_thread(_consumer, bootstrap_servers)
    try:
        partitions = await asyncio.to_thread(_partitions, consumer, topic)
        while not partitions:  # not created yet
            await asyncio.sleep(1.0)
            partitions = await asyncio.to_thread(_partitions, consumer, topic)
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in partitions])
        while True:
            for message in await asyncio.to_thread(_fetch, consumer, 0.5):
                if _is_record(message) and (value := message.value()) is not None:
                    yield decoder.decode(value)
    finally:
        # after a cancelled consume, close() waits in its thread for that call to return
        await asyncio.to_thread(consumer.close)
