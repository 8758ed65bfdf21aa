"""Alert metrics: a firing alert is one info series per campaign that carries its
explanation, removed when the alert resolves; counted only once its transaction commits."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from stream_app.domain.records import AlertDriver, AlertSentiment, CampaignAlert
from stream_app.engine.stage import Outbox
from stream_app.observability import Metrics

SUMMARY = "cmp-001: ROI 0.80 -> -0.20; CVR -60% (90% of the drop)"


def alert(state: str, campaign: str = "cmp-001", alert_id: str = "a1") -> CampaignAlert:
    return CampaignAlert(
        alert_id=alert_id,
        campaign_id=campaign,
        state=state,  # type: ignore[arg-type]
        severity="page",
        revision=1 if state == "firing" else 2,
        window_start=900.0,
        window_end=1800.0,
        baseline_start=0.0,
        baseline_end=900.0,
        roi_before=0.8,
        roi_now=-0.2,
        z_score=-4.2,
        spend_now=120.0,
        conversions_now=3,
        expected_conversions_now=9.5,
        currency="USD",
        drivers=[AlertDriver(name="cvr", before=0.05, now=0.02, contribution=-0.9, share=0.9)],
        sentiment=AlertSentiment(
            reviews_before=0,
            reviews_now=0,
            mean_before=None,
            mean_now=None,
            negative_share_before=None,
            negative_share_now=None,
        ),
        topics=[],
        summary=SUMMARY,
        fired_at=1800.0,
        resolved_at=None if state == "firing" else 2400.0,
        emitted_at=1.0,
    )


def info(registry: CollectorRegistry, campaign: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in registry.collect()
        if family.name == "stream_app_campaign_alert_info"
        for sample in family.samples
        if sample.labels["campaign"] == campaign and sample.value == 1
    ]


def test_firing_sets_one_series_with_the_explanation_and_resolving_removes_it() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=1)
    metrics.observe_commit(Outbox(), 0.0, {}, {}, 0.0)
    assert info(registry, "cmp-001") == []

    metrics.observe_commit(Outbox(alerts=[alert("firing")]), 0.0, {}, {}, 0.0)
    [labels] = info(registry, "cmp-001")
    assert labels["alert_id"] == "a1"
    assert labels["driver"] == "cvr"
    assert labels["explanation"] == SUMMARY
    total = registry.get_sample_value(
        "stream_app_alerts_total", {"state": "firing", "severity": "page"}
    )
    assert total == 1

    metrics.observe_commit(Outbox(alerts=[alert("resolved")]), 0.0, {}, {}, 0.0)
    assert info(registry, "cmp-001") == []

    # beyond the label budget (1 campaign): counted, but no series of its own
    metrics.observe_commit(Outbox(alerts=[alert("firing", "cmp-002", "a2")]), 0.0, {}, {}, 0.0)
    assert info(registry, "cmp-002") == []
