"""docker-compose.yml checked without a Docker engine: a real compose implementation's
``config`` (Debian's docker-compose, installed by ``make test-deps``) validates it against
the Compose specification; the rest pins what a person running it depends on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from stream_app.kafka_local.config import LocalKafkaConfig, render_server_properties
from stream_app.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose not found: `make test-deps` installs it (Debian docker-compose)"
    return subprocess.run(
        [tool, "--project-directory", str(ROOT), "-f", str(path), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid_for_a_real_compose_implementation(tmp_path: Path) -> None:
    done = compose_config(COMPOSE)
    assert done.returncode == 0, done.stderr
    broken = compose()
    broken["services"]["worker"]["depends_on"]["topics"]["condition"] = "service_finished"
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(yaml.safe_dump(broken))
    assert compose_config(bad).returncode != 0  # the check is not a no-op


def test_kafka_env_is_the_local_brokers_configuration_with_data_on_the_volume() -> None:
    """apache/kafka reads KAFKA_<PROPERTY> ("." as "_", "_" as "__", "-" as "___"); unset
    ones take the image's defaults (log.dirs /tmp/kraft-combined-logs). Every variable
    must name a property the local broker (run by every test session) sets too."""
    kafka = compose()["services"]["kafka"]
    local = dict(
        line.split("=", 1) for line in render_server_properties(LocalKafkaConfig()).splitlines()[1:]
    )
    properties = {
        re.sub(r"(?<!_)_(?!_)", ".", name.removeprefix("KAFKA_"))
        .replace("___", "-")
        .replace("__", "_")
        .lower(): str(value)
        for name, value in kafka["environment"].items()
        if name.startswith("KAFKA_")
    }
    assert set(properties) - set(local) == set()
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "auto.create.topics.enable",
        "group.initial.rebalance.delay.ms",
    ):
        assert properties[key] == local[key], key
    [volume] = kafka["volumes"]
    assert volume == f"kafka-data:{properties['log.dirs']}"
    version = kafka["image"].removeprefix("apache/kafka:")
    assert version == LocalKafkaConfig().kafka_version


def test_prometheus_and_alertmanager_are_the_versions_that_test_the_rules() -> None:
    services = compose()["services"]
    for service, tool in (("prometheus", "promtool"), ("alertmanager", "amtool")):
        path = shutil.which(tool)
        assert path, f"{tool} not found: `make test-deps` installs it"
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        tested = re.search(r"version (\d+\.\d+\.\d+)", out.stdout + out.stderr)
        assert tested, out.stdout + out.stderr
        assert services[service]["image"] == f"prom/{service}:v{tested.group(1)}"
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    assert "prom/prometheus:v2.42.0" in doc


def test_host_ports_leave_the_local_demo_and_broker_alone() -> None:
    settings = Settings()
    demo = {settings.kafka_port, settings.kafka_controller_port, settings.metrics_port}
    published = [
        port for service in compose()["services"].values() for port in service.get("ports", [])
    ]
    for mapping in published:
        address, host_port, _ = mapping.split(":")
        assert address == "127.0.0.1", mapping
        assert int(host_port) not in demo, mapping


def test_order_and_health() -> None:
    services = compose()["services"]
    healthy = {name for name, s in services.items() if "healthcheck" in s}
    assert healthy == {"kafka", "worker", "prometheus", "alertmanager", "grafana"}
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            condition = how["condition"]
            assert condition in {"service_healthy", "service_completed_successfully"}
            assert (condition == "service_healthy") == (needed in healthy), (name, needed)
    worker = services["worker"]
    assert "/healthz" in " ".join(worker["healthcheck"]["test"])
    env = worker["environment"]
    assert env["STREAM_APP_METRICS_BIND_ADDRESS"] == "0.0.0.0"
    state = env["STREAM_APP_STATE_DIR"]
    assert f"worker-state:{state}" in worker["volumes"]


def test_dockerfile_installs_from_the_hash_checked_locks() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "requirements/dev.lock" in text
    assert "requirements/bootstrap.lock" in text
    assert text.count("--require-hashes") >= 2
    assert "--no-deps" in text
    assert "pip install --no-cache-dir ." not in text  # the old unpinned install
