"""Settings for a production cluster: security passed to the clients, secrets kept out of
sight, durability of created topics, the local broker's SASL listener, /healthz stalls."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stream_app.engine.clients import KafkaConnection, client_config, producer_config
from stream_app.kafka_local.config import LocalKafkaConfig, LocalKafkaError
from stream_app.kafka_local.config import render_server_properties as render
from stream_app.observability import CommitWatch
from stream_app.settings import Settings
from stream_app.topics import topic_specs


def test_sasl_ssl_settings_reach_every_client_config_and_no_repr() -> None:
    settings = Settings(
        bootstrap_servers="b1:9096",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="roi",
        kafka_sasl_password="s3cret",
        kafka_ssl_ca_location="/etc/ca.pem",
        kafka_client_config={"client.rack": "eu-1a"},
    )
    expected = {
        "bootstrap.servers": "b1:9096",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "roi",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ca.pem",
        "client.rack": "eu-1a",
    }
    for config in (client_config(settings.kafka), producer_config(settings.kafka)):
        assert expected.items() <= config.items()
    shown = repr(settings) + str(settings) + repr(settings.kafka) + str(settings.kafka)
    assert "s3cret" not in shown


def test_a_plain_bootstrap_string_is_still_a_plaintext_connection() -> None:
    assert client_config("h:1") == client_config(KafkaConnection("h:1"))
    assert Settings().kafka.security == {"security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    "bad",
    [
        {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"},  # no password
        {"kafka_ssl_ca_location": "/ca.pem"},  # TLS file without TLS
        {"replication_factor": 2, "min_insync_replicas": 3},
    ],
)
def test_settings_that_cannot_work_are_refused_at_start(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]


def test_created_topics_take_replication_and_min_isr_or_the_broker_defaults() -> None:
    specs = topic_specs(Settings(replication_factor=3, min_insync_replicas=2))
    assert {s.replication_factor for s in specs} == {3}
    assert {s.config["min.insync.replicas"] for s in specs} == {"2"}
    defaults = topic_specs(Settings())
    assert {s.replication_factor for s in defaults} == {-1}  # the broker's
    assert all("min.insync.replicas" not in s.config for s in defaults)


def test_local_broker_opens_a_sasl_listener_only_when_asked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plain = render(LocalKafkaConfig(data_dir=tmp_path))
    assert "SASL" not in plain
    cfg = LocalKafkaConfig(data_dir=tmp_path, sasl_port=9094, sasl_users={"app": "pw"})
    props = dict(line.split("=", 1) for line in render(cfg).splitlines()[1:])
    assert props["listeners"].endswith(",SASL_PLAINTEXT://127.0.0.1:9094")
    assert "SASL_PLAINTEXT://127.0.0.1:9094" in props["advertised.listeners"]
    assert props["sasl.enabled.mechanisms"] == "PLAIN"
    assert 'user_app="pw"' in props["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    with pytest.raises(LocalKafkaError):
        LocalKafkaConfig(data_dir=tmp_path, sasl_port=9093)  # the controller's, no users


def test_commit_watch_goes_red_only_on_processed_records_left_uncommitted() -> None:
    now = [0.0]
    watch = CommitWatch(max_age=60, clock=lambda: now[0])
    assert watch.check("roi", processed=0, committed=0) is None
    now[0] = 3600  # idle for an hour: healthy
    assert watch.check("roi", processed=0, committed=0) is None
    assert watch.check("roi", processed=50, committed=0) is None  # work arrives
    now[0] += 30
    assert watch.check("roi", processed=80, committed=1) is None  # committed: reset
    assert watch.check("roi", processed=90, committed=1) is None
    now[0] += 61
    problem = watch.check("roi", processed=120, committed=1)
    assert problem == "roi: 40 records processed, none committed for 61 s"
    assert watch.check("roi", processed=120, committed=2) is None  # commits again
