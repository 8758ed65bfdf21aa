"""The Faust bidder example (``examples/faust_bidder``) on the real broker: its agents fill
its tables from ``bid-signals`` and ``campaign-roi-latest`` (committed transactions only,
newest revision kept, an aborted transaction never), and the tables drive the generator's
market."""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec
import orjson
import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from examples.faust_bidder.app import FaustBidder
from stream_app.domain.bidding import BidBook, BiddingConfig
from stream_app.domain.records import BidInputs, BidSignal, CampaignLatest, Metrics
from stream_app.domain.roi import Totals
from stream_app.engine.clients import producer_config
from stream_app.generator import Scenario, TrafficGenerator
from stream_app.generator.market import Market
from stream_app.settings import Settings
from stream_app.topics import create_topics

from .kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
T0 = 1_767_225_600.0


def real_signals() -> list[BidSignal]:
    """Decisions of the product's rule: cmp-001 earns well (bid up), cmp-002 has stopped
    converting (pause)."""
    book = BidBook(BiddingConfig(interval_seconds=60.0), "USD")
    for i in range(3000):
        ts = T0 + i
        good, bad = i % 20 == 0, i == 0  # CVR 5 %, then 1 conversion in 3,000 clicks
        book.observe("cmp-001", ts, spend=1.0, clicks=1, conversions=good, revenue=80.0 * good)
        book.observe("cmp-002", ts, spend=1.0, clicks=1, conversions=bad, revenue=40.0 * bad)

    def context(campaign_id: str) -> tuple[Totals | None, BidInputs]:
        return Totals(clicks=3000, conversions=150, revenue=6000.0), BidInputs()

    return book.tick(T0 + 3000, 1.0, context)


def transactional_signal(settings: Settings, signal: BidSignal, commit: bool) -> None:
    producer = Producer(
        producer_config(settings.bootstrap_servers, {"transactional.id": uuid.uuid4().hex})
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(
        settings.topics.bid_signals, msgspec.json.encode(signal), signal.campaign_id.encode()
    )
    producer.flush(30)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


async def test_faust_tables_follow_the_topics_and_drive_the_market(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings()
    t = settings.topics
    await create_topics(settings)
    good, paused = real_signals()
    assert (good.campaign_id, good.advice, good.multiplier) == ("cmp-001", "run", 1.25)
    assert (paused.campaign_id, paused.advice) == ("cmp-002", "pause")
    older = msgspec.structs.replace(good, revision=0, multiplier=2.5)
    latest = CampaignLatest(
        campaign_id="cmp-001",
        revision=3,
        cumulative=Metrics.of(Totals(spend=10.0, clicks=5, revenue=30.0), "USD"),
        last_window=None,
        too_late_events=0,
        updated_at=1.0,
    )
    records = [
        (t.bid_signals, s.campaign_id, msgspec.json.encode(s)) for s in (good, older, paused)
    ]
    records.append((t.campaign_roi_latest, "cmp-001", msgspec.json.encode(latest)))
    await produce(settings, records)
    bidder = FaustBidder.create(
        settings.bootstrap_servers,
        app_id=f"{settings.app_id}-faust-bidder",
        bid_topic=t.bid_signals,
        latest_topic=t.campaign_roi_latest,
        partitions=settings.partitions,
    )
    await bidder.app.start()
    try:
        for _ in range(300):
            if {"cmp-001", "cmp-002"} <= set(bidder.bids.keys()) and bidder.latest.get("cmp-001"):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the older revision and the aborted one had their chance
        assert bidder.bids["cmp-001"].revision == good.revision
        assert bidder.bids["cmp-001"].uncertainty.conversions == pytest.approx(
            good.uncertainty.conversions
        )
        assert bidder.bids["cmp-002"].revision == paused.revision
        assert bidder.latest["cmp-001"].cumulative.revenue == 30.0
        assert (bidder.multiplier("cmp-001"), bidder.multiplier("cmp-002")) == (1.25, 0.0)
        assert bidder.multiplier("cmp-003") == 1.0

        # the tables drive the simulation's market: cmp-002 stops, cmp-001 bids ×1.25
        scenario = Scenario(seed=2, n_campaigns=3, duration_seconds=1800.0, bad_share=0.0)
        gen = TrafficGenerator(scenario, market=Market(bidder.multiplier))
        base = TrafficGenerator(scenario, market=Market(lambda c, ts: 1.0))
        list(gen)
        list(base)
        clicks = {c: v.clicks for c, v in gen.truth.campaigns.items()}
        assert clicks["cmp-002"] == 0
        assert gen.truth.campaigns["cmp-002"].spend == 0.0
        ratio = clicks["cmp-001"] / base.truth.campaigns["cmp-001"].clicks
        assert 1.12 < ratio < 1.25  # 1.25 ** 0.8 = 1.195
    finally:
        await bidder.app.stop()


async def test_an_aborted_transaction_never_reaches_a_bid(make_settings) -> None:  # type: ignore[no-untyped-def]
    """Committed revision 1 (pause), an aborted revision 9 (×3), then committed revision 2
    (×0.8): the table must end at revision 2. Had the aborted record been read, revision 9
    would have stayed (the table keeps the highest revision), so this fails on a
    read_uncommitted consumer (it did before ``examples/faust_bidder/committed.py``)."""
    settings: Settings = make_settings()
    await create_topics(settings)
    _, paused = real_signals()
    assert paused.revision == 1
    resumed = msgspec.structs.replace(
        paused, revision=2, paused=False, advice="resume", multiplier=0.8
    )
    aborted = msgspec.structs.replace(paused, revision=9, paused=False, multiplier=3.0)
    for signal, commit in ((paused, True), (aborted, False), (resumed, True)):
        await asyncio.to_thread(transactional_signal, settings, signal, commit)
    # the aborted record is in the log: a read_uncommitted reader sees it
    written = await asyncio.to_thread(read_uncommitted, settings, settings.topics.bid_signals)
    assert sorted(orjson.loads(v)["revision"] for v in written) == [1, 2, 9]
    bidder = FaustBidder.create(
        settings.bootstrap_servers,
        app_id=f"{settings.app_id}-faust-bidder",
        bid_topic=settings.topics.bid_signals,
        latest_topic=settings.topics.campaign_roi_latest,
        partitions=settings.partitions,
    )
    await bidder.app.start()
    try:
        for _ in range(150):
            bid = bidder.bids.get("cmp-002")
            if bid is not None and bid.revision != paused.revision:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        assert bidder.bids["cmp-002"].revision == resumed.revision
        assert bidder.multiplier("cmp-002") == 0.8
    finally:
        await bidder.app.stop()


def read_uncommitted(settings: Settings, topic: str) -> list[bytes]:
    """Every record value of ``topic``, aborted ones included, up to the end of each
    partition (the transaction markers are not records: partition EOF says the end)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"uncommitted-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = set(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while partitions:
            assert time.monotonic() < deadline, f"{topic}: no end of partitions {partitions}"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is None:
                values.append(msg.value() or b"")
            elif error.code() == KafkaError._PARTITION_EOF:
                partitions.discard(msg.partition() or 0)
            else:
                raise KafkaException(error)
        return values
    finally:
        consumer.close()
