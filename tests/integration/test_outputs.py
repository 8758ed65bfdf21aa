"""The product's own Kafka I/O on the real broker, without a worker: topics, the generator's
producer and the read_committed reader (``stream_app.outputs``)."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from stream_app.generator import Scenario, generate_to_kafka
from stream_app.generator.traffic import TrafficGenerator
from stream_app.outputs import read_all
from stream_app.settings import Settings
from stream_app.topics import create_topics, topic_specs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_topics_are_created_once_with_their_configs(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings()
    created = await create_topics(settings)
    assert sorted(created) == sorted(s.topic for s in topic_specs(settings))
    assert await create_topics(settings) == []
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    metadata = admin.list_topics(timeout=10)
    for name in created:
        partitions = metadata.topics[name].partitions
        assert len(partitions) == settings.partitions
        assert all(p.leader >= 0 for p in partitions.values())
    resource = ConfigResource(ResourceType.TOPIC, settings.topics.dead_letter)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["max.message.bytes"].value == "1048588"
    assert configs["message.timestamp.type"].value == "LogAppendTime"


async def test_generated_traffic_reads_back_exactly_and_co_partitioned(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(partitions=3)
    await create_topics(settings)
    scenario = Scenario(seed=5, duration_seconds=120.0, clicks_per_second=50.0, bad_share=0.05)
    truth = await generate_to_kafka(scenario, settings)
    sent = list(TrafficGenerator(scenario))
    assert truth.total_emitted == len(sent)

    names = {"click": settings.topics.clicks, "conversion": settings.topics.conversions}
    names |= {"spend": settings.topics.spend, "review": settings.topics.reviews}
    partition_of: dict[bytes, int] = {}
    for kind, topic in names.items():
        records = await read_all(settings.bootstrap_servers, topic)
        expected = [(r.key, r.value) for r in sent if r.topic_kind == kind]
        assert sorted((r.key or b"", r.value or b"") for r in records) == sorted(expected)
        by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
        for r in records:
            assert r.topic == topic
            assert (r.timestamp or 0) > 0  # the broker's append time
            by_partition[r.partition].append((r.key, r.value))
            # murmur2, as Kafka's Java client: one key, one partition number, every topic
            if r.key:
                assert partition_of.setdefault(r.key, r.partition) == r.partition
        # within a partition, in the order sent
        for p, got in by_partition.items():
            keyed = [(k, v) for k, v in got if k]
            keys = {k for k, _ in keyed}
            assert keyed == [(k, v) for k, v in expected if k in keys], p
    assert await read_all(settings.bootstrap_servers, f"missing-{uuid.uuid4().hex[:6]}") == []


async def test_read_all_reads_committed_records_up_to_the_last_stable_offset(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(partitions=1)
    await create_topics(settings)
    topic = settings.topics.campaign_roi
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "transactional.id": f"it-{uuid.uuid4().hex[:8]}",
        }
    )
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, b"c1")
    producer.produce(topic, b"c2")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)
    # the log ends in an abort marker: the position must pass it, though no record does
    assert [r.value for r in await read_all(settings.bootstrap_servers, topic)] == [b"c1", b"c2"]

    producer.begin_transaction()
    producer.produce(topic, b"open")
    producer.flush(30)
    started = time.monotonic()
    values = [r.value for r in await read_all(settings.bootstrap_servers, topic)]
    assert values == [b"c1", b"c2"], "read past the last stable offset"
    assert time.monotonic() - started < 5, "waited for the open transaction"
    producer.commit_transaction(30)
    records = await read_all(settings.bootstrap_servers, topic)
    assert [r.value for r in records] == [b"c1", b"c2", b"open"]
    assert [r.offset for r in records] == [0, 1, 5]  # 2, 4: markers; 3: the aborted record
