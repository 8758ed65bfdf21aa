"""Aggregation's windows in the state store (issue 13): the same outputs and changelog over
the in-memory store and over RocksDB; closed windows leave memory and come back from the
store for a late conversion; a reused store plus the changelog's tail continues exactly.

The engine is played by hand, as in ``test_restore_from_store.py``: each transaction runs
the agent's flush, takes the state's changes into a list (the changelog) and seals the
store; a commit persists the store with the changelog offset reached.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from rocksdict import Cache, WriteBufferManager

from stream_app.agents.aggregation import AggregationAgent, PartitionAggregation
from stream_app.domain.records import CampaignDelta, ScoredReview
from stream_app.domain.roi import Totals
from stream_app.domain.windows import Aggregation, AggregationConfig
from stream_app.engine.stage import Outbox, Record
from stream_app.settings import Settings
from stream_app.state import DurableStore, MemoryStore
from stream_app.state.rocks import RocksConfig, RocksStore, rocks_options

T0 = 1_767_225_600.0
SETTINGS = Settings(
    partitions=1,
    window_size_seconds=60,
    allowed_lateness_seconds=30.0,
    attribution_window_seconds=600.0,
    dedup_horizon_seconds=3600.0,
    bid_interval_seconds=60.0,
)
T = SETTINGS.topics
CAMPAIGNS = [f"cmp-{i}" for i in range(6)]
Changelog = list[tuple[str, Any]]
Batch = list[Record]


def open_rocks(path: Path) -> RocksStore:
    config = RocksConfig(block_cache_bytes=1 << 20, write_buffer_bytes=1 << 20)
    options = rocks_options(config, Cache(1 << 20), WriteBufferManager(1 << 30, False))
    return RocksStore(path, "cl", options)


def _spend(n: int, campaign: str, ts: float, amount: float) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"s{n}",
            "campaign_id": campaign,
            "channel": "search",
            "amount": amount,
            "currency": "USD",
            "impressions": 100,
            "ts": ts,
        }
    )


def _review(n: int, campaign: str, ts: float, score: float) -> bytes:
    return msgspec.json.encode(
        ScoredReview(
            event_id=f"r{n}",
            campaign_id=campaign,
            ts=ts,
            rating=None,
            score=score,
            label="positive" if score >= 0 else "negative",
            unscored_reason=None,
            truncated=False,
            model_version="m",
            scored_at=0.0,
        )
    )


def batches(seed: int, minutes: int) -> list[list[Batch]]:
    """Per transaction (20 s of event time), its input batches (one topic each): spend and
    reviews with duplicates, click deltas, and conversion deltas landing in windows up to
    the 600 s attribution window old — most of them closed by then — some marked late,
    then the attribution partition's progress."""
    rng = random.Random(seed)
    out: list[list[Batch]] = []
    n = 0
    offset = 0

    def record(topic: str, key: bytes, value: bytes) -> Record:
        nonlocal offset
        offset += 1
        return Record(topic, 0, offset, None, key, value)

    for step in range(minutes * 3):
        now = T0 + step * 20.0
        spends, reviews, deltas = [], [], []
        for campaign in CAMPAIGNS:
            for _ in range(rng.randint(0, 3)):
                n += 1
                ts = now + rng.uniform(0, 20) - rng.choice([0, 0, 0, 40, 200])
                value = _spend(n, campaign, ts, round(rng.uniform(1, 20), 2))
                spends.append(record(T.spend, campaign.encode(), value))
                if rng.random() < 0.1:
                    spends.append(record(T.spend, campaign.encode(), value))  # duplicate
            if rng.random() < 0.5:
                n += 1
                value = _review(n, campaign, now + rng.uniform(0, 20), rng.uniform(-1, 1))
                reviews.append(record(T.reviews_scored, campaign.encode(), value))
            window = (now // 60) * 60.0
            clicks = Totals(clicks=rng.randint(1, 9), expected_revenue=rng.uniform(0, 5))
            delta = CampaignDelta(campaign, window, "click", clicks.to_list(), now + 19, 0)
            deltas.append(delta)
            for _ in range(rng.randint(0, 2)):
                back = rng.choice([0, 1, 2, 4, 7, 9, 12])  # windows: most are closed
                conv = Totals(conversions=1, revenue=round(rng.uniform(5, 50), 2))
                late = rng.random() < 0.05
                deltas.append(
                    CampaignDelta(
                        campaign, window - 60 * back, "conversion", conv.to_list(), now, 0, late
                    )
                )
        deltas.append(CampaignDelta.progress(0, now + 19, now + 19))
        encoded = [
            record(T.campaign_deltas, d.campaign_id.encode(), msgspec.json.encode(d))
            for d in deltas
        ]
        out.append([spends, reviews, encoded])
    return out


def transact(
    agent: AggregationAgent,
    state: PartitionAggregation,
    batch: list[Batch],
    now: float,
    log: Changelog,
    store: DurableStore,
) -> tuple[list[Any], int]:
    """One transaction: process, flush, take the changes; what it sent, and its seal."""
    for records in batch:
        if records:
            agent.process(state, records, Outbox())
    out = Outbox()
    agent.flush(state, out, now)
    log.extend((k, orjson.loads(orjson.dumps(v))) for k, v in state.changes())
    return out.messages, store.seal()


def replay(state: Aggregation, log: Changelog, start: int) -> None:
    for key, value in log[start:]:
        state.restore(key, value)


def clock() -> Iterator[float]:
    """Wall-clock seconds of the commits: 0.2 s apart, so no source is ever idle."""
    return iter(i * 0.2 for i in range(10**6))


@pytest.fixture(params=["memory", "rocksdb"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], DurableStore]:
    if request.param == "memory":
        return MemoryStore
    return lambda: open_rocks(tmp_path / "s")


def test_memory_and_rocksdb_stores_give_the_same_outputs_and_changelog(tmp_path: Path) -> None:
    agent = AggregationAgent(SETTINGS)
    parts = batches(1, 40)
    rocks = open_rocks(tmp_path / "s")
    runs = []
    for store in (MemoryStore(), rocks):
        state = agent.new_stored_state(0, store)
        log: Changelog = []
        sent = []
        times = clock()
        for batch in parts:
            messages, token = transact(agent, state, batch, next(times), log, store)
            store.commit(token, len(log))
            sent.append(messages)
        runs.append((sent, log, len(state.windows)))
    assert runs[0] == runs[1]
    sent, log, held = runs[0]
    cached = state.cached_windows()  # on disk: only the open ones stay in memory
    assert sum(1 for k, v in log if k.startswith("w|") and v is None) > 50  # windows matured
    assert sum(1 for m in sent for topic, *_ in m if topic == T.campaign_roi) > 500
    assert cached < held / 3
    rocks.close()


def test_a_late_conversion_into_a_closed_evicted_window_is_applied_and_re_emitted(
    make_store: Callable[[], DurableStore],
) -> None:
    store = make_store()
    config = AggregationConfig(60, 30.0, 600.0, 3600.0, "USD", upstream_partitions=1)
    agg = Aggregation(config, store=store)
    agg.advance(0.0)
    start = T0
    agg.on_delta(CampaignDelta("c1", start, "click", Totals(clicks=5).to_list(), start + 1, 0))
    agg.on_delta(CampaignDelta.progress(0, start + 200, start + 200))
    agg.advance(100.0)  # closed: 60 + 30 <= 200 (spend and reviews idle since 0.0)
    [window], _ = agg.drain_emissions(now=1.0)
    assert window.closed
    assert window.revision == 1
    changes = dict(agg.changes())
    store.commit(store.seal(), 1)
    assert changes[f"w|c1|{start}"][2] is True  # written closed
    if isinstance(store, RocksStore):
        assert agg.cached_windows() == 0  # no longer held in memory
    assert agg.windows[("c1", start)].totals.clicks == 5  # but in the store

    conversion = Totals(conversions=2, revenue=30.0)
    delta = CampaignDelta("c1", start, "conversion", conversion.to_list(), start + 250, 0)
    assert str(agg.on_delta(delta)) == "accepted"
    agg.advance(100.2)
    [window], [latest] = agg.drain_emissions(now=2.0)
    assert (window.revision, window.closed) == (2, True)
    assert (window.metrics.clicks, window.metrics.conversions) == (5, 2)
    assert window.metrics.revenue == 30.0
    assert latest.last_closed_window is not None
    assert latest.last_closed_window.metrics.conversions == 2
    value = dict(agg.changes())[f"w|c1|{start}"]
    assert value[0] == Totals(clicks=5, conversions=2, revenue=30.0).to_list()
    assert value[1] == 2
    if isinstance(store, RocksStore):
        assert agg.cached_windows() == 0  # read back, changed, written, dropped again
    assert agg.windows[("c1", start)].revision == 2
    store.close()


def test_memory_holds_only_open_windows_while_closed_ones_pile_up_in_the_store(
    tmp_path: Path,
) -> None:
    """Four hours of minutes for six campaigns inside a 7-day attribution window: every
    window is kept on disk, but only the open ones stay as objects in memory."""
    store = open_rocks(tmp_path / "s")
    config = AggregationConfig(60, 30.0, 7 * 86400.0, 86400.0, "USD", upstream_partitions=1)
    agg = Aggregation(config, store=store)
    agg.advance(0.0)  # spend and reviews never report: idle from 30 s on
    most = 0
    for minute in range(240):
        ts = T0 + minute * 60.0
        for campaign in CAMPAIGNS:
            clicks = Totals(clicks=3).to_list()
            agg.on_delta(CampaignDelta(campaign, ts, "click", clicks, ts + 30, 0))
            if minute >= 10:  # a conversion in a closed window, ten minutes back
                conv = Totals(conversions=1, revenue=10.0).to_list()
                agg.on_delta(CampaignDelta(campaign, ts - 600, "conversion", conv, ts, 0))
        agg.on_delta(CampaignDelta.progress(0, ts + 30, ts + 30))
        agg.advance(100.0 + minute * 0.2)
        agg.drain_emissions(now=minute)
        agg.changes()
        store.commit(store.seal(), minute + 1)
        most = max(most, agg.cached_windows())
    assert len(agg.windows) == 240 * len(CAMPAIGNS)  # none matured: a 7-day window
    # open windows: the current minute and the previous one (within its lateness)
    assert most <= 2 * len(CAMPAIGNS)
    assert agg.windows[("cmp-0", T0)].totals.conversions == 1
    store.close()


def test_a_reused_store_and_the_changelog_tail_continue_exactly(tmp_path: Path) -> None:
    """Life 1 on RocksDB persists at transaction 30 and stops after 40 committed; life 2
    opens the store, replays only the tail and must then send exactly what a worker that
    never stopped sends, as must one restored in full from the changelog."""
    agent = AggregationAgent(SETTINGS)
    parts = batches(2, 60)
    stop_at, persisted_at = 40, 30

    ref = agent.new_stored_state(0, MemoryStore())
    ref_log: Changelog = []
    ref_times = clock()
    ref_sent = [transact(agent, ref, b, next(ref_times), ref_log, MemoryStore())[0] for b in parts]

    log: Changelog = []
    store = open_rocks(tmp_path / "s")
    live = agent.new_stored_state(0, store)
    times = clock()
    for n, batch in enumerate(parts[:stop_at]):
        sent, token = transact(agent, live, batch, next(times), log, store)
        assert sent == ref_sent[n]
        if n < persisted_at:
            store.commit(token, len(log))
    checkpoint = store.position()
    store.close()
    assert checkpoint is not None
    assert 0 < checkpoint[1] < len(log)

    store = open_rocks(tmp_path / "s")
    position = store.position()
    assert position == checkpoint
    local = agent.new_stored_state(0, store)
    assert local.campaigns  # rebuilt from the store before any record is replayed
    replay(local, log, position[1])
    store.commit(store.seal(), len(log))
    full = agent.new_stored_state(0, MemoryStore())
    replay(full, log, 0)
    assert len(log) - position[1] < len(log) / 3  # only the tail was read
    assert local.cached_windows() < len(full.windows) / 3  # the open ones, from the store
    assert dict(local.windows) == dict(full.windows)

    # the reference's wall clock went on; the restored ones' sources restart at their
    # first commit (as after any restore), which changes nothing while none is idle
    times = iter(0.2 * i for i in range(stop_at, 10**6))
    for n, batch in enumerate(parts[stop_at:], start=stop_at):
        now = next(times)
        got_local, token = transact(agent, local, batch, now, log, store)
        store.commit(token, len(log))
        got_full, _ = transact(agent, full, batch, now, [], MemoryStore())
        expected = ref_sent[n]
        if n == stop_at:  # a restored state reports its forecaster's quality once, as ever
            got_local, got_full, expected = (
                [m for m in got if m[0] != T.model_quality]
                for got in (got_local, got_full, expected)
            )
        assert got_local == got_full == expected, n
    for state in (local, full):
        assert state.campaigns == ref.campaigns
        assert state.bids.campaigns == ref.bids.campaigns
        assert dict(state.windows) == dict(ref.windows)
        assert state.forecaster is not None
        assert ref.forecaster is not None
        assert state.forecaster.samples_seen == ref.forecaster.samples_seen > 0
    store.close()
