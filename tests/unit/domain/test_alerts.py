"""ROI-drop alerts: the decomposition is exact, the detector fires on a real drop only with
evidence, resolves, and its state survives a changelog round trip."""

from __future__ import annotations

import math
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stream_app.domain.alerts import AlertBook, AlertConfig, decompose, roas_of
from stream_app.domain.records import ReviewTopics, ScoredReview, TopicTerms

factor = st.floats(min_value=1e-3, max_value=1e3)
factors = st.fixed_dictionaries(
    {"ctr": factor, "cvr": factor, "order_value": factor, "cpm": factor}
)


@given(factors, factors)
def test_decomposition_is_exact(before: dict[str, float], now: dict[str, float]) -> None:
    drivers = decompose(before, now)
    total = math.log(roas_of(now) / roas_of(before))
    assert math.isclose(sum(d.contribution for d in drivers), total, abs_tol=1e-9)
    if abs(total) > 1e-6:
        assert math.isclose(sum(d.share for d in drivers), 1.0, rel_tol=1e-6)
    assert [d.contribution for d in drivers] == sorted(d.contribution for d in drivers)


START = 1_767_225_600.0


def feed(
    book: AlertBook,
    campaign: str,
    hours: float,
    cvr: Any,
    rng: random.Random,
    clicks_per_minute: int = 60,
) -> list[Any]:
    """A campaign with constant CPC and order value; conversions 0–5 min after the click."""
    alerts = []
    pending: list[tuple[float, float]] = []  # (arrival, click minute)
    for minute in range(int(hours * 60)):
        t = START + minute * 60.0
        book.observe_spend(campaign, t, clicks_per_minute * 0.5, clicks_per_minute * 100)
        book.observe_clicks(campaign, t, clicks_per_minute)
        for _ in range(clicks_per_minute):
            if rng.random() < cvr(t):
                pending.append((t + rng.uniform(0, 300), t))
        due = [p for p in pending if p[0] < t + 60]
        pending = [p for p in pending if p[0] >= t + 60]
        for arrival, click_t in due:
            book.observe_conversions(campaign, click_t, 1, 50.0, arrival - click_t)
        alerts += book.tick(t + 60, t + 60, 0.0)
    return alerts


def test_a_cvr_collapse_fires_names_cvr_and_resolves_on_recovery() -> None:
    book = AlertBook(AlertConfig(), "USD")
    change, back = START + 4 * 3600, START + 6 * 3600

    def cvr(t: float) -> float:
        return 0.02 * (0.3 if change <= t < back else 1.0)

    alerts = feed(book, "c1", 8, cvr, random.Random(1))
    firing = [a for a in alerts if a.state == "firing"]
    resolved = [a for a in alerts if a.state == "resolved"]
    assert len(firing) == 1
    assert len(resolved) == 1
    fired = firing[0]
    assert change < fired.fired_at < change + 1800
    assert fired.drivers[0].name == "cvr"
    assert fired.drivers[0].share > 0.8
    assert fired.roi_now < fired.roi_before - 0.25
    assert resolved[0].alert_id == fired.alert_id
    assert resolved[0].resolved_at > back


def test_no_change_no_alert_and_tiny_campaigns_never_alert() -> None:
    book = AlertBook(AlertConfig(), "USD")
    assert feed(book, "steady", 8, lambda t: 0.02, random.Random(2)) == []
    tiny = AlertBook(AlertConfig(), "USD")
    change = START + 4 * 3600
    alerts = feed(
        tiny, "tiny", 8, lambda t: 0.02 * (0.1 if t >= change else 1), random.Random(3), 3
    )
    assert alerts == []  # 3 clicks a minute: ~1 conversion per 15 min, never the evidence


def test_state_survives_a_changelog_round_trip() -> None:
    book = AlertBook(AlertConfig(), "USD")
    change = START + 4 * 3600
    feed(book, "c1", 4.5, lambda t: 0.02 * (0.3 if t >= change else 1.0), random.Random(1))
    book.observe_review(
        ScoredReview(
            event_id="r1",
            campaign_id="c1",
            ts=START + 4.4 * 3600,
            rating=1,
            score=-0.9,
            label="negative",
            unscored_reason=None,
            truncated=False,
            model_version="m",
            scored_at=0.0,
        )
    )
    book.observe_topics(
        ReviewTopics(
            campaign_id="c1",
            bucket_start=START + 4.4 * 3600,
            reviews=1,
            negative_reviews=1,
            mass=[0.1, 0.9],
            negative_mass=[0.1, 0.9],
            topics=[TopicTerms(topic=0, terms=["fast"]), TopicTerms(topic=1, terms=["battery"])],
            model_version="m",
            emitted_at=0.0,
        )
    )
    log: dict[str, Any] = {}
    for key, value in book.changes():
        log[key] = value
    restored = AlertBook(AlertConfig(), "USD")
    for key, value in log.items():
        if value is not None:
            restored.restore(key, value)
    assert restored.active() == book.active()
    assert restored.topic_terms == book.topic_terms
    assert restored.decided_slot == book.decided_slot
    for campaign, state in book.campaigns.items():
        assert restored.campaigns[campaign].buckets == state.buckets
    assert restored.delays.counts == book.delays.counts
