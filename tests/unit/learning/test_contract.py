"""Every online model passes one contract, as in river/checks: predicting before learning,
inputs left alone, state that survives a round trip, deterministic copies, bounded state."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from stream_app.domain.events import Click
from stream_app.learning import (
    ConversionModel,
    ForecastInputs,
    RoiForecaster,
    click_features,
)


@dataclass
class Case:
    """How to drive one model: fresh instance, an input, a label for it, a prediction."""

    make: Callable[[], Any]
    sample: Callable[[random.Random], tuple[Any, Any]]
    learn: Callable[[Any, Any, Any, Any], None]
    predict: Callable[[Any, Any], Any]


def _click(rng: random.Random) -> tuple[dict[str, float], tuple[bool, float | None]]:
    campaign = f"cmp-00{rng.randrange(1, 5)}"
    click = Click(
        schema_version=1,
        event_id="e",
        click_id="c",
        campaign_id=campaign,
        channel=rng.choice(["search", "social"]),
        user_id="u",
        ts=1.0,
        device=rng.choice(["mobile", "desktop", "tablet"]),
        geo=rng.choice(["US", "GB", "DE"]),
        placement=rng.choice(["top", "side"]),
        creative=f"{campaign}-cr{rng.randrange(1, 4)}",
    )
    converted = rng.random() < 0.1
    return click_features(click), (converted, rng.uniform(5, 50) if converted else None)


def _window(rng: random.Random) -> tuple[ForecastInputs, float]:
    spend = rng.uniform(0.0, 100.0) if rng.random() > 0.05 else 0.0
    clicks = rng.randrange(0, 200)
    expected = rng.uniform(0, 150)
    inputs = ForecastInputs(
        campaign_id=f"cmp-00{rng.randrange(1, 5)}",
        window_start=3600.0 * rng.randrange(0, 100),
        window_size_seconds=3600,
        spend=spend,
        impressions=clicks * 50,
        clicks=clicks,
        conversions=rng.randrange(0, 5),
        revenue=rng.uniform(0, 100),
        expected_revenue=expected,
        open_expected_revenue=expected * rng.random(),
        sentiment_mean=rng.choice([None, rng.uniform(-1, 1)]),
        previous_roi=rng.choice([None, rng.uniform(-1, 3)]),
    )
    return inputs, rng.uniform(-1, 3)


def _learn_conversion(m: ConversionModel, x: dict[str, float], y: Any, _pred: Any) -> None:
    m.learn(x, m.predict(x).p_conversion, y[0], y[1])


def _learn_forecast(m: RoiForecaster, x: ForecastInputs, y: float, _pred: Any) -> None:
    m.learn(x, m.predict(x), y)


CASES = {
    "conversion": Case(ConversionModel, _click, _learn_conversion, lambda m, x: m.predict(x)),
    "forecast": Case(RoiForecaster, _window, _learn_forecast, lambda m, x: m.predict(x)),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def _stream(case: Case, seed: int, n: int) -> Iterator[tuple[Any, Any]]:
    rng = random.Random(seed)
    for _ in range(n):
        yield case.sample(rng)


def _train(case: Case, model: Any, seed: int, n: int) -> Any:
    for x, y in _stream(case, seed, n):
        case.learn(model, x, y, None)
    return model


def test_predict_before_learning(case: Case) -> None:
    model = case.make()
    for x, _ in _stream(case, 1, 20):
        value = case.predict(model, x)
        if isinstance(model, ConversionModel):
            assert 0.0 <= value.p_conversion <= 1.0
            assert math.isfinite(value.expected_value)
        elif x.spend == 0:
            assert value is None
        else:
            assert value is not None
            assert math.isfinite(value)
    assert model.samples_seen == 0
    assert model.quality().samples_seen == 0


def test_inputs_are_not_mutated(case: Case) -> None:
    model = _train(case, case.make(), 2, 50)
    for x, y in _stream(case, 3, 50):
        before = copy.deepcopy(x)
        case.predict(model, x)
        case.learn(model, x, y, None)
        assert x == before


def test_state_round_trip_predicts_identically(case: Case) -> None:
    model = _train(case, case.make(), 4, 500)
    restored = type(model).from_state(model.to_state())
    assert restored.samples_seen == model.samples_seen == 500 - _skipped(case, 4, 500)
    assert restored.version == model.version
    assert restored.quality() == model.quality()
    # and they stay identical while both keep learning
    for x, y in _stream(case, 5, 200):
        assert case.predict(restored, x) == case.predict(model, x)
        case.learn(model, x, y, None)
        case.learn(restored, x, y, None)
    assert restored.quality() == model.quality()
    for x, _ in _stream(case, 12, 50):
        assert case.predict(restored, x) == case.predict(model, x)


def _skipped(case: Case, seed: int, n: int) -> int:
    """Forecast windows without spend are not learnt (no ROI to learn from)."""
    if case is CASES["conversion"]:
        return 0
    return sum(1 for x, _ in _stream(case, seed, n) if x.spend == 0)


def test_state_is_json_storable(case: Case) -> None:
    state = _train(case, case.make(), 6, 50).to_state()
    assert isinstance(state, str)
    state.encode("ascii")  # no escaping needed inside a JSON string
    other = RoiForecaster if isinstance(case.make(), ConversionModel) else ConversionModel
    with pytest.raises(TypeError, match="state holds"):
        other.from_state(state)


def test_copies_trained_alike_agree(case: Case) -> None:
    a = _train(case, case.make(), 7, 300)
    b = _train(case, case.make(), 7, 300)
    assert a.quality() == b.quality()
    for x, _ in _stream(case, 8, 50):
        assert case.predict(a, x) == case.predict(b, x)
    c = _train(case, case.make(), 9, 300)  # different data: the check can fail
    assert any(case.predict(a, x) != case.predict(c, x) for x, _ in _stream(case, 8, 50))


def test_state_size_levels_off(case: Case) -> None:
    warmup = 6000 if case is CASES["conversion"] else 1000  # past the rolling AUC's window
    model = _train(case, case.make(), 10, warmup)
    warm = len(model.to_state())
    _train(case, model, 11, 3 * warmup)
    assert len(model.to_state()) < 1.1 * warm


def test_version_is_stable() -> None:
    assert ConversionModel().version == ConversionModel().version == "conversion-ftrl-v1"
    assert RoiForecaster().version.startswith("roi-forecast-")
