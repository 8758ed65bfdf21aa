"""The pipeline on the real broker: inputs in, ROI and dead letters out."""

from __future__ import annotations

import base64

import orjson
import pytest
from prometheus_client import CollectorRegistry

from stream_app.domain.records import DeadLetter, ScoredReview, UnattributedConversion, WindowRoi
from stream_app.generator import Scenario, generate_to_kafka
from stream_app.observability import Metrics
from stream_app.outputs import decode_all, latest_by_campaign, read_all
from stream_app.settings import Settings
from stream_app.topics import create_topics

from .kafka_io import produce
from .running import run_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

T0 = 1_767_225_600.0


def click(n: int, campaign: str, ts: float) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"ce{n}",
            "click_id": f"k{n}",
            "campaign_id": campaign,
            "channel": "search",
            "user_id": f"u{n}",
            "ts": ts,
        }
    )


def conversion(n: int, revenue: float, ts: float, currency: str = "USD") -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"ve{n}",
            "click_id": f"k{n}",
            "revenue": revenue,
            "currency": currency,
            "ts": ts,
        }
    )


def spend(n: int, campaign: str, amount: float, ts: float) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"se{n}",
            "campaign_id": campaign,
            "channel": "search",
            "amount": amount,
            "currency": "USD",
            "impressions": 1000,
            "ts": ts,
        }
    )


async def test_roi_attribution_duplicates_and_dead_letters(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings()
    t = settings.topics
    await create_topics(settings)
    records = [
        (t.clicks, "k1", click(1, "cmp-a", T0 + 1)),
        (t.clicks, "k1", click(1, "cmp-a", T0 + 1)),  # duplicate delivery
        (t.clicks, "k2", click(2, "cmp-b", T0 + 2)),
        (t.conversions, "k3", conversion(3, 30.0, T0 + 3)),  # before its click
        (t.clicks, "k3", click(3, "cmp-a", T0 + 2.5)),
        (t.conversions, "k1", conversion(1, 50.0, T0 + 30, "EUR")),
        (t.conversions, "k1", conversion(1, 50.0, T0 + 30, "EUR")),  # duplicate
        (t.conversions, "k9", conversion(9, 7.0, T0 + 40)),  # click never seen
        (t.spend, "cmp-a", spend(1, "cmp-a", 40.0, T0 + 5)),
        (t.spend, "cmp-b", spend(2, "cmp-b", 10.0, T0 + 5)),
        (t.spend, "cmp-a", b"{not json"),
        (t.spend, "cmp-a", spend(3, "cmp-a", -5.0, T0 + 6)),
        (t.spend, "cmp-a", spend(4, "cmp-a", 5.0, T0 + 6).replace(b'"USD"', b'"XYZ"')),
        (t.spend, "cmp-a", spend(5, "cmp-a", 5.0, T0 + 6).replace(b"5.0", b"NaN", 1)),
        (t.clicks, "k7", b'{"schema_version": 1, "event_id": "x"}'),
        # advances event time past the grace period so k9's conversion is given up on
        (t.clicks, "k9x", click(99, "cmp-b", T0 + 3 * 3600)),
    ]
    await produce(settings, records)
    eur = settings.currency_rates["EUR"]

    async def done() -> bool:
        latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
        a, b = latest.get("cmp-a"), latest.get("cmp-b")
        return bool(
            a
            and b
            and a.cumulative.conversions == 2
            and b.cumulative.clicks == 2
            and a.cumulative.spend == 40.0
        )

    registry = CollectorRegistry()
    await run_until(settings, lambda _: done(), Metrics(registry, max_campaigns=10), limit=60)
    latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
    a = latest["cmp-a"].cumulative
    assert (a.clicks, a.conversions, a.spend) == (2, 2, 40.0)
    assert a.revenue == pytest.approx(30.0 + 50.0 * eur)
    assert a.roi == pytest.approx((30.0 + 50.0 * eur - 40.0) / 40.0)
    b = latest["cmp-b"].cumulative
    assert (b.clicks, b.conversions, b.revenue, b.cvr) == (2, 0, 0.0, 0.0)

    dead = decode_all(await read_all(settings.bootstrap_servers, t.dead_letter), DeadLetter)
    reasons = sorted(d.reason for d in dead)
    assert reasons == [
        "bad_json",
        "negative_amount",
        "non_finite_amount",
        "schema_violation",
        "unknown_currency",
    ]
    bad_json = next(d for d in dead if d.reason == "bad_json")
    assert base64.b64decode(bad_json.value_b64) == b"{not json"
    [original] = [
        r for r in await read_all(settings.bootstrap_servers, t.spend) if r.value == b"{not json"
    ]
    assert (bad_json.topic, bad_json.partition, bad_json.offset) == (
        t.spend,
        original.partition,
        original.offset,
    )

    lost = decode_all(
        await read_all(settings.bootstrap_servers, t.conversions_unattributed),
        UnattributedConversion,
    )
    assert [(u.click_id, u.reason, u.revenue) for u in lost] == [("k9", "unknown_click", 7.0)]

    windows = decode_all(await read_all(settings.bootstrap_servers, t.campaign_roi), WindowRoi)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("stream_app_events_total", topic=t.clicks, outcome="accepted") == 4
    assert sample("stream_app_events_total", topic=t.clicks, outcome="duplicate") == 1
    # whether a conversion waited for its click depends on how the two topics interleave
    waited = sample("stream_app_events_total", topic=t.conversions, outcome="pending") or 0
    direct = sample("stream_app_events_total", topic=t.conversions, outcome="attributed") or 0
    assert (waited + direct, waited >= 1) == (3, True)  # k9 always waits: its click never comes
    assert sample("stream_app_events_total", topic=t.conversions, outcome="duplicate") == 1
    assert sample("stream_app_dead_letters_total", reason="bad_json") == 1
    assert sample("stream_app_conversions_unattributed_total", reason="unknown_click") == 1
    assert sample("stream_app_campaign_spend", campaign="cmp-a", currency="USD") == 40.0

    first_window = [w for w in windows if w.campaign_id == "cmp-a" and w.window_start == T0]
    assert first_window[-1].metrics.conversions == 2
    revisions = [w.revision for w in first_window]
    assert revisions == sorted(revisions)
    assert len(set(revisions)) == len(revisions)


def review(n: int, campaign: str, text: str, ts: float = T0 + 10) -> bytes:
    return orjson.dumps(
        {"schema_version": 1, "event_id": f"rv{n}", "campaign_id": campaign, "text": text, "ts": ts}
    )


async def test_reviews_are_scored_counted_or_dead_lettered(make_settings) -> None:  # type: ignore[no-untyped-def]
    """Every kind of text: scored, counted unscored with a reason, or dead-lettered."""
    settings: Settings = make_settings()
    t = settings.topics
    await create_topics(settings)
    garbage = "".join(chr(c) for c in range(1, 32)) * 4
    texts = {
        1: "Absolutely love it, best purchase this year!",
        2: "Terrible. It broke after two days, avoid.",
        3: "Great value. " + "More words about nothing in particular. " * 5000 + "Love it!",
        4: "",
        5: "Le produit est arrivé cassé et le service client ne répond pas",
        6: garbage,
        7: "Terrible. It broke after two days, avoid.",  # sent twice below: counted once
    }
    records = [(t.reviews, "cmp-r", review(n, "cmp-r", text)) for n, text in texts.items()]
    records.append((t.reviews, "cmp-r", review(7, "cmp-r", texts[7])))
    await produce(settings, records)

    async def done() -> bool:
        latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
        r = latest.get("cmp-r")
        return bool(r and r.cumulative.reviews == 6)

    registry = CollectorRegistry()
    await run_until(settings, lambda _: done(), Metrics(registry, max_campaigns=10), limit=60)
    scored = {
        s.event_id: s
        for s in decode_all(
            await read_all(settings.bootstrap_servers, t.reviews_scored), ScoredReview
        )
    }
    assert (scored["rv1"].label, scored["rv2"].label, scored["rv3"].label) == (
        "positive",
        "negative",
        "positive",
    )
    assert scored["rv3"].truncated
    assert not scored["rv1"].truncated
    assert (scored["rv4"].unscored_reason, scored["rv4"].score) == ("empty_text", None)
    assert scored["rv5"].unscored_reason == "non_english"
    assert "rv6" not in scored
    [dead] = decode_all(await read_all(settings.bootstrap_servers, t.dead_letter), DeadLetter)
    assert (dead.reason, dead.topic) == ("unscorable_text", t.reviews)
    assert orjson.loads(base64.b64decode(dead.value_b64))["text"] == garbage

    cumulative = (await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest))[
        "cmp-r"
    ].cumulative
    assert (cumulative.reviews, cumulative.scored_reviews) == (6, 4)
    sentiments = [scored[f"rv{n}"].score for n in (1, 2, 3, 7)]
    assert cumulative.sentiment_mean == pytest.approx(sum(sentiments) / 4, abs=1e-5)  # type: ignore[arg-type]
    assert cumulative.negative_share == 0.5

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    # scoring sees both deliveries of rv7; aggregation counts it once (above)
    assert sample("stream_app_reviews_scored_total", label="negative") == 3
    assert sample("stream_app_reviews_unscored_total", reason="non_english") == 1
    assert sample("stream_app_dead_letters_total", reason="unscorable_text") == 1
    assert sample("stream_app_campaign_negative_review_ratio", campaign="cmp-r") == 0.5
    assert sample("stream_app_sentiment_batch_reviews_count") >= 1  # type: ignore[operator]


async def test_campaign_sentiment_follows_the_generators_review_tone(make_settings) -> None:  # type: ignore[no-untyped-def]
    """End to end: reviews written in each campaign's hidden tone come out as its sentiment."""
    settings: Settings = make_settings()
    t = settings.topics
    await create_topics(settings)
    scenario = Scenario(
        seed=11,
        n_campaigns=6,
        start_ts=T0,
        duration_seconds=180.0,
        clicks_per_second=5.0,
        reviews_per_minute=20.0,
        bad_share=0.0,
    )
    truth = await generate_to_kafka(scenario, settings)
    expected = {c: v.reviews for c, v in truth.campaigns.items()}

    async def done() -> bool:
        latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
        return {c: r.cumulative.reviews for c, r in latest.items()} == expected

    await run_until(settings, lambda _: done())
    latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
    tone = {p.campaign_id: p.review_tone for p in scenario.profiles()}
    sentiment = {c: r.cumulative.sentiment_mean for c, r in latest.items()}
    assert all(r.cumulative.scored_reviews == r.cumulative.reviews for r in latest.values())
    by_tone = sorted(tone, key=tone.__getitem__)
    by_sentiment = sorted(sentiment, key=lambda c: sentiment[c] or 0.0)
    assert spearman(by_tone, by_sentiment) >= 0.8, (tone, sentiment)
    for campaign, hidden in tone.items():
        if abs(hidden) > 0.5:
            assert (sentiment[campaign] or 0.0) * hidden > 0, (campaign, hidden, sentiment)


def spearman(a: list[str], b: list[str]) -> float:
    """Rank correlation of two orderings of the same items (no ties)."""
    rank = {item: i for i, item in enumerate(b)}
    n = len(a)
    d2 = sum((i - rank[item]) ** 2 for i, item in enumerate(a))
    return 1 - 6 * d2 / (n * (n * n - 1))
