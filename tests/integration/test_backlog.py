"""Catching up gives the windows of keeping up: one seeded stream, paced and as a backlog.

The same generated stream is processed on the real broker three ways: produced in slices
while the worker runs; produced first and then read by a worker starting on the backlog
(spend, read directly, races far ahead of the clicks and conversions that come later
through the attribution stage); and that backlog again with the worker stopped and
restarted a third of the way through. Every way, the final ``campaign-roi`` records (the
highest revision per campaign and window) must equal the generator's per-window truth, and
``too_late_events`` must count exactly the events that are late in event time: the stream
is produced with a disorder below the allowed lateness, and a few events far older than
their streams are appended at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import msgspec
import orjson
import pytest
from prometheus_client import CollectorRegistry

from stream_app.domain.money import CurrencyTable
from stream_app.domain.records import Metrics as WindowMetrics
from stream_app.domain.records import WindowRoi
from stream_app.engine import Worker
from stream_app.generator import CampaignTruth, Emitted, KafkaSink, Scenario, TrafficGenerator
from stream_app.observability import Metrics
from stream_app.outputs import decode_all, latest_by_campaign, read_all
from stream_app.settings import Settings
from stream_app.topics import create_topics

from .running import run_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

T0 = 1_767_225_600.0
SCENARIO = Scenario(
    seed=23,
    n_campaigns=6,
    start_ts=T0,
    duration_seconds=900.0,
    clicks_per_second=12.0,
    reviews_per_minute=2.0,
    late_max_seconds=60.0,  # under the allowed lateness (120 s): nothing late in event time
    attribution_window_seconds=600.0,
    conversion_delay_mean_seconds=60.0,
    conversion_delay_cap_seconds=600.0,
    conversion_grace_seconds=600.0,
    dedup_horizon_seconds=3600.0,
)
WINDOW = 60
MATCHING = {  # the processor's settings the generator's truth assumes
    "attribution_window_seconds": SCENARIO.attribution_window_seconds,
    "conversion_grace_seconds": SCENARIO.conversion_grace_seconds,
    "dedup_horizon_seconds": SCENARIO.dedup_horizon_seconds,
    # every input has traffic here; a slow machine must not make one look idle meanwhile
    "idle_source_timeout_seconds": 90.0,
}
LATE_SPEND, LATE_CLICKS = 3, 2
Key = tuple[str, float]


def late_events() -> list[Emitted]:
    """Events of the first window, sent after the whole stream: late in their own streams."""
    out = []
    for n in range(LATE_SPEND):
        spend = {
            "schema_version": 1,
            "event_id": f"late-spend-{n}",
            "campaign_id": "cmp-001",
            "channel": "search",
            "amount": 1.0,
            "currency": "USD",
            "impressions": 10,
            "ts": T0 + 5 + n,
        }
        out.append(Emitted("spend", b"cmp-001", orjson.dumps(spend), T0 + 5 + n))
    for n in range(LATE_CLICKS):
        click = {
            "schema_version": 1,
            "event_id": f"late-click-{n}",
            "click_id": f"late-click-{n}",
            "campaign_id": "cmp-001",
            "channel": "search",
            "user_id": "u-late",
            "ts": T0 + 10 + n,
        }
        key = f"late-click-{n}".encode()
        out.append(Emitted("click", key, orjson.dumps(click), T0 + 10 + n))
    return out


def generate(settings: Settings) -> tuple[list[Emitted], TrafficGenerator]:
    currencies = CurrencyTable(settings.currency_rates, settings.reporting_currency)
    traffic = TrafficGenerator(SCENARIO, currencies=currencies, window_size_seconds=WINDOW)
    records = [*traffic, *late_events()]
    return records, traffic


def expected_cumulative(traffic: TrafficGenerator) -> dict[str, CampaignTruth]:
    """The generator's truth plus the late events (they count in the cumulative totals)."""
    out = {c: msgspec.structs.replace(t) for c, t in traffic.truth.campaigns.items()}
    extra = out["cmp-001"]
    extra.spend += LATE_SPEND * 1.0
    extra.impressions += LATE_SPEND * 10
    extra.clicks += LATE_CLICKS
    return out


async def produce(settings: Settings, records: Iterable[Emitted], pause: float = 0.0) -> None:
    """Send ``records``; with ``pause``, in slices with that many seconds between them."""
    records = list(records)
    size = 800 if pause else len(records)
    async with KafkaSink(settings) as sink:
        for i in range(0, len(records), size):
            await sink.send_all(records[i : i + size])
            await sink.flush()
            if pause:
                await asyncio.sleep(pause)


async def caught_up(settings: Settings, expected: dict[str, CampaignTruth]) -> bool:
    latest = await latest_by_campaign(
        settings.bootstrap_servers, settings.topics.campaign_roi_latest
    )
    return all(
        c in latest
        and (m := latest[c].cumulative).clicks == t.clicks
        and m.conversions == t.conversions
        and m.impressions == t.impressions
        and m.reviews == t.reviews
        for c, t in expected.items()
    )


async def final_windows(settings: Settings) -> dict[Key, WindowMetrics]:
    """The highest revision of every campaign window: what a consumer ends up with."""
    records = decode_all(
        await read_all(settings.bootstrap_servers, settings.topics.campaign_roi), WindowRoi
    )
    final: dict[Key, WindowRoi] = {}
    for w in records:
        key = (w.campaign_id, w.window_start)
        if key not in final or w.revision > final[key].revision:
            final[key] = w
    return {key: w.metrics for key, w in final.items()}


def sums(m: WindowMetrics | CampaignTruth) -> tuple[Any, ...]:
    return (
        m.clicks,
        m.conversions,
        m.impressions,
        m.reviews,
        pytest.approx(m.spend, abs=1e-5),
        pytest.approx(m.revenue, abs=1e-5),
    )


def assert_windows_are_the_truth(
    windows: dict[Key, WindowMetrics], traffic: TrafficGenerator
) -> None:
    assert set(windows) == set(traffic.windows)
    wrong = [key for key, truth in traffic.windows.items() if sums(windows[key]) != sums(truth)]
    assert wrong == [], [(k, windows[k], traffic.windows[k]) for k in wrong[:3]]
    # (a window that lost its clicks and conversions but kept its spend reads -100 %)
    assert not [k for k, m in windows.items() if m.roi == -1.0 and traffic.windows[k].revenue]


async def too_late(settings: Settings, registry: CollectorRegistry) -> tuple[int, float, float]:
    latest = await latest_by_campaign(
        settings.bootstrap_servers, settings.topics.campaign_roi_latest
    )
    t = settings.topics

    def sample(topic: str) -> float:
        labels = {"topic": topic, "outcome": "too_late"}
        return registry.get_sample_value("stream_app_events_total", labels) or 0.0

    return (
        sum(r.too_late_events for r in latest.values()),
        sample(t.spend),
        sample(t.campaign_deltas),
    )


async def run(
    settings: Settings, expected: dict[str, CampaignTruth], registry: CollectorRegistry
) -> Worker:
    async def done(_: Worker) -> bool:
        return await caught_up(settings, expected)

    return await run_until(settings, done, Metrics(registry, max_campaigns=20), limit=120)


async def test_a_backlog_gives_the_windows_of_a_paced_stream_and_of_the_truth(
    make_settings,  # type: ignore[no-untyped-def]
) -> None:
    paced_settings: Settings = make_settings(**MATCHING)
    records, traffic = generate(paced_settings)
    expected = expected_cumulative(traffic)
    late = LATE_SPEND + LATE_CLICKS

    # (a) paced: produced in slices while the worker runs
    await create_topics(paced_settings)
    paced_registry = CollectorRegistry()
    producing = asyncio.create_task(produce(paced_settings, records, pause=0.4))
    await run(paced_settings, expected, paced_registry)
    await producing
    paced = await final_windows(paced_settings)
    assert_windows_are_the_truth(paced, traffic)
    assert await too_late(paced_settings, paced_registry) == (late, LATE_SPEND, LATE_CLICKS)

    # (b) all at once: the worker starts on the whole stream as a backlog
    backlog_settings: Settings = make_settings(**MATCHING)
    await create_topics(backlog_settings)
    await produce(backlog_settings, records)
    backlog_registry = CollectorRegistry()
    await run(backlog_settings, expected, backlog_registry)
    backlog = await final_windows(backlog_settings)
    assert_windows_are_the_truth(backlog, traffic)
    assert {k: sums(m) for k, m in backlog.items()} == {k: sums(m) for k, m in paced.items()}
    assert {k: m.sentiment_mean for k, m in backlog.items()} == pytest.approx(
        {k: m.sentiment_mean for k, m in paced.items()}
    )
    assert await too_late(backlog_settings, backlog_registry) == (late, LATE_SPEND, LATE_CLICKS)


async def test_a_worker_restarted_mid_backlog_resumes_the_windows(
    make_settings,  # type: ignore[no-untyped-def]
) -> None:
    settings: Settings = make_settings(max_poll_records=300, **MATCHING)  # read gradually
    records, traffic = generate(settings)
    expected = expected_cumulative(traffic)
    await create_topics(settings)
    await produce(settings, records)
    await run_until(settings, lambda w: w.processed_records >= len(records) // 3)
    assert not await caught_up(settings, expected), "stopped before the end of the backlog"
    registry = CollectorRegistry()
    await run(settings, expected, registry)  # restores every partition from its changelog
    assert_windows_are_the_truth(await final_windows(settings), traffic)
    total, _, _ = await too_late(settings, registry)
    assert total == LATE_SPEND + LATE_CLICKS


async def test_a_backlog_is_caught_up_in_transactions_of_bounded_size(
    make_settings,  # type: ignore[no-untyped-def]
) -> None:
    """``max_transaction_records`` bounds what one transaction holds in memory until it
    commits: with a commit interval far longer than the catch-up, the cap alone closes the
    transactions, none takes more than the cap plus one poll, and the windows are exact."""
    cap, poll = 1000, 300
    settings: Settings = make_settings(
        max_transaction_records=cap,
        max_poll_records=poll,
        commit_interval_seconds=5.0,
        **MATCHING,
    )
    t = settings.topics
    edge = {t.clicks, t.conversions, t.spend}
    records, traffic = generate(settings)
    expected = expected_cumulative(traffic)
    await create_topics(settings)
    await produce(settings, records)
    sizes: list[int] = []  # input records (edge topics) per committed transaction

    class Sizes(Metrics):
        def observe_commit(self, out: Any, *args: Any, **kwargs: Any) -> None:
            sizes.append(sum(n for (topic, _), n in out.outcomes.items() if topic in edge))
            super().observe_commit(out, *args, **kwargs)

    async def done(_: Worker) -> bool:
        return await caught_up(settings, expected)

    await run_until(settings, done, Sizes(CollectorRegistry(), max_campaigns=20), limit=120)
    assert_windows_are_the_truth(await final_windows(settings), traffic)
    assert max(sizes) <= cap + poll, sizes
    edge_records = sum(1 for r in records if r.topic_kind in ("click", "conversion", "spend"))
    assert sum(1 for n in sizes if n >= cap) >= edge_records // (cap + poll) - 1, sizes
