"""Bid metrics: the latest committed decision per campaign, bounded campaign labels."""

from __future__ import annotations

import msgspec
from prometheus_client import CollectorRegistry

from stream_app.domain.bidding import BidBook, BiddingConfig
from stream_app.domain.records import BidInputs, BidSignal
from stream_app.domain.roi import Totals
from stream_app.engine.stage import Outbox
from stream_app.observability import Metrics

T0 = 1_767_225_600.0


def decisions() -> tuple[BidSignal, BidSignal]:
    """Real decisions of the rule: cmp-001 earns well (×1.25), cmp-002 stopped converting
    (pause), as in tests/integration/test_faust_bidder.py."""
    book = BidBook(BiddingConfig(interval_seconds=60.0), "USD")
    for i in range(3000):
        good, bad = i % 20 == 0, i == 0
        book.observe("cmp-001", T0 + i, spend=1.0, clicks=1, conversions=good, revenue=80.0 * good)
        book.observe("cmp-002", T0 + i, spend=1.0, clicks=1, conversions=bad, revenue=40.0 * bad)

    def context(campaign_id: str) -> tuple[Totals | None, BidInputs]:
        return Totals(clicks=3000, conversions=150, revenue=6000.0), BidInputs()

    good, paused = book.tick(T0 + 3000, 1.0, context)
    return good, paused


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_multiplier_and_pause_follow_the_latest_committed_decision() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=5)
    good, paused = decisions()
    assert (good.multiplier, paused.advice) == (1.25, "pause")
    metrics.observe_commit(Outbox(), 0.0, {}, {}, 0.0)  # a commit without decisions
    assert value(registry, "stream_app_campaign_bid_multiplier_ratio", campaign="cmp-001") is None
    metrics.observe_commit(Outbox(bid_signals=[good, paused]), 0.0, {}, {}, 0.0)
    assert value(registry, "stream_app_campaign_bid_multiplier_ratio", campaign="cmp-001") == 1.25
    assert value(registry, "stream_app_campaign_bid_paused", campaign="cmp-001") == 0
    assert value(registry, "stream_app_campaign_bid_paused", campaign="cmp-002") == 1
    assert value(registry, "stream_app_bid_decisions_total", advice="pause") == 1
    resumed = msgspec.structs.replace(
        paused, revision=2, paused=False, advice="resume", multiplier=0.3
    )
    metrics.observe_commit(Outbox(bid_signals=[resumed]), 0.0, {}, {}, 0.0)
    assert value(registry, "stream_app_campaign_bid_paused", campaign="cmp-002") == 0
    assert value(registry, "stream_app_campaign_bid_multiplier_ratio", campaign="cmp-002") == 0.3
    assert value(registry, "stream_app_bid_decisions_total", advice="resume") == 1


def test_bid_labels_share_the_campaign_budget_and_summarise_the_rest() -> None:
    """Beyond the budget: the mean multiplier and how many are paused, as ``other``."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=1)
    good, paused = decisions()
    third = msgspec.structs.replace(good, campaign_id="cmp-003", multiplier=0.75)
    metrics.observe_commit(Outbox(bid_signals=[good, paused, third]), 0.0, {}, {}, 0.0)
    assert value(registry, "stream_app_campaign_bid_multiplier_ratio", campaign="cmp-001") == 1.25
    assert value(registry, "stream_app_campaign_bid_multiplier_ratio", campaign="other") == (
        (paused.multiplier + 0.75) / 2
    )
    assert value(registry, "stream_app_campaign_bid_paused", campaign="other") == 1
    labels = {s.labels.get("campaign") for m in registry.collect() for s in m.samples}
    assert labels <= {"cmp-001", "other", None}
    # a later decision of an "other" campaign replaces its earlier one in the summary
    unpaused = msgspec.structs.replace(paused, revision=2, paused=False, advice="resume")
    metrics.observe_commit(Outbox(bid_signals=[unpaused]), 0.0, {}, {}, 0.0)
    assert value(registry, "stream_app_campaign_bid_paused", campaign="other") == 0
