"""The chosen pipelines learn the generator's traffic with delayed labels (a small run)."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from stream_app.learning import ConversionModel, ForecastInputs, RoiForecaster
from stream_app.learning.progressive import RankAUC
from stream_app.learning.replay import build_windows, event_order, replay

from .traffic import COLLAPSE_AT, COLLAPSE_CAMPAIGN, LABEL_WINDOW, small_traffic

WARMUP = 10_000
"""Clicks before the AUC is scored; docs/online-models.md measures it on the 3-day run."""


def _auc(labels: list[bool], scores: list[float]) -> float:
    metric = RankAUC()
    for y, p in zip(labels, scores, strict=True):
        metric.update(y, p)
    value = metric.get()
    assert value is not None
    return value


@pytest.fixture(scope="module")
def run() -> tuple[ConversionModel, list[float], list[float]]:
    traffic = small_traffic()
    model = ConversionModel()
    result = replay(model, traffic.clicks)
    return model, result.predictions, result.expected_values


def test_auc_reaches_097_of_the_oracle_after_warmup(
    run: tuple[ConversionModel, list[float], list[float]],
) -> None:
    clicks = small_traffic().clicks
    _, preds, _ = run
    assert len(clicks) > 5 * WARMUP
    labels = [c.converted for c in clicks][WARMUP:]
    model_auc = _auc(labels, preds[WARMUP:])
    oracle_auc = _auc(labels, [c.p_true for c in clicks][WARMUP:])
    assert oracle_auc > 0.6  # the traffic has something to learn
    assert model_auc >= 0.97 * oracle_auc


def test_labels_only_after_their_click(
    run: tuple[ConversionModel, list[float], list[float]],
) -> None:
    clicks = small_traffic().clicks
    seen: set[int] = set()
    for _, kind, i in event_order(clicks):
        if kind == 0:
            seen.add(i)
        else:
            assert i in seen
            assert clicks[i].label_ts - clicks[i].click.ts <= LABEL_WINDOW
    model, _, _ = run
    assert model.samples_seen == len(clicks)


def test_expected_value_is_close_to_the_truth(
    run: tuple[ConversionModel, list[float], list[float]],
) -> None:
    clicks = small_traffic().clicks
    _, _, values = run
    late = range(len(clicks) // 2, len(clicks))
    by_campaign: dict[str, list[float]] = {}
    for i in late:
        acc = by_campaign.setdefault(clicks[i].click.campaign_id, [0.0, 0.0])
        acc[0] += values[i]
        acc[1] += clicks[i].true_value
    for campaign, (predicted, true) in by_campaign.items():
        assert predicted == pytest.approx(true, rel=0.35), campaign


def test_collapse_is_followed() -> None:
    """cmp-002 converts five times less from hour 4 on; the model must follow."""
    clicks = small_traffic(collapse=True).clicks
    preds = replay(ConversionModel(), clicks).predictions
    collapse_ts = clicks[0].click.ts // 3600 * 3600 + COLLAPSE_AT  # the start is on the hour
    idx = [i for i, c in enumerate(clicks) if c.click.campaign_id == COLLAPSE_CAMPAIGN]
    before = [i for i in idx if clicks[i].click.ts < collapse_ts][-500:]
    after = idx[-500:]
    assert clicks[after[0]].click.ts > collapse_ts + 2 * LABEL_WINDOW

    def ratio(sel: list[int]) -> float:
        return sum(preds[i] for i in sel) / sum(clicks[i].p_true for i in sel)

    true_drop = sum(clicks[i].p_true for i in after) / sum(clicks[i].p_true for i in before)
    assert true_drop < 0.25
    # a model that did not adapt would be ~5x over; it must have come most of the way back
    assert ratio(after) < 2.5 * ratio(before)


def test_windows_add_up_to_the_traffic(
    run: tuple[ConversionModel, list[float], list[float]],
) -> None:
    traffic = small_traffic()
    _, _, values = run
    cases = build_windows(traffic, values, 600)
    assert sum(c.inputs.clicks for c in cases) == len(traffic.clicks)
    assert sum(c.conversions_final for c in cases) == sum(c.converted for c in traffic.clicks)
    assert math.isclose(sum(c.inputs.spend for c in cases), sum(s.amount for s in traffic.spend))
    for c in cases:
        assert c.inputs.conversions <= c.conversions_final
        assert c.inputs.open_expected_revenue <= c.inputs.expected_revenue + 1e-9
        if c.realised_roi is not None:
            assert c.realised_roi >= -1.0


def test_forecaster_learns_a_bias_of_the_nowcast() -> None:
    """Realised ROI = nowcast + 0.5: the forecaster must learn the offset the nowcast misses."""
    rng = random.Random(0)
    base = ForecastInputs("cmp-001", 0.0, 3600, 100.0, 10000, 100, 2, 50.0, 80.0, 30.0, None, None)
    model = RoiForecaster()
    errors = []
    for n in range(3000):
        spend = rng.uniform(50, 150)
        x = replace(base, window_start=3600.0 * n, spend=spend, revenue=rng.uniform(0, 200))
        nowcast = (x.revenue + x.open_expected_revenue - spend) / spend
        predicted = model.predict(x)
        assert predicted is not None
        errors.append(abs(predicted - (nowcast + 0.5)))
        model.learn(x, predicted, nowcast + 0.5)
    assert errors[0] == pytest.approx(0.5)
    assert sum(errors[-300:]) / 300 < 0.1
    q = model.quality()
    assert q.mae is not None
    assert q.rolling_mae is not None
    assert q.rolling_mae < q.mae
