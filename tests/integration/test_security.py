"""The security settings against the session broker's SASL_PLAINTEXT (PLAIN) listener.

Every client the product makes gets them from ``Settings.kafka``: the admin client
(topic creation), the generator's idempotent producer, the worker's consumers and
transactional producers, the changelog restore reader and the outputs reader. Here all of
them reach the broker only through the SASL listener's bootstrap address; a client that
missed the settings would speak plaintext to it and fail.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from stream_app.engine.clients import KafkaAuthenticationError, client_config
from stream_app.generator import Scenario, generate_to_kafka
from stream_app.outputs import latest_by_campaign
from stream_app.preflight import BrokerUnreachableError, check_broker
from stream_app.runner import build_workers, run_workers
from stream_app.settings import Settings
from stream_app.topics import create_topics

from .conftest import SaslListener

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def sasl_settings(make_settings, sasl: SaslListener, password: str | None = None) -> Settings:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(
        bootstrap_servers=sasl.bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=sasl.username,
        kafka_sasl_password=sasl.password if password is None else password,
        replication_factor=1,
        min_insync_replicas=1,
    )
    return settings


async def test_the_whole_pipeline_runs_over_sasl_and_never_logs_the_password(
    make_settings, kafka_sasl: SaslListener, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    settings = sasl_settings(make_settings, kafka_sasl)
    created = await create_topics(settings)
    assert settings.topics.clicks in created

    scenario = Scenario(
        seed=14,
        n_campaigns=3,
        start_ts=1_767_225_600.0,
        duration_seconds=60.0,
        clicks_per_second=20.0,
        late_max_seconds=30.0,
    )
    truth = await generate_to_kafka(scenario, settings)
    expected = {
        cid: (c.clicks, c.impressions, c.reviews) for cid, c in truth.campaigns.items() if c.clicks
    }
    assert expected, "the scenario made no clicks"

    workers = build_workers(settings)
    task = asyncio.create_task(run_workers(workers))
    seen: dict[str, tuple[int, int, int]] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and seen != expected:
            if task.done():
                task.result()
            await asyncio.sleep(1.0)
            latest = await latest_by_campaign(settings.kafka, settings.topics.campaign_roi_latest)
            seen = {
                cid: (r.cumulative.clicks, r.cumulative.impressions, r.cumulative.reviews)
                for cid, r in latest.items()
                if cid in expected
            }
    finally:
        for worker in workers:
            worker.stop()
        await task
    assert seen == expected
    assert all(w.committed_transactions > 0 for w in workers)  # both groups, transactions

    # the topics got the configured durability, read back over SASL
    admin = AdminClient(client_config(settings.kafka))
    resource = ConfigResource(ResourceType.TOPIC, settings.topics.campaign_roi)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["min.insync.replicas"].value == "1"

    assert kafka_sasl.password not in caplog.text
    assert kafka_sasl.password not in repr(settings) + str(settings) + repr(settings.kafka)


async def test_wrong_password_fails_at_once_and_says_why(
    make_settings, kafka_sasl: SaslListener, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-" + kafka_sasl.password
    settings = sasl_settings(make_settings, kafka_sasl, password=wrong)
    started = time.monotonic()
    with pytest.raises(KafkaAuthenticationError) as refused:
        await create_topics(settings)
    assert time.monotonic() - started < 15  # not librdkafka's 30 s metadata timeout
    message = str(refused.value)
    assert "Authentication failed" in message
    assert f"user {kafka_sasl.username!r}" in message
    assert "STREAM_APP_KAFKA_SASL_PASSWORD" in message or "_PASSWORD" in message
    assert wrong not in message + caplog.text


def test_the_commands_preflight_says_credentials_not_no_broker(
    make_settings, kafka_sasl: SaslListener
) -> None:  # type: ignore[no-untyped-def]
    """What ``stream-app worker`` and the other commands print before building any client."""
    right = sasl_settings(make_settings, kafka_sasl)
    check_broker(right.kafka)  # the right credentials get an answer (it raises otherwise)
    wrong = sasl_settings(make_settings, kafka_sasl, password="not-the-" + kafka_sasl.password)
    started = time.monotonic()
    with pytest.raises(BrokerUnreachableError) as refused:
        check_broker(wrong.kafka)
    assert time.monotonic() - started < 5  # not the 10 s wait for a silent broker
    assert "refused our credentials" in str(refused.value)
    assert "not-the-" not in str(refused.value)


async def test_plaintext_client_cannot_use_the_sasl_listener(
    make_settings, kafka_sasl: SaslListener
) -> None:  # type: ignore[no-untyped-def]
    """The listener really demands SASL: without the settings nothing gets through (so the
    test above could not pass with a client that ignored them)."""
    settings: Settings = make_settings(bootstrap_servers=kafka_sasl.bootstrap)
    admin = AdminClient(client_config(settings.kafka, {"socket.timeout.ms": 3000}))
    with pytest.raises(Exception):  # noqa: B017, PT011  (librdkafka: transport failure)
        await asyncio.to_thread(admin.list_topics, timeout=5)
