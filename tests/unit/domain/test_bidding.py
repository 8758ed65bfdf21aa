"""The bidding rule (docs/bidding.md): evidence, posterior, multiplier, pausing, state."""

from __future__ import annotations

import math

import jsonschema
import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.bidding import (
    BidBook,
    BiddingConfig,
    Evidence,
    decide,
    posterior,
)
from stream_app.domain.records import BidInputs, BidSignal
from stream_app.domain.roi import Totals
from stream_app.domain.schemas import json_schema

from .compacted import restore_through

CFG = BiddingConfig()
H = 3600.0

events = st.lists(
    st.tuples(
        st.floats(0, 10 * H),
        st.floats(0, 1e4),
        st.integers(0, 1000),
        st.integers(0, 50),
        st.floats(0, 1e4),
    ),
    min_size=1,
    max_size=40,
)


@given(events, st.randoms())
def test_decayed_sums_equal_the_batch_formula_in_any_order(events, rnd) -> None:  # type: ignore[no-untyped-def]
    """Incremental evidence, in any arrival order, is Σ 2^(−(T − ts)/H) · x over its events."""
    rnd.shuffle(events)
    e = Evidence(H)
    for ts, spend, clicks, conversions, revenue in events:
        e.add(ts, spend, clicks, conversions, revenue)
    end = max(ts for ts, *_ in events)
    assert e.as_of == end

    def batch(i: int) -> float:
        return sum(2 ** (-(end - ev[0]) / H) * ev[i] for ev in events)

    for got, i in ((e.spend, 1), (e.clicks, 2), (e.conversions, 3), (e.revenue, 4)):
        assert math.isclose(got, batch(i), rel_tol=1e-9, abs_tol=1e-6)


def evidence(clicks: float, cvr: float, order_value: float, cpc: float = 1.0) -> Evidence:
    conversions = clicks * cvr
    return Evidence(H, 0.0, clicks * cpc, clicks, conversions, conversions * order_value)


@settings(max_examples=300)
@given(
    clicks=st.floats(1, 1e6),
    cvr=st.floats(0, 0.5),
    value=st.floats(0.01, 1e4),
    cpc=st.floats(0.01, 50),
    current=st.floats(0.3, 3.0),
    paused=st.booleans(),
)
def test_the_multiplier_stays_in_bounds_and_moves_at_most_one_step(
    clicks: float, cvr: float, value: float, cpc: float, current: float, paused: bool
) -> None:
    post = posterior(evidence(clicks, cvr, value, cpc), CFG, 0.03, 40.0)
    assert post is not None
    d = decide(post, current, paused, 1.75, CFG)
    assert CFG.min_multiplier <= d.multiplier <= CFG.max_multiplier
    assert 0.0 <= d.credibility <= 1.0
    assert 0.0 <= d.p_below_floor <= 1.0
    if d.advice == "run":
        ratio = d.multiplier / current
        assert 1 / (1 + CFG.max_step) - 1e-9 <= ratio <= 1 + CFG.max_step + 1e-9
    assert math.isfinite(post.roas_mean)
    assert post.roas_quantile(0.05) <= post.roas_mean


@given(ratio=st.floats(1.2, 4.0), cvr=st.floats(0.01, 0.1))
def test_thin_evidence_moves_the_multiplier_less_than_strong(ratio: float, cvr: float) -> None:
    """3 conversions are not 3,000: the same observed ROAS moves a thin campaign less."""
    cfg = BiddingConfig(max_step=100.0, max_multiplier=100.0)  # see the raw shrinkage
    value = 1.75 * ratio / cvr  # observed ROAS = ratio × target at cpc 1
    long_run = 1.75 / cvr
    thin = posterior(evidence(3 / cvr, cvr, value), cfg, cvr, long_run)
    strong = posterior(evidence(3000 / cvr, cvr, value), cfg, cvr, long_run)
    assert thin is not None
    assert strong is not None
    m_thin = decide(thin, 1.0, False, 1.75, cfg).multiplier
    m_strong = decide(strong, 1.0, False, 1.75, cfg).multiplier
    assert 1.0 < m_thin < m_strong
    assert thin.log_roas_sd > 5 * strong.log_roas_sd


def test_a_campaign_at_target_keeps_its_multiplier() -> None:
    post = posterior(evidence(1e5, 0.04, 43.75), CFG, 0.04, 43.75)
    assert post is not None
    assert math.isclose(post.roas_mean, 1.75, rel_tol=1e-3)
    assert math.isclose(decide(post, 1.0, False, 1.75, CFG).multiplier, 1.0, rel_tol=1e-3)


def test_pause_on_sure_losses_and_resume_with_hysteresis() -> None:
    collapsed = posterior(evidence(5000, 0.004, 43.75), CFG, 0.04, 43.75)  # ROAS ≈ 0.2
    assert collapsed is not None
    d = decide(collapsed, 1.0, False, 1.75, CFG)
    assert (d.paused, d.advice) == (True, "pause")
    assert d.p_below_floor > 0.99
    # a little better, but still probably losing: stays paused
    doubtful = posterior(evidence(2000, 0.015, 43.75), CFG, 0.04, 43.75)  # ROAS ≈ 0.66
    assert doubtful is not None
    still = decide(doubtful, CFG.min_multiplier, True, 1.75, CFG)
    assert (still.paused, still.advice) == (True, "paused")
    assert CFG.resume_probability < still.p_below_floor
    # the same evidence does not pause a running campaign: it must be sure to pause
    running = decide(doubtful, CFG.min_multiplier, False, 1.75, CFG)
    assert not running.paused or running.p_below_floor >= CFG.pause_probability
    recovered = posterior(evidence(2000, 0.04, 43.75), CFG, 0.04, 43.75)
    assert recovered is not None
    back = decide(recovered, CFG.min_multiplier, True, 1.75, CFG)
    assert (back.paused, back.advice, back.multiplier) == (False, "resume", CFG.min_multiplier)


def test_a_losing_campaign_that_can_bid_down_is_not_paused() -> None:
    """ROAS 0.8 at ×3 is ≈ 1.6 at ×0.3 (β = 0.6): bid down, do not pause."""
    post = posterior(evidence(1e5, 0.04, 20.0), CFG, 0.04, 20.0)
    assert post is not None
    d = decide(post, 3.0, False, 1.75, CFG)
    assert (d.paused, d.advice) == (False, "run")
    assert d.multiplier < 3.0


def context(campaign_id: str) -> tuple[Totals | None, BidInputs]:
    return Totals(clicks=1000, conversions=40, revenue=1750.0), BidInputs(matured_roi=0.5)


def fed_book() -> BidBook:
    book = BidBook(BiddingConfig(interval_seconds=60.0), "USD")
    for i in range(200):
        ts = 1000.0 + i
        book.observe("c1", ts, spend=1.0, clicks=1)
        book.observe("c2", ts, spend=2.0, clicks=1, conversions=i % 10 == 0, revenue=90.0)
    return book


def test_one_decision_per_interval_in_schema_and_restored_from_the_changelog() -> None:
    book = fed_book()
    assert book.tick(0.0, 5.0, context) == []  # no watermark yet
    signals = book.tick(1199.0, 5.0, context)
    assert [s.campaign_id for s in signals] == ["c1", "c2"]
    assert book.tick(1199.9, 6.0, context) == []  # same slot: no second decision
    validator = jsonschema.Draft202012Validator(json_schema("bid-signal"))
    for s in signals:
        validator.validate(orjson.loads(msgspec.json.encode(s)))
        assert msgspec.json.decode(msgspec.json.encode(s), type=BidSignal) == s
        assert s.decided_at == 1140.0
        assert s.inputs.matured_roi == 0.5
        assert s.revision == 1
    log: dict[str, object] = {}
    rebuilt = restore_through(log, book, lambda: BidBook(book.config, "USD"))
    assert rebuilt.decided_slot == book.decided_slot
    for book_ in (book, rebuilt):
        book_.observe("c2", 1250.0, spend=2.0, clicks=1)
    again = [s.multiplier for s in book.tick(1260.0, 7.0, context)]
    assert again == [s.multiplier for s in rebuilt.tick(1260.0, 7.0, context)]
    assert [s.revision for s in rebuilt.tick(1400.0, 8.0, context)] == [3, 3]
