"""Windows, lateness, revisions and cumulative totals of the aggregation stage."""

from __future__ import annotations

import itertools
import math
import random
import zlib
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.attribution import Attribution, AttributionConfig
from stream_app.domain.events import Click, Conversion, Spend
from stream_app.domain.outcomes import Outcome
from stream_app.domain.records import CampaignDelta, ScoredReview, WindowRoi
from stream_app.domain.roi import Totals
from stream_app.domain.windows import Aggregation, AggregationConfig, window_start
from stream_app.learning import RoiForecaster

from .compacted import restore_through

T0 = 1_767_225_600.0
CONFIG = AggregationConfig(
    window_size_seconds=60,
    allowed_lateness_seconds=30.0,
    attribution_window_seconds=600.0,
    dedup_horizon_seconds=3600.0,
    currency="USD",
)


CLOCK = itertools.count(0.0, 1000.0)


def step(agg: Aggregation) -> None:
    """A commit long after the previous one: only the sources seen since then hold windows
    (here, the inputs a test feeds; the others are idle)."""
    agg.advance(next(CLOCK))


def started(agg: Aggregation) -> Aggregation:
    """A state as the worker holds it: its idle clock starts when it is assigned."""
    agg.advance(next(CLOCK))
    return agg


def spend(n: int, ts: float, amount: float = 10.0, campaign: str = "c1") -> Spend:
    return Spend(1, f"s{n}", campaign, "search", amount, "USD", 100, ts)


def conversions(window: float, n: int, revenue: float, ts: float) -> CampaignDelta:
    totals = Totals(conversions=n, revenue=revenue)
    return CampaignDelta("c1", window, "conversion", totals.to_list(), ts)


def test_each_change_re_emits_the_window_with_the_next_revision() -> None:
    agg = started(Aggregation(CONFIG))
    agg.on_spend(spend(1, T0 + 1), 10.0)
    [w1], [latest1] = agg.drain_emissions(now=0.0)
    assert (w1.revision, w1.metrics.spend, latest1.revision) == (1, 10.0, 1)
    agg.on_delta(conversions(T0, 1, 25.0, T0 + 300))
    [w2], [latest2] = agg.drain_emissions(now=0.0)
    assert (w2.window_start, w2.revision, w2.metrics.revenue) == (T0, 2, 25.0)
    assert w2.metrics.roi == 1.5
    assert latest2.cumulative.roas == 2.5
    assert agg.drain_emissions(now=0.0) == ([], [])


def test_late_event_within_lateness_updates_its_window() -> None:
    agg = started(Aggregation(CONFIG))
    agg.on_spend(spend(1, T0 + 70), 10.0)
    assert agg.on_spend(spend(2, T0 + 59), 5.0) is Outcome.ACCEPTED  # end 60 + 30 > 70
    windows, _ = agg.drain_emissions(now=0.0)
    assert {w.window_start: w.metrics.spend for w in windows} == {T0: 5.0, T0 + 60: 10.0}


def test_too_late_event_counts_only_in_cumulative_totals() -> None:
    agg = started(Aggregation(CONFIG))
    agg.on_spend(spend(1, T0 + 200), 10.0)
    agg.drain_emissions(now=0.0)
    assert agg.on_spend(spend(2, T0 + 10), 5.0) is Outcome.TOO_LATE
    windows, [latest] = agg.drain_emissions(now=0.0)
    assert windows == []
    assert latest.cumulative.spend == 15.0
    assert latest.too_late_events == 1


def test_conversions_reach_old_click_windows_within_the_attribution_window() -> None:
    agg = started(Aggregation(CONFIG))
    agg.on_spend(spend(1, T0 + 500), 10.0)  # click window T0 is closed for its own events
    assert agg.on_delta(conversions(T0, 2, 40.0, T0 + 550)) is Outcome.ACCEPTED
    windows, _ = agg.drain_emissions(now=0.0)
    assert {w.window_start: w.metrics.conversions for w in windows} == {T0: 2, T0 + 480: 0}


def review(n: int, score: float | None) -> ScoredReview:
    return ScoredReview(
        event_id=f"r{n}",
        campaign_id="c1",
        ts=T0,
        rating=None,
        score=score,
        label=None if score is None else "positive" if score >= 0 else "negative",
        unscored_reason="empty_text" if score is None else None,
        truncated=False,
        model_version="m",
        scored_at=0.0,
    )


def test_review_without_score_counts_but_has_no_sentiment() -> None:
    agg = started(Aggregation(CONFIG))
    agg.on_review(review(1, None))
    agg.on_review(review(2, -0.5))
    assert agg.on_review(review(2, -0.5)) is Outcome.DUPLICATE
    [w], _ = agg.drain_emissions(now=0.0)
    assert (w.metrics.reviews, w.metrics.scored_reviews) == (2, 1)
    assert (w.metrics.sentiment_mean, w.metrics.negative_share) == (-0.5, 1.0)


def rebuild(agg: Aggregation, log: dict[str, object]) -> Aggregation:
    return restore_through(log, agg, lambda: started(Aggregation(CONFIG)))


def test_revisions_and_totals_survive_a_restore_and_old_windows_expire() -> None:
    log: dict[str, object] = {}
    agg = started(Aggregation(CONFIG))
    agg.on_spend(spend(1, T0), 10.0)
    agg.drain_emissions(now=0.0)
    agg = rebuild(agg, log)
    assert agg.on_spend(spend(1, T0), 10.0) is Outcome.DUPLICATE
    agg.on_spend(spend(2, T0 + 1), 1.0)
    [w], [latest] = agg.drain_emissions(now=0.0)
    assert (w.revision, w.metrics.spend, latest.revision) == (2, 11.0, 2)
    agg.on_spend(spend(3, T0 + 60 + 630 + 60), 1.0)  # past end + attribution + lateness
    step(agg)
    agg.drain_emissions(now=0.0)
    agg = rebuild(agg, log)
    assert ("c1", T0) not in agg.windows
    assert agg.campaigns["c1"].totals.spend == 12.0


@given(
    st.lists(
        st.tuples(st.floats(0, 3600), st.floats(0, 100, allow_nan=False), st.sampled_from("ab")),
        max_size=60,
    )
)
def test_cumulative_totals_never_depend_on_arrival_order(
    events: list[tuple[float, float, str]],
) -> None:
    agg = started(Aggregation(CONFIG))
    for n, (offset, amount, campaign) in enumerate(events):
        agg.on_spend(spend(n, T0 + offset, amount, campaign), amount)
    for campaign in "ab":
        expected = sum(a for _, a, c in events if c == campaign)
        got = agg.campaigns[campaign].totals.spend if campaign in agg.campaigns else 0.0
        assert abs(got - expected) < 1e-6


# -- forecasts: made at close from what is known then, learned at maturity ----------------
def clicks(window: float, n: int, ts: float, expected: float) -> CampaignDelta:
    totals = Totals(clicks=n, expected_revenue=expected, open_expected_revenue=expected)
    return CampaignDelta("c1", window, "click", totals.to_list(), ts)


def forecasting() -> Aggregation:
    return started(Aggregation(CONFIG, RoiForecaster(), conversion_model_version="conv-test"))


def test_a_window_is_forecast_at_close_and_learned_from_at_maturity() -> None:
    agg = forecasting()
    agg.on_spend(spend(1, T0 + 1), 10.0)
    agg.on_delta(clicks(T0, 5, T0 + 2, expected=12.0))
    step(agg)
    [open_window], _ = agg.drain_emissions(now=0.0)
    assert not open_window.closed
    assert open_window.predictions.roi_forecast is None
    assert open_window.predictions.roi_nowcast == 0.2  # (0 + 12 - 10) / 10
    assert open_window.predictions.conversion_model_version == "conv-test"

    agg.on_spend(spend(2, T0 + 60 + 30, campaign="c2"), 1.0)  # watermark: end + lateness
    step(agg)
    windows, [latest, _] = agg.drain_emissions(now=0.0)
    [closed] = [w for w in windows if w.campaign_id == "c1"]
    assert closed.closed
    assert closed.predictions.roi_forecast == 0.2  # untrained: the nowcast
    assert latest.last_closed_window == closed
    assert agg.forecaster is not None
    assert agg.forecaster.samples_seen == 0

    agg.on_delta(conversions(T0, 1, 30.0, T0 + 200))  # realised ROI: (30 - 10) / 10 = 2
    agg.on_spend(spend(3, T0 + 60 + 600 + 30 + 1, campaign="c2"), 1.0)  # matures T0
    step(agg)
    agg.changes()
    assert agg.forecaster.samples_seen == 1
    assert agg.forecaster.quality().mae == 1.8  # |0.2 - 2.0|, scored before learning


def test_forecasts_and_the_forecaster_survive_a_restore() -> None:
    log: dict[str, object] = {}
    agg = forecasting()
    for n in range(30):  # windows T0, T0+60, ... each maturing in turn
        start = T0 + 60 * n
        agg.on_spend(spend(n, start + 1), 10.0)
        agg.on_delta(clicks(start, 3, start + 2, expected=9.0 + n % 4))
        agg.on_delta(conversions(start, 1, 5.0 + 3 * (n % 4), start + 3))
        step(agg)
        agg.drain_emissions(now=0.0)
        if n % 7 == 6:
            agg = restore_through(log, agg, forecasting)
    rebuilt = restore_through(log, agg, forecasting)  # agg's changes() matures some more
    assert agg.forecaster is not None
    assert rebuilt.forecaster is not None
    assert agg.forecaster.samples_seen > 10
    assert rebuilt.forecaster.samples_seen == agg.forecaster.samples_seen
    held = {k: (w.forecast, w.inputs, w.closed) for k, w in agg.windows.items()}
    assert {k: (w.forecast, w.inputs, w.closed) for k, w in rebuilt.windows.items()} == held
    x = next(w.inputs for w in agg.windows.values() if w.inputs is not None)
    assert rebuilt.forecaster.predict(x) == agg.forecaster.predict(x)


def test_a_window_first_seen_after_its_start_closed_is_still_forecast() -> None:
    agg = forecasting()
    agg.on_spend(spend(1, T0 + 1), 10.0)
    agg.on_spend(spend(2, T0 + 100), 1.0)  # closes T0's windows (end 60 + lateness 30)
    step(agg)
    late = Totals(conversions=1, revenue=5.0, spend=2.0)  # another campaign's first delta
    agg.on_delta(CampaignDelta("c9", T0, "conversion", late.to_list(), T0 + 101))
    step(agg)
    assert agg.windows[("c9", T0)].closed
    assert agg.windows[("c9", T0)].forecast is not None


# -- event time over several sources: the minimum, idle sources, restore ------------------
SOURCES = AggregationConfig(
    window_size_seconds=60,
    allowed_lateness_seconds=30.0,
    attribution_window_seconds=600.0,
    dedup_horizon_seconds=3600.0,
    currency="USD",
    upstream_partitions=2,
    idle_source_timeout_seconds=30.0,
)


def progress(q: int, clicks_at: float, conversions_at: float) -> CampaignDelta:
    return CampaignDelta.progress(q, clicks_at, conversions_at)


def click_delta(q: int, window: float, n: int, *, late: bool = False) -> CampaignDelta:
    totals = Totals(clicks=n)
    return CampaignDelta("c1", window, "click", totals.to_list(), window + 1, q, late)


def conversion_delta(q: int, window: float, n: int, revenue: float) -> CampaignDelta:
    totals = Totals(conversions=n, revenue=revenue)
    return CampaignDelta("c1", window, "conversion", totals.to_list(), window + 1, q)


def review_at(n: int, ts: float) -> ScoredReview:
    return msgspec.structs.replace(review(n, 0.5), ts=ts)


def test_a_backlog_of_spend_closes_nothing_before_every_source_reports() -> None:
    """The bug: spend is read directly and far ahead of the deltas; windows wait for them."""
    agg = Aggregation(SOURCES)
    agg.advance(0.0)  # assigned: no source has reported yet
    for n in range(50):  # 50 minutes of spend, read in a second
        agg.on_spend(spend(n, T0 + 60 * n + 1), 1.0)
    agg.on_review(review_at(1, T0 + 3000))
    agg.advance(1.0)
    assert (agg.watermark, agg.windows[("c1", T0)].closed) == (0.0, False)
    agg.on_delta(click_delta(0, T0, 5))
    agg.on_delta(progress(0, T0 + 3000, T0 + 3000))
    agg.advance(2.0)
    assert agg.watermark == 0.0, "partition 1 has not reported"
    assert agg.on_delta(click_delta(1, T0, 3)) is Outcome.ACCEPTED
    agg.on_delta(progress(1, T0 + 100, T0 + 50))
    agg.advance(3.0)
    assert agg.watermark == T0 + 100
    assert agg.conversion_watermark == T0 + 50
    assert agg.windows[("c1", T0)].closed  # 60 + 30 <= 100
    assert agg.windows[("c1", T0)].totals.clicks == 8
    assert not agg.windows[("c1", T0 + 60)].closed
    assert agg.campaigns["c1"].too_late_events == 0


def test_conversions_are_taken_until_every_partitions_conversion_time_passes() -> None:
    agg = Aggregation(SOURCES)
    agg.advance(0.0)
    agg.on_spend(spend(1, T0 + 1), 10.0)
    agg.on_review(review_at(1, T0 + 5000))
    agg.on_spend(spend(2, T0 + 5000), 1.0)
    agg.on_delta(progress(0, T0 + 5000, T0 + 5000))
    agg.on_delta(progress(1, T0 + 5000, T0 + 600))  # its conversions are behind
    agg.advance(1.0)
    agg.changes()
    assert agg.windows[("c1", T0)].closed  # its own events are in
    assert agg.on_delta(conversion_delta(1, T0, 1, 30.0)) is Outcome.ACCEPTED
    agg.on_delta(progress(1, T0 + 5000, T0 + 60 + 600 + 30))  # now past end + window + lateness
    agg.advance(2.0)
    agg.changes()
    assert ("c1", T0) not in agg.windows  # matured and dropped
    assert agg.on_delta(conversion_delta(0, T0, 1, 30.0)) is Outcome.TOO_LATE
    assert agg.campaigns["c1"].totals.conversions == 2
    assert agg.campaigns["c1"].too_late_events == 1


def test_a_quiet_source_stops_holding_windows_after_the_idle_timeout() -> None:
    """No reviews at all, and attribution partition 1 without traffic."""
    agg = Aggregation(SOURCES)
    agg.advance(100.0)  # assigned at wall-clock 100
    for n, now in enumerate((110.0, 120.0, 130.0)):
        agg.on_spend(spend(n, T0 + 60 * n + 1), 1.0)
        agg.on_delta(progress(0, T0 + 60 * n + 100, T0 + 60 * n + 100))
        agg.advance(now)
        assert agg.watermark == 0.0
    assert agg.idle_sources(130.0) == []
    agg.on_spend(spend(3, T0 + 301), 1.0)
    agg.on_delta(progress(0, T0 + 400, T0 + 400))
    agg.advance(131.0)  # 31 s after assignment: reviews and partition 1 are idle
    assert agg.idle_sources(131.0) == ["click|1", "conversion|1", "reviews"]
    assert agg.watermark == T0 + 301  # spend is the slowest active source
    assert agg.conversion_watermark == T0 + 400
    assert agg.windows[("c1", T0 + 120)].closed  # 180 + 30 <= 301
    # partition 1 comes back with a click on time in its own stream, for a window that
    # closed while it was idle: too late; then it holds windows again from the minimum on
    assert agg.on_delta(click_delta(1, T0 + 120, 2)) is Outcome.TOO_LATE
    agg.on_delta(progress(1, T0 + 320, T0 + 320))
    agg.on_spend(spend(4, T0 + 500), 1.0)
    agg.on_delta(progress(0, T0 + 500, T0 + 500))
    agg.advance(132.0)
    assert agg.watermark == T0 + 320
    assert agg.idle_sources(132.0) == ["reviews"]


def test_a_source_never_moves_the_combined_watermark_back() -> None:
    agg = Aggregation(SOURCES)
    agg.advance(0.0)
    agg.on_spend(spend(1, T0 + 500), 1.0)
    agg.on_review(review_at(1, T0 + 500))
    agg.on_delta(progress(0, T0 + 500, T0 + 500))
    agg.advance(40.0)  # partition 1 idle
    assert agg.watermark == T0 + 500
    agg.on_delta(progress(1, T0 + 100, T0 + 100))
    agg.advance(41.0)
    assert (agg.watermark, agg.conversion_watermark) == (T0 + 500, T0 + 500)


def test_events_late_in_their_own_stream_are_too_late_even_in_an_open_window() -> None:
    agg = Aggregation(SOURCES)
    agg.advance(0.0)
    agg.on_spend(spend(1, T0 + 200), 1.0)
    assert agg.on_spend(spend(2, T0 + 10), 5.0) is Outcome.TOO_LATE  # spend had passed 90
    assert agg.on_delta(click_delta(0, T0, 4, late=True)) is Outcome.TOO_LATE
    assert agg.on_delta(click_delta(1, T0, 2)) is Outcome.ACCEPTED  # no source closed it
    agg.on_review(review_at(1, T0 + 50))
    assert agg.on_review(review_at(2, T0 + 5)) is Outcome.ACCEPTED  # reviews: 60 + 30 > 50
    totals = agg.windows[("c1", T0)].totals
    assert (totals.spend, totals.clicks, totals.reviews) == (0.0, 2, 2)
    campaign = agg.campaigns["c1"]
    assert (campaign.too_late_events, campaign.totals.clicks, campaign.totals.spend) == (5, 6, 6.0)


def test_source_progress_survives_a_restore_so_a_restarted_backlog_waits_for_it() -> None:
    log: dict[str, object] = {}

    def fresh() -> Aggregation:
        agg = Aggregation(SOURCES)
        agg.advance(1000.0)  # (re)assigned
        return agg

    agg = fresh()
    agg.on_spend(spend(1, T0 + 1), 10.0)
    agg.on_review(review_at(1, T0 + 400))
    agg.on_delta(click_delta(0, T0, 3))
    agg.on_delta(progress(0, T0 + 400, T0 + 400))
    agg.on_delta(progress(1, T0 + 30, T0 + 30))
    agg.advance(1001.0)
    agg.drain_emissions(now=0.0)
    assert agg.watermark == T0 + 1
    agg = restore_through(log, agg, fresh)
    assert {n: s.watermark for n, s in agg.sources.items()} == {
        "spend": T0 + 1,
        "reviews": T0 + 400,
        "click|0": T0 + 400,
        "conversion|0": T0 + 400,
        "click|1": T0 + 30,
        "conversion|1": T0 + 30,
    }
    for n in range(2, 40):  # the restarted worker reads a backlog of spend first
        agg.on_spend(spend(n, T0 + 30 * n), 1.0)
    agg.advance(1002.0)
    assert agg.watermark == T0 + 30, "partition 1 holds it where it was"
    assert agg.on_delta(click_delta(1, T0, 2)) is Outcome.ACCEPTED  # its clicks still count
    [window] = [w for w in agg.drain_emissions(now=0.0)[0] if w.window_start == T0]
    assert (window.metrics.clicks, window.metrics.spend, window.revision) == (5, 10.0, 2)
    assert window.metrics.roi == -1.0  # no conversions in this test, only clicks


def test_state_with_one_old_watermark_restores_it_as_the_floor() -> None:
    agg = Aggregation(SOURCES)
    for key, value in {
        "watermark": T0 + 500,
        "w|c1|" + str(T0 + 420): [Totals(spend=1.0).to_list(), 3, False, None, None],
    }.items():
        agg.restore(key, value)
    assert (agg.watermark, agg.conversion_watermark) == (T0 + 500, T0 + 500)
    assert all(s.watermark is None for s in agg.sources.values())  # learnt again
    assert agg.on_spend(spend(1, T0 + 60), 1.0) is Outcome.TOO_LATE  # closed before
    assert agg.on_spend(spend(2, T0 + 430), 1.0) is Outcome.ACCEPTED
    changes = dict(agg.changes())
    assert changes["watermark"] is None  # the old key is replaced
    assert changes["watermarks"] == [T0 + 500, T0 + 500]
    assert "watermark" not in dict(agg.changes())


# -- any interleaving of the per-source streams gives the windows of in-order processing --
PIPE_AGGREGATION = AggregationConfig(
    window_size_seconds=60,
    allowed_lateness_seconds=30.0,
    attribution_window_seconds=120.0,
    dedup_horizon_seconds=3600.0,
    currency="USD",
    upstream_partitions=2,
    idle_source_timeout_seconds=1e9,  # never idle here: the test is about order
)
PIPE_ATTRIBUTION = AttributionConfig(
    window_size_seconds=60,
    attribution_window_seconds=120.0,
    conversion_grace_seconds=3600.0,
    dedup_horizon_seconds=3600.0,
    currency="USD",
    allowed_lateness_seconds=30.0,
)
Q = P = 2  # attribution partitions (click_id), aggregation partitions (campaign_id)
CAMPAIGNS = ("a", "b", "d")  # crc32 % 2: a, b -> 1, d -> 0
Event = Spend | ScoredReview | Click | Conversion
Window = tuple[int, int, float, float, int, int]  # clicks, conversions, revenue, spend, ...


def part(key: str, n: int) -> int:
    return zlib.crc32(key.encode()) % n


Streams = dict[str, list[tuple[float, Event]]]  # per source: (arrival, event) in order


def generate_streams(seed: int) -> Streams:
    """Per source, events in arrival order: a bounded disorder (20 s, under the allowed
    lateness), plus a few events far later than their stream (late in event time)."""
    rng = random.Random(seed)
    arrivals: dict[str, list[tuple[float, int, Event]]] = {}
    ids = itertools.count()

    def arrive(source: str, ts: float, event: Event, late_share: float = 0.05) -> None:
        delay = rng.uniform(200, 400) if rng.random() < late_share else rng.uniform(0, 20)
        arrivals.setdefault(source, []).append((ts + delay, next(ids), event))

    def when() -> float:
        return round(rng.uniform(0, 900), 1)

    for _ in range(rng.randint(10, 40)):
        campaign, ts, n = rng.choice(CAMPAIGNS), when(), next(ids)
        event = Spend(1, f"s{n}", campaign, "search", float(rng.randint(1, 9)), "USD", 100, T0 + ts)
        arrive(f"spend|{part(campaign, P)}", ts, event)
    for _ in range(rng.randint(0, 15)):
        campaign, ts, n = rng.choice(CAMPAIGNS), when(), next(ids)
        scored = msgspec.structs.replace(review(n, 0.5), campaign_id=campaign, ts=T0 + ts)
        arrive(f"reviews|{part(campaign, P)}", ts, scored)
    for _ in range(rng.randint(10, 80)):
        campaign, ts, n = rng.choice(CAMPAIGNS), when(), next(ids)
        click_id = f"k{n}"
        q = part(click_id, Q)
        grossly_late = rng.random() < 0.05
        delay = rng.uniform(200, 400) if grossly_late else rng.uniform(0, 20)
        event = Click(1, f"ce{n}", click_id, campaign, "search", "u", T0 + ts)
        arrivals.setdefault(f"clicks|{q}", []).append((ts + delay, n, event))
        # (a conversion waiting for a click that is itself late is left out: it is judged
        # when it was read, but may reach a window whose other sources moved on meanwhile)
        if not grossly_late and rng.random() < 0.5:
            at = round(ts + rng.uniform(1, 150), 1)  # beyond 120: outside the window
            conversion = Conversion(
                1, f"cv{n}", click_id, float(rng.randint(5, 50)), "USD", T0 + at
            )
            arrive(f"conversions|{q}", at, conversion)
    return {source: [(a, e) for a, _, e in sorted(events)] for source, events in arrivals.items()}


def expected_windows(streams: Streams) -> tuple[dict[Any, Window], int]:
    """Windows and late events of a correct processor, judged in each event's own stream."""
    size, lateness, window = 60, 30.0, 120.0
    totals: dict[tuple[str, float], list[float]] = {}
    clicks = {
        e.click_id: e for events in streams.values() for _, e in events if isinstance(e, Click)
    }
    late = 0
    for events in streams.values():
        seen = -math.inf
        for _, e in events:
            if isinstance(e, Conversion):
                click = clicks[e.click_id]
                start = window_start(click.ts, size)
                if e.ts - click.ts <= window:
                    if start + size + window + lateness <= seen:
                        late += 1
                    else:
                        row = totals.setdefault((click.campaign_id, start), [0] * 6)
                        row[1] += 1
                        row[2] += e.revenue
            else:
                start = window_start(e.ts, size)
                if start + size + lateness <= seen:
                    late += 1
                else:
                    row = totals.setdefault((e.campaign_id, start), [0] * 6)
                    if isinstance(e, Click):
                        row[0] += 1
                    elif isinstance(e, Spend):
                        row[3] += e.amount
                        row[4] += e.impressions
                    else:
                        row[5] += 1
            seen = max(seen, e.ts)
    return {
        k: (int(r[0]), int(r[1]), r[2], r[3], int(r[4]), int(r[5])) for k, r in totals.items()
    }, late


class Pipeline:
    """Attribution and aggregation partitions wired as the worker wires them; who reads
    what when is up to the caller. Deltas wait in one FIFO per (attribution, aggregation)
    partition pair, as on ``campaign-deltas``."""

    def __init__(self, streams: Streams) -> None:
        self.pending = {source: [e for _, e in events] for source, events in streams.items()}
        self.attribution = [Attribution(PIPE_ATTRIBUTION, partition=q) for q in range(Q)]
        self.aggregation = [Aggregation(PIPE_AGGREGATION) for _ in range(P)]
        self.queues: dict[tuple[int, int], list[CampaignDelta]] = {
            (q, p): [] for q in range(Q) for p in range(P)
        }
        self.final: dict[tuple[str, float], WindowRoi] = {}
        self.now = 0.0
        for agg in self.aggregation:
            agg.advance(self.now)

    def read(self, source: str, k: int) -> None:
        n = source.split("|")[1]
        events, self.pending[source] = self.pending[source][:k], self.pending[source][k:]
        for e in events:
            if isinstance(e, Spend):
                self.aggregation[int(n)].on_spend(e, e.amount)
            elif isinstance(e, ScoredReview):
                self.aggregation[int(n)].on_review(e)
            elif isinstance(e, Click):
                self.attribution[int(n)].on_click(e)
            else:
                assert isinstance(e, Conversion)
                self.attribution[int(n)].on_conversion(e, e.revenue)

    def flush(self, q: int) -> None:
        a = self.attribution[q]
        a.expire_pending()
        for delta in a.drain_deltas():
            self.queues[(q, part(delta.campaign_id, P))].append(delta)
        progress = a.drain_progress()
        if progress is not None:
            for p in range(P):
                self.queues[(q, p)].append(progress)
        a.changes()

    def deliver(self, q: int, p: int, k: int) -> None:
        records, self.queues[(q, p)] = self.queues[(q, p)][:k], self.queues[(q, p)][k:]
        for record in records:
            self.aggregation[p].on_delta(record)

    def commit(self, p: int) -> None:
        self.now += 0.5
        agg = self.aggregation[p]
        agg.advance(self.now)
        for w in agg.drain_emissions(self.now)[0]:
            key = (w.campaign_id, w.window_start)
            assert key not in self.final or w.revision > self.final[key].revision, key
            self.final[key] = w
        agg.changes()

    def drain(self) -> None:
        for _ in range(2):
            for source in sorted(self.pending):
                self.read(source, len(self.pending[source]))
            for q in range(Q):
                self.flush(q)
            for q, p in list(self.queues):
                self.deliver(q, p, len(self.queues[(q, p)]))
            for p in range(P):
                self.commit(p)

    def windows(self) -> dict[Any, Window]:
        out = {}
        for key, w in self.final.items():
            m = w.metrics
            out[key] = (m.clicks, m.conversions, m.revenue, m.spend, m.impressions, m.reviews)
        return out

    def too_late(self) -> int:
        return sum(c.too_late_events for agg in self.aggregation for c in agg.campaigns.values())


def in_order(streams: Streams) -> Pipeline:
    """One event at a time in arrival order across all sources, each passed on at once."""
    pipe = Pipeline(streams)
    order = sorted((arrival, source) for source, events in streams.items() for arrival, _ in events)
    for _, source in order:
        pipe.read(source, 1)
        for q in range(Q):
            pipe.flush(q)
        for q, p in list(pipe.queues):
            pipe.deliver(q, p, len(pipe.queues[(q, p)]))
        for p in range(P):
            pipe.commit(p)
    pipe.drain()
    return pipe


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    schedule=st.lists(st.tuples(st.integers(0, 99), st.integers(1, 12)), max_size=150),
)
def test_any_interleaving_of_the_sources_gives_the_windows_of_in_order_processing(
    seed: int, schedule: list[tuple[int, int]]
) -> None:
    streams = generate_streams(seed)
    expected, late = expected_windows(streams)
    pipe = Pipeline(streams)
    sources = sorted(streams)
    pairs = sorted(pipe.queues)
    for action, k in schedule:
        choice = action % (len(sources) + Q + len(pairs) + P)
        if choice < len(sources):
            pipe.read(sources[choice], k)
            continue
        choice -= len(sources)
        if choice < Q:
            pipe.flush(choice)
            continue
        choice -= Q
        if choice < len(pairs):
            pipe.deliver(*pairs[choice], k)
        else:
            pipe.commit(choice - len(pairs))
    pipe.drain()  # the rest as a backlog: each source read to its end, one after the other
    assert pipe.windows() == expected
    assert pipe.too_late() == late
    ordered = in_order(streams)
    assert ordered.windows() == expected
    assert ordered.too_late() == late
