"""The Prometheus rules, Alertmanager routes, Grafana dashboards and docker-compose.yml.

promtool and amtool (Debian's ``prometheus`` and ``prometheus-alertmanager``, installed by
``make system-deps``) check the files and run the alert unit tests in
``prometheus/tests/``; the rest checks that every name the files use is real: metric names
against the worker's registry, settings against :class:`Settings`, commands against the CLI.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from stream_app.cli import app
from stream_app.observability import Metrics
from stream_app.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "prometheus"

sys.path.insert(0, str(ROOT / "tools"))
import build_dashboards  # noqa: E402


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: `make system-deps` installs it (Debian prometheus packages)"
    return path


def run(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_prometheus_config_and_rules_are_valid() -> None:
    out = run(tool("promtool"), "check", "config", "prometheus/prometheus.yml")
    assert "2 rule files found" in out


def test_alert_rules_pass_their_unit_tests() -> None:
    tests = sorted(p.name for p in (PROMETHEUS / "tests").glob("*.test.yml"))
    assert tests == ["campaigns.test.yml", "operations.test.yml"]
    out = run(tool("promtool"), "test", "rules", *tests, cwd=PROMETHEUS / "tests")
    assert out.count("SUCCESS") == len(tests)


def test_every_alert_has_a_unit_test_and_a_runbook_section() -> None:
    alerts = {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}
    tested = {
        case["alertname"]
        for path in (PROMETHEUS / "tests").glob("*.test.yml")
        for group in yaml.safe_load(path.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(alerts) == tested
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["runbook"] == f"docs/monitoring.md#{name.lower()}"
        assert f"### {name}\n" in doc


def test_alertmanager_config_is_valid_and_routes_every_severity() -> None:
    run(tool("amtool"), "check-config", "prometheus/alertmanager.yml")
    config = yaml.safe_load((PROMETHEUS / "alertmanager.yml").read_text())
    routed = {m for route in config["route"]["routes"] for m in route["matchers"]}
    assert routed == {'severity="page"'}  # and ticket goes to the default receiver
    assert config["route"]["receiver"] == "ticket"


def test_dashboards_are_generated_from_tools_build_dashboards() -> None:
    assert build_dashboards.main(["--check"]) == 0


def test_every_metric_the_files_use_is_exported_or_recorded() -> None:
    exported = exported_names()
    recorded = {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}
    used: set[str] = set()
    for text in [*build_dashboards.expressions(), *rule_exprs()]:
        used |= set(re.findall(r"\b(?:stream_app_\w+|campaign:\w+:\w+)", text))
    assert used, "no metric names found"
    assert used - exported - recorded == set()
    # the campaign dashboard shows every per-campaign metric the worker exports
    campaign_metrics = {n for n in exported if n.startswith("stream_app_campaign_")}
    campaign_dashboard = " ".join(build_dashboards.expressions(build_dashboards.CAMPAIGN_ROI))
    assert {n for n in campaign_metrics if n not in campaign_dashboard} == set()


def test_compose_files_settings_and_commands_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services: dict[str, Any] = compose["services"]
    for service in services.values():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):
                assert (ROOT / host).exists(), host
        for name in service.get("environment", {}):
            if name.startswith("STREAM_APP_"):
                field = name.removeprefix("STREAM_APP_").lower()
                assert field in Settings.model_fields, name
        if service.get("build") == ".":
            command = _click_command()
            args = service["command"]
            sub = command.commands[args[0]]  # type: ignore[attr-defined]
            sub.make_context(args[0], list(args[1:]))  # raises on an unknown option
    assert (ROOT / "Dockerfile").exists()
    worker_port = services["worker"]["environment"]["STREAM_APP_METRICS_PORT"]
    prometheus = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"worker:{worker_port}"]
    alertmanagers = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]
    assert "alertmanager" in services
    datasource = yaml.safe_load(
        (ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in services


# -- helpers ----------------------------------------------------------------------------
def rule_groups() -> list[dict[str, Any]]:
    return [
        group
        for path in sorted((PROMETHEUS / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
    ]


def rule_exprs() -> list[str]:
    return [r["expr"] for g in rule_groups() for r in g["rules"]]


def exported_names() -> set[str]:
    """Every sample name the worker's registry can expose (histograms, counters expanded)."""
    metrics = Metrics(CollectorRegistry(), max_campaigns=1)
    names: set[str] = set()
    for family in metrics.registry.collect():
        if family.type == "histogram":
            names |= {f"{family.name}{s}" for s in ("_bucket", "_sum", "_count")}
        elif family.type == "counter":
            names.add(f"{family.name}_total")
        else:
            names.add(family.name)
    return names


def _click_command() -> Any:
    import typer.main

    return typer.main.get_command(app)
