"""Bids move traffic (``stream_app.generator.market``); without a market nothing changes."""

from __future__ import annotations

import msgspec

from stream_app.domain.events import Spend
from stream_app.generator import Scenario, TrafficGenerator
from stream_app.generator.market import AuctionResponse, Market, Shock

QUIET = {
    "late_share": 0.0,
    "duplicate_share": 0.0,
    "bad_share": 0.0,
    "orphan_share": 0.0,
    "reviews_per_minute": 0.0,
}


def per_campaign(gen: TrafficGenerator) -> dict[str, tuple[int, float, int]]:
    """(clicks, spend, conversions) per campaign from the ground truth."""
    list(gen)
    return {c: (t.clicks, t.spend, t.conversions) for c, t in gen.truth.campaigns.items()}


def test_clicks_and_cost_per_click_follow_the_bid() -> None:
    scenario = Scenario(seed=4, n_campaigns=2, duration_seconds=3 * 3600, **QUIET)
    bids = {"cmp-001": 2.0, "cmp-002": 0.5}
    base = per_campaign(TrafficGenerator(scenario, market=Market(lambda c, t: 1.0)))
    moved = per_campaign(TrafficGenerator(scenario, market=Market(lambda c, t: bids[c])))
    r = AuctionResponse()
    for campaign, m in bids.items():
        (clicks0, spend0, _), (clicks1, spend1, _) = base[campaign], moved[campaign]
        assert abs(clicks1 / clicks0 - r.clicks(m)) < 0.08 * r.clicks(m)
        cpc_ratio = (spend1 / clicks1) / (spend0 / clicks0)
        assert abs(cpc_ratio - r.cpc(m)) < 0.03 * r.cpc(m)


def test_a_paused_campaign_gets_no_clicks_and_no_spend_and_shocks_cut_conversions() -> None:
    scenario = Scenario(seed=5, n_campaigns=2, duration_seconds=2 * 3600, **QUIET)
    shock = Shock("cmp-002", scenario.start_ts, None, 0.0)
    gen = TrafficGenerator(
        scenario,
        market=Market(lambda c, t: 0.0 if c == "cmp-001" else 1.0, shocks=(shock,)),
    )
    spends = [msgspec.json.decode(r.value, type=Spend) for r in gen if r.topic_kind == "spend"]
    assert not [s for s in spends if s.campaign_id == "cmp-001"]
    truth = gen.truth.campaigns
    assert (truth["cmp-001"].clicks, truth["cmp-001"].spend) == (0, 0.0)
    assert truth["cmp-002"].clicks > 100
    assert truth["cmp-002"].conversions == 0


def test_without_a_market_the_records_are_unchanged() -> None:
    """The bytes main made before markets existed, for this scenario (sha256)."""
    import hashlib

    h = hashlib.sha256()
    for record in TrafficGenerator(Scenario(seed=3, duration_seconds=120)):
        h.update(record.key + record.value + repr((record.ts, record.emit_at)).encode())
    assert h.hexdigest() == EXPECTED


EXPECTED = "0a54bff7bb7429509930c93700f2a067d438050f52683b1a6e6ba1934e13eb44"
