"""A real Prometheus, with the repo's rule files, scraping a real worker on the real broker.

Every query of both Grafana dashboards must return series (the few that need events this
short run cannot produce must at least evaluate), every recording and alert rule must
evaluate without error, and the worker's target must be up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from stream_app.generator import Scenario, estimate_records, generate_to_kafka
from stream_app.observability import Metrics
from stream_app.settings import Settings
from stream_app.topics import create_topics

from .ports import free_ports
from .running import run_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import build_dashboards  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# Series that only exist once something this run does not do has happened, each with why.
NEEDS_RARE_EVENTS = {
    "stream_app_reviews_unscored_total": "no empty or non-English review in this scenario",
    "stream_app_model_progressive_mae_ratio": "a forecast is scored only when its window "
    "matures, after the attribution window",
    "stream_app_campaign_alert_info": "only while a ROI-drop alert fires, and this scenario "
    "has no drop (tests/unit/observability/test_alert_metrics.py sets and clears it)",
}


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(base URL, metrics port to serve): Prometheus scraping that port every second."""
    web_port, metrics_port = free_ports(2)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in sorted((ROOT / "prometheus" / "rules").glob("*.yml"))],
        "scrape_configs": [
            {
                "job_name": "stream-app",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{web_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{web_port}"
    try:
        deadline = time.monotonic() + 30
        while not _ready(url):
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.2)
        yield url, metrics_port
    finally:
        process.terminate()
        process.wait(10)
        log.close()


async def test_dashboards_and_rules_work_on_a_real_prometheus(  # type: ignore[no-untyped-def]
    make_settings, prometheus: tuple[str, int]
) -> None:
    url, metrics_port = prometheus
    # clicks unconverted after 60 s are the conversion model's negatives (so its AUC
    # exists), and conversions without a click are unattributed after 30 s
    settings: Settings = make_settings(label_window_seconds=60.0, conversion_grace_seconds=30.0)
    await create_topics(settings)
    scenario = Scenario(
        seed=5,
        n_campaigns=4,
        start_ts=time.time() - 300,
        duration_seconds=300.0,
        clicks_per_second=4.0,
        reviews_per_minute=12.0,
        conversion_grace_seconds=settings.conversion_grace_seconds,
        late_max_seconds=20.0,
    )
    # sent over ~40 s while Prometheus watches, so spend and revenue move between scrapes
    rate = estimate_records(scenario) / 40
    traffic = asyncio.create_task(generate_to_kafka(scenario, settings, rate=rate))
    metrics = Metrics(CollectorRegistry(), max_campaigns=50)
    server, _ = start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
    queries = {expr: _instantiate(expr) for expr in build_dashboards.expressions()}
    empty: dict[str, list[Any]] = {}

    async def every_panel_has_data() -> bool:
        results = await asyncio.to_thread(lambda: {e: _query(url, q) for e, q in queries.items()})
        empty.clear()
        empty.update({e: r for e, r in results.items() if not r and not _rare(e)})
        return not empty

    try:
        with contextlib.suppress(TimeoutError):  # then `empty` names the panels without data
            await run_until(settings, lambda _: every_panel_has_data(), metrics=metrics, limit=90)
        targets = _get(url, "/api/v1/targets")["data"]["activeTargets"]
    finally:
        server.shutdown()
        await traffic
    assert list(empty) == []
    assert [t["health"] for t in targets] == ["up"]
    for promql in queries.values():  # the rare ones too: they must evaluate, even if empty
        _query(url, promql)

    rules = _get(url, "/api/v1/rules")["data"]["groups"]
    assert {g["name"] for g in rules} == {"stream-app-campaigns", "stream-app-operations"}
    unhealthy = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"]]
    assert [u for u in unhealthy if u[1]] == []
    roi = _query(url, _instantiate("campaign:stream_app_campaign_roi_ratio:15m"))
    assert {s["metric"]["campaign"] for s in roi} == {p.campaign_id for p in scenario.profiles()}


def _instantiate(expr: str) -> str:
    """Grafana's variables as Grafana would fill them: all campaigns, a 30 s rate window."""
    return expr.replace("$campaign", ".*").replace("$__rate_interval", "30s")


def _rare(expr: str) -> bool:
    return any(name in expr for name in NEEDS_RARE_EVENTS)


def _get(url: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}{path}{query}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body


def _query(url: str, promql: str) -> list[Any]:
    return list(_get(url, "/api/v1/query", query=promql)["data"]["result"])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
