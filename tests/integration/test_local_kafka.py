"""The local broker for real: Maven-resolved jars, a KRaft JVM, confluent-kafka clients.

The broker runs on free (non-default) ports with a temporary data dir, so a developer's
own broker on 9092 is never touched; the jar cache is the shared one, so only the very
first run anywhere resolves from Maven Central. Nothing here skips: without Java, Maven
or Maven Central these tests fail, because then ``stream-app kafka start`` would too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream_app.kafka_local import (
    BrokerInfo,
    LocalKafkaConfig,
    ensure_jars,
    is_ready,
    start,
    status,
    stop,
    wait_ready,
)

from .ports import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaConfig]:
    port, controller_port = free_ports(2)
    config = replace(
        LocalKafkaConfig.from_env(),  # keeps the shared jar cache (STREAM_APP_KAFKA_CACHE_DIR)
        port=port,
        controller_port=controller_port,
        data_dir=tmp_path_factory.mktemp("kafka-data"),
    )
    ensure_jars(config)  # resolved once for the whole module, reused when cached
    yield config
    stop(config)  # never leave a JVM behind, whatever failed


@pytest.fixture
def broker(cfg: LocalKafkaConfig) -> BrokerInfo:
    """Idempotent start: the first test launches the broker, later ones reuse it."""
    return start(cfg)


def _create_topic(bootstrap: str) -> str:
    name = f"it-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until the future resolves
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    futures[name].result(timeout=30)
    return name


def _consume(bootstrap: str, topic: str, isolation: str, until: bytes) -> list[bytes]:
    """Read from the beginning until the record ``until`` arrives (or 30 s pass)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"it-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        for _ in range(60):
            for message in consumer.consume(100, 0.5):
                if message.error() is not None:
                    raise KafkaException(message.error())
                if value := message.value():
                    values.append(value)
            if until in values:
                break
    finally:
        consumer.close()
    return values


def test_started_broker_answers_kafka_protocol(broker: BrokerInfo, cfg: LocalKafkaConfig) -> None:
    assert broker.bootstrap == cfg.bootstrap == f"127.0.0.1:{cfg.port}"
    assert cfg.pid_file.read_text().strip() == str(broker.pid)
    wait_ready(cfg.bootstrap, timeout=5)
    assert is_ready(cfg.bootstrap)
    st = status(cfg)
    assert (st.running, st.ready, st.pid) == (True, True, broker.pid)
    assert cfg.broker_log.stat().st_size > 0, "broker logs must go to the data dir"


def test_confluent_kafka_sees_exactly_this_broker(broker: BrokerInfo) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    cluster = admin.describe_cluster(request_timeout=30).result()
    nodes = [(b.id, b.host, b.port) for b in cluster.nodes]
    assert nodes == [(1, "127.0.0.1", int(broker.bootstrap.rsplit(":", 1)[1]))]


def test_second_start_reuses_the_running_broker(broker: BrokerInfo, cfg: LocalKafkaConfig) -> None:
    again = start(cfg)
    assert again.reused
    assert again.pid == broker.pid


def test_produce_consume_round_trip(broker: BrokerInfo) -> None:
    topic = _create_topic(broker.bootstrap)
    failures: list[object] = []
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "on_delivery": lambda err, _: failures.append(err),
        }
    )
    for value in (b"one", b"two", b"three"):
        producer.produce(topic, value, b"k")
    assert producer.flush(30) == 0
    assert failures == [None, None, None]  # every delivery reported, none failed
    assert _consume(broker.bootstrap, topic, "read_uncommitted", b"three") == [
        b"one",
        b"two",
        b"three",
    ]


def test_transactions_commit_and_abort_on_one_node(broker: BrokerInfo) -> None:
    topic = _create_topic(broker.bootstrap)
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": f"it-{uuid.uuid4().hex[:8]}"}
    )
    producer.init_transactions(60)  # InitProducerId: needs __transaction_state at RF 1
    producer.begin_transaction()
    producer.produce(topic, b"committed-1")
    producer.produce(topic, b"committed-2")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    producer.flush(30)  # written to the log, so read_committed must filter it
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"committed-3")
    producer.commit_transaction(30)

    committed = _consume(broker.bootstrap, topic, "read_committed", b"committed-3")
    assert committed == [b"committed-1", b"committed-2", b"committed-3"]
    # The aborted record really was written: read_committed filtered it, not luck.
    raw = _consume(broker.bootstrap, topic, "read_uncommitted", b"committed-3")
    assert b"aborted" in raw


def test_stop_is_clean_and_stale_pid_file_starts_fresh(
    broker: BrokerInfo, cfg: LocalKafkaConfig
) -> None:
    assert stop(cfg) is True
    assert _process_gone(broker.pid)
    assert not cfg.pid_file.exists()
    assert not is_ready(cfg.bootstrap)
    assert status(cfg).running is False
    assert stop(cfg) is False, "stopping a stopped broker is a no-op"

    with subprocess.Popen([sys.executable, "-c", "pass"]) as finished:
        finished.wait()
    cfg.pid_file.write_text(f"{finished.pid}\n")  # a process that no longer exists
    assert status(cfg).running is False
    cfg.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a Kafka broker
    assert status(cfg).running is False

    fresh = start(cfg)
    try:
        assert not fresh.reused
        assert fresh.pid not in (broker.pid, os.getpid())
        assert is_ready(cfg.bootstrap)
    finally:
        assert stop(cfg) is True
    assert _process_gone(fresh.pid)
