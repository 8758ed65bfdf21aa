"""/metrics and /healthz from another host: reachable when bound to all interfaces (what
the container sets), not with the default loopback bind (a local run stays private)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from stream_app.observability import serve_http
from stream_app.settings import Settings
from stream_app.topics import create_topics

from .netns import RemoteClient, get_local, remote_client
from .ports import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def remote() -> Iterator[RemoteClient]:
    with remote_client() as client:
        if isinstance(client, str):
            pytest.skip(client)
        yield client


def test_default_bind_is_private(remote: RemoteClient) -> None:
    address = Settings().metrics_bind_address
    port = serve_http(0, address, CollectorRegistry(), lambda: None)
    assert get_local(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
    status, why = remote.get(f"http://{remote.server_address}:{port}/healthz")
    assert status is None, f"{address} reached from {remote.how}: {why}"


def test_worker_bound_to_all_interfaces_is_scraped_from_another_host(
    make_settings, remote: RemoteClient, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings()
    asyncio.run(create_topics(settings))
    [port] = free_ports(1)
    env = {
        **os.environ,
        "STREAM_APP_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "STREAM_APP_APP_ID": settings.app_id,
        "STREAM_APP_TOPIC_PREFIX": settings.topics.prefix,
        "STREAM_APP_PARTITIONS": str(settings.partitions),
        "STREAM_APP_STATE_DIR": str(tmp_path),
        "STREAM_APP_METRICS_PORT": str(port),
        "STREAM_APP_METRICS_BIND_ADDRESS": "0.0.0.0",
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "stream_app", "worker"], env=env, stdout=log, stderr=log
    )
    base = f"http://{remote.server_address}:{port}"
    try:
        deadline = time.monotonic() + 90
        health: tuple[int | None, str] = (None, "not asked")
        while time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            health = remote.get(f"{base}/healthz")
            if health == (200, "ok\n"):
                break
            time.sleep(1.0)
        assert health == (200, "ok\n"), f"{remote.how}: {health}"
        status, metrics = remote.get(f"{base}/metrics")
        assert status == 200
        assert 'stream_app_worker_ready{worker="roi"} 1.0' in metrics
    finally:
        worker.terminate()
        assert worker.wait(60) == 0
