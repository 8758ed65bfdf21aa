"""Metrics observed from committed transactions, each test on a fresh registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from stream_app.domain.outcomes import Outcome
from stream_app.domain.records import CampaignLatest
from stream_app.domain.records import Metrics as RecordMetrics
from stream_app.domain.roi import Totals
from stream_app.engine.stage import Outbox
from stream_app.engine.worker import LOOP_PHASES, Worker
from stream_app.observability import Metrics


def latest(campaign: str, spend: float, revenue: float, conversions: int = 0) -> CampaignLatest:
    totals = Totals(spend=spend, revenue=revenue, clicks=10, conversions=conversions)
    return CampaignLatest(
        campaign_id=campaign,
        revision=1,
        cumulative=RecordMetrics.of(totals, "USD"),
        last_window=None,
        too_late_events=0,
        updated_at=0.0,
    )


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_counters_and_latency_follow_the_commit() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=5)
    out = Outbox()
    out.outcomes[("clicks", Outcome.ACCEPTED)] += 7
    out.dead_letters["bad_json"] += 2
    out.unattributed["unknown_click"] += 1
    metrics.observe_commit(out, 0.02, {("clicks", 0): 1_000_000}, {"clicks": 3}, 1_001.5)
    assert value(registry, "stream_app_events_total", topic="clicks", outcome="accepted") == 7
    assert value(registry, "stream_app_dead_letters_total", reason="bad_json") == 2
    assert value(registry, "stream_app_conversions_unattributed_total", reason="unknown_click") == 1
    assert value(registry, "stream_app_consumer_lag_messages", topic="clicks") == 3
    assert value(registry, "stream_app_processing_latency_seconds_count", worker="roi") == 1
    assert value(registry, "stream_app_processing_latency_seconds_sum", worker="roi") == 1.5
    metrics.observer("sentiment")(out, 0.5, {}, {}, 1_001.5)
    assert value(registry, "stream_app_transactions_total", worker="sentiment") == 1
    assert value(registry, "stream_app_commit_duration_seconds_sum", worker="sentiment") == 0.5


def test_campaign_labels_are_bounded_and_the_rest_summed_into_other() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=2)
    out = Outbox()
    out.latest = [latest("a", 10, 20), latest("b", 10, 5), latest("c", 10, 30), latest("d", 30, 10)]
    metrics.observe_commit(out, 0.0, {}, {}, 0.0)
    assert value(registry, "stream_app_campaign_roi_ratio", campaign="a") == 1.0
    assert value(registry, "stream_app_campaign_spend", campaign="other", currency="USD") == 40
    assert value(registry, "stream_app_campaign_roi_ratio", campaign="other") == 0.0  # 40 vs 40
    assert value(registry, "stream_app_campaign_roi_ratio", campaign="c") is None
    labels = {s.labels.get("campaign") for m in registry.collect() for s in m.samples}
    assert labels <= {"a", "b", "other", None}


def test_undefined_ratio_is_absent_not_nan() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=5)
    out = Outbox()
    out.latest = [latest("a", 10, 20)]
    metrics.observe_commit(out, 0.0, {}, {}, 0.0)
    out.latest = [latest("a", 0, 20)]  # no spend: ROI undefined
    metrics.observe_commit(out, 0.0, {}, {}, 0.0)
    assert value(registry, "stream_app_campaign_roi_ratio", campaign="a") is None
    assert value(registry, "stream_app_campaign_revenue", campaign="a", currency="USD") == 20


def test_cpa_clicks_and_conversions_per_campaign() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=5)
    out = Outbox()
    out.latest = [latest("a", 30, 90, conversions=4)]
    metrics.observe_commit(out, 0.0, {}, {}, 0.0)
    assert value(registry, "stream_app_campaign_cpa", campaign="a", currency="USD") == 7.5
    assert value(registry, "stream_app_campaign_clicks", campaign="a") == 10
    assert value(registry, "stream_app_campaign_conversions", campaign="a") == 4
    out.latest = [latest("a", 10, 20)]  # no conversions: CPA undefined
    metrics.observe_commit(out, 0.0, {}, {}, 0.0)
    assert value(registry, "stream_app_campaign_cpa", campaign="a", currency="USD") is None


def test_loop_time_per_phase_is_read_from_the_worker_at_each_scrape() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=5)
    worker = Worker(
        [], bootstrap_servers="unused:9092", group_id="g", transactional_id="t", state_topic=str
    )
    metrics.watch("roi", worker)
    name = "stream_app_worker_loop_seconds_total"
    assert value(registry, name, worker="roi", phase="poll") == 0.0
    worker.loop_seconds["poll"] += 1.5
    worker.loop_seconds["prepare"] += 0.25
    assert value(registry, name, worker="roi", phase="poll") == 1.5
    assert value(registry, name, worker="roi", phase="prepare") == 0.25
    phases = {
        sample.labels["phase"]
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    }
    assert phases == set(LOOP_PHASES)
