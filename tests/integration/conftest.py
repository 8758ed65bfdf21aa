"""One real Apache Kafka broker for the whole integration session.

Started on free ports with a temporary data directory (the jar cache is shared, so only
the first run anywhere resolves from Maven Central). Nothing skips: an integration test
that cannot get its broker fails. Each test gets its own app id and topic prefix, so tests
never see each other's data.

The broker has a second client listener, SASL_PLAINTEXT with the PLAIN mechanism
(``kafka_sasl``), so the security settings are tested against the same broker rather than
a second one.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from stream_app.kafka_local import LocalKafkaConfig, start, stop
from stream_app.settings import Settings, Topics

from .ports import free_ports


@pytest.fixture(scope="session")
def kafka_config(tmp_path_factory: pytest.TempPathFactory) -> LocalKafkaConfig:
    """The session broker's configuration (a test may stop and start it)."""
    port, controller_port, sasl_port = free_ports(3)
    return replace(
        LocalKafkaConfig.from_env(),
        port=port,
        controller_port=controller_port,
        data_dir=tmp_path_factory.mktemp("kafka"),
        sasl_port=sasl_port,
        sasl_users={SASL_USER: secrets.token_urlsafe(16)},
    )


SASL_USER = "stream_app"


@dataclass(frozen=True)
class SaslListener:
    """The session broker's SASL_PLAINTEXT (PLAIN) listener and its one user."""

    bootstrap: str
    username: str
    password: str


@pytest.fixture(scope="session")
def kafka(kafka_config: LocalKafkaConfig) -> Iterator[str]:
    """Bootstrap address of the session's broker."""
    config = kafka_config
    info = start(config)
    try:
        yield info.bootstrap
    finally:
        stop(config)


@pytest.fixture(scope="session")
def kafka_sasl(kafka: str, kafka_config: LocalKafkaConfig) -> SaslListener:
    """The session broker's SASL listener (started with it)."""
    assert kafka_config.sasl_bootstrap is not None
    password = kafka_config.sasl_users[SASL_USER]
    return SaslListener(kafka_config.sasl_bootstrap, SASL_USER, password)


@pytest.fixture
def make_settings(kafka: str):  # type: ignore[no-untyped-def]
    """Factory of isolated settings: a fresh app id and topic prefix per call."""

    def make(**overrides: object) -> Settings:
        tag = uuid.uuid4().hex[:8]
        base: dict[str, object] = {
            "bootstrap_servers": kafka,
            "app_id": f"test-{tag}",
            "topics": Topics(prefix=f"{tag}-"),
            "metrics_port": 0,
            "partitions": 2,
            "commit_interval_seconds": 0.2,
        }
        return Settings(**{**base, **overrides})  # type: ignore[arg-type]

    return make
