"""The aggregation agent sends ``bid-signals`` in the same outbox (transaction) as
``campaign-roi-latest``, and its bidding state goes through the stage's changelog."""

from __future__ import annotations

import msgspec
import orjson

from stream_app.agents.aggregation import AggregationAgent, PartitionAggregation
from stream_app.domain.records import BidSignal, CampaignDelta
from stream_app.domain.roi import Totals
from stream_app.engine.stage import Outbox, Record
from stream_app.settings import Settings

from ..domain.compacted import restore_through

T0 = 1_767_225_600.0


def spend(n: int, ts: float) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"s{n}",
            "campaign_id": "cmp-a",
            "channel": "search",
            "amount": 10.0,
            "currency": "USD",
            "impressions": 100,
            "ts": ts,
        }
    )


def test_bid_signals_go_out_with_the_latest_records_and_survive_a_restore() -> None:
    settings = Settings(partitions=1, models_enabled=False, bid_interval_seconds=60.0)
    agent = AggregationAgent(settings)
    state = agent.new_state(0)
    t = settings.topics
    spends = [Record(t.spend, 0, i, None, b"cmp-a", spend(i, T0 + i * 10)) for i in range(30)]
    agent.process(state, spends, Outbox())
    totals = Totals(clicks=10, conversions=1, revenue=40.0)
    deltas = [
        CampaignDelta("cmp-a", T0 + 60 * i, "click", Totals(clicks=10).to_list(), T0 + 60 * i, 0)
        for i in range(5)
    ] + [CampaignDelta("cmp-a", T0, "conversion", totals.to_list(), T0 + 200, 0)]
    deltas.append(CampaignDelta.progress(0, T0 + 290, T0 + 290))
    records = [
        Record(t.campaign_deltas, 0, i, None, b"cmp-a", msgspec.json.encode(d))
        for i, d in enumerate(deltas)
    ]
    agent.process(state, records, Outbox())
    agent.flush(state, Outbox(), now=1.0)  # the reviews source has not reported: no decision
    assert state.bids.decided_slot is None
    more = [Record(t.spend, 0, 30, None, b"cmp-a", spend(30, T0 + 300))]
    agent.process(state, more, Outbox())
    progress = msgspec.json.encode(CampaignDelta.progress(0, T0 + 300, T0 + 300))
    agent.process(state, [Record(t.campaign_deltas, 0, 9, None, b"", progress)], Outbox())
    out = Outbox()
    agent.flush(state, out, now=100.0)  # reviews idle since 1.0: windows and bids move on
    topics = [m[0] for m in out.messages]
    assert t.campaign_roi_latest in topics
    assert t.bid_signals in topics
    [signal] = [
        msgspec.json.decode(m[2], type=BidSignal) for m in out.messages if m[0] == t.bid_signals
    ]
    assert signal.campaign_id == "cmp-a"
    assert out.bid_signals == [signal]  # what the metrics observe once the transaction commits
    assert signal.uncertainty.conversions > 0
    assert signal.uncertainty.spend > 0
    assert signal.uncertainty.clicks > 0

    log: dict[str, object] = {}
    rebuilt = restore_through(log, state, lambda: agent.new_state(0))
    assert isinstance(rebuilt, PartitionAggregation)
    assert rebuilt.bids.campaigns["cmp-a"] == state.bids.campaigns["cmp-a"]
    assert rebuilt.bids.decided_slot == state.bids.decided_slot
