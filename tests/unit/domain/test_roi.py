"""Running totals against the batch formulas, after every prefix of random data."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.domain.records import Metrics
from stream_app.domain.roi import TOTAL_FIELDS, Totals

money = st.floats(min_value=0, max_value=1e6, allow_nan=False)
counts = st.integers(min_value=0, max_value=10_000)
parts = st.lists(
    st.builds(
        Totals,
        spend=money,
        impressions=counts,
        clicks=counts,
        conversions=counts,
        revenue=money,
        reviews=counts,
    ),
    max_size=30,
)


@given(parts)
def test_incremental_totals_match_batch_formulas_after_every_prefix(items: list[Totals]) -> None:
    running = Totals()
    for n, item in enumerate(items, start=1):
        running.add(item)
        prefix = items[:n]
        spend = sum(t.spend for t in prefix)
        revenue = sum(t.revenue for t in prefix)
        clicks = sum(t.clicks for t in prefix)
        assert math.isclose(running.spend, spend, rel_tol=1e-9, abs_tol=1e-6)
        assert running.clicks == clicks
        expected = (revenue - spend) / spend if spend else math.inf
        if math.isfinite(expected):
            roi = running.roi()
            assert roi is not None
            assert math.isclose(roi, expected, rel_tol=1e-6, abs_tol=1e-9)
        else:  # no spend, or a ratio that overflows: null, never inf
            assert running.roi() is None


@given(parts)
def test_ratios_are_never_inf_or_nan(items: list[Totals]) -> None:
    total = Totals()
    for item in items:
        total.add(item)
    for value in (total.roi(), total.roas(), total.cpa(), total.ctr(), total.cvr()):
        assert value is None or math.isfinite(value)


def test_zero_denominators_are_null_in_output_records() -> None:
    m = Metrics.of(Totals(revenue=10.0), "USD")
    assert (m.roi, m.roas, m.cpa, m.ctr, m.cvr) == (None, None, None, None, None)


def test_metrics_give_their_totals_back() -> None:
    totals = Totals(1.5, 100, 10, 2, 7.25, 4, 3, 0.9, 1)
    back = Metrics.of(totals, "USD").totals()
    assert back.sentiment_sum == pytest.approx(totals.sentiment_sum)
    back.sentiment_sum = totals.sentiment_sum
    assert back == totals


def test_positional_form_round_trips_every_field() -> None:
    totals = Totals(1.5, 100, 10, 2, 7.25, 4, 3, 0.9, 1)
    assert len(totals.to_list()) == len(TOTAL_FIELDS)
    assert Totals.from_list(totals.to_list()) == totals
