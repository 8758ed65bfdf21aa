"""Windows, lateness, revisions and cumulative totals of the aggregation stage."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream_app.domain.events import Spend
from stream_app.domain.outcomes import Outcome
from stream_app.domain.records import CampaignDelta, ScoredReview
from stream_app.domain.roi import Totals
from stream_app.domain.windows import Aggregation, AggregationConfig
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


def spend(n: int, ts: float, amount: float = 10.0, campaign: str = "c1") -> Spend:
    return Spend(1, f"s{n}", campaign, "search", amount, "USD", 100, ts)


def conversions(window: float, n: int, revenue: float, ts: float) -> CampaignDelta:
    totals = Totals(conversions=n, revenue=revenue)
    return CampaignDelta("c1", window, "conversion", totals.to_list(), ts)


def test_each_change_re_emits_the_window_with_the_next_revision() -> None:
    agg = Aggregation(CONFIG)
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
    agg = Aggregation(CONFIG)
    agg.on_spend(spend(1, T0 + 70), 10.0)
    assert agg.on_spend(spend(2, T0 + 59), 5.0) is Outcome.ACCEPTED  # end 60 + 30 > 70
    windows, _ = agg.drain_emissions(now=0.0)
    assert {w.window_start: w.metrics.spend for w in windows} == {T0: 5.0, T0 + 60: 10.0}


def test_too_late_event_counts_only_in_cumulative_totals() -> None:
    agg = Aggregation(CONFIG)
    agg.on_spend(spend(1, T0 + 200), 10.0)
    agg.drain_emissions(now=0.0)
    assert agg.on_spend(spend(2, T0 + 10), 5.0) is Outcome.TOO_LATE
    windows, [latest] = agg.drain_emissions(now=0.0)
    assert windows == []
    assert latest.cumulative.spend == 15.0
    assert latest.too_late_events == 1


def test_conversions_reach_old_click_windows_within_the_attribution_window() -> None:
    agg = Aggregation(CONFIG)
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
    agg = Aggregation(CONFIG)
    agg.on_review(review(1, None))
    agg.on_review(review(2, -0.5))
    assert agg.on_review(review(2, -0.5)) is Outcome.DUPLICATE
    [w], _ = agg.drain_emissions(now=0.0)
    assert (w.metrics.reviews, w.metrics.scored_reviews) == (2, 1)
    assert (w.metrics.sentiment_mean, w.metrics.negative_share) == (-0.5, 1.0)


def rebuild(agg: Aggregation, log: dict[str, object]) -> Aggregation:
    return restore_through(log, agg, lambda: Aggregation(CONFIG))


def test_revisions_and_totals_survive_a_restore_and_old_windows_expire() -> None:
    log: dict[str, object] = {}
    agg = Aggregation(CONFIG)
    agg.on_spend(spend(1, T0), 10.0)
    agg.drain_emissions(now=0.0)
    agg = rebuild(agg, log)
    assert agg.on_spend(spend(1, T0), 10.0) is Outcome.DUPLICATE
    agg.on_spend(spend(2, T0 + 1), 1.0)
    [w], [latest] = agg.drain_emissions(now=0.0)
    assert (w.revision, w.metrics.spend, latest.revision) == (2, 11.0, 2)
    agg.on_spend(spend(3, T0 + 60 + 630 + 60), 1.0)  # past end + attribution + lateness
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
    agg = Aggregation(CONFIG)
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
    return Aggregation(CONFIG, RoiForecaster(), conversion_model_version="conv-test")


def test_a_window_is_forecast_at_close_and_learned_from_at_maturity() -> None:
    agg = forecasting()
    agg.on_spend(spend(1, T0 + 1), 10.0)
    agg.on_delta(clicks(T0, 5, T0 + 2, expected=12.0))
    agg.close_windows()
    [open_window], _ = agg.drain_emissions(now=0.0)
    assert not open_window.closed
    assert open_window.predictions.roi_forecast is None
    assert open_window.predictions.roi_nowcast == 0.2  # (0 + 12 - 10) / 10
    assert open_window.predictions.conversion_model_version == "conv-test"

    agg.on_spend(spend(2, T0 + 60 + 30, campaign="c2"), 1.0)  # watermark: end + lateness
    agg.close_windows()
    windows, [latest, _] = agg.drain_emissions(now=0.0)
    [closed] = [w for w in windows if w.campaign_id == "c1"]
    assert closed.closed
    assert closed.predictions.roi_forecast == 0.2  # untrained: the nowcast
    assert latest.last_closed_window == closed
    assert agg.forecaster is not None
    assert agg.forecaster.samples_seen == 0

    agg.on_delta(conversions(T0, 1, 30.0, T0 + 200))  # realised ROI: (30 - 10) / 10 = 2
    agg.on_spend(spend(3, T0 + 60 + 600 + 30 + 1, campaign="c2"), 1.0)  # matures T0
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
        agg.close_windows()
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
    agg.close_windows()
    late = Totals(conversions=1, revenue=5.0, spend=2.0)  # another campaign's first delta
    agg.on_delta(CampaignDelta("c9", T0, "conversion", late.to_list(), T0 + 101))
    agg.close_windows()
    assert agg.windows[("c9", T0)].closed
    assert agg.windows[("c9", T0)].forecast is not None
