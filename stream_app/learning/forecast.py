"""Forecast of a campaign window's final ROI at the moment the window closes.

When a window closes its clicks and spend are in, but conversions keep arriving for the
label window. :func:`roi_nowcast` adds the conversion model's expected revenue of the
clicks still waiting for their label to the revenue already seen; :class:`RoiForecaster`
learns, online, how the final ROI relates to the nowcast and the window's other facts
(spend, volume, CTR, sentiment, hour of day, the last matured ROI). It learns each window
once its ROI has matured, so it tracks drift the way the conversion model does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from river import compose, linear_model, optim, preprocessing

from ..domain.roi import roi_nowcast
from .features import Features
from .progressive import MeanTracker, ModelQuality, config_version, decode_state, encode_state

ROLLING_WINDOWS = 500


@dataclass(frozen=True, slots=True)
class ForecastInputs:
    """What is known when a campaign window closes (its conversions still arriving)."""

    campaign_id: str
    window_start: float
    window_size_seconds: int
    spend: float
    impressions: int
    clicks: int
    conversions: int
    revenue: float
    expected_revenue: float
    """Sum of the conversion model's expected_value over the window's clicks."""
    open_expected_revenue: float
    """The part of ``expected_revenue`` from clicks still awaiting their label."""
    sentiment_mean: float | None
    previous_roi: float | None
    """The campaign's last matured window ROI."""


def forecast_features(inputs: ForecastInputs) -> Features | None:
    """Numeric features of a closed window, or ``None`` when it has no spend.

    Ratios are clipped so one tiny-spend window cannot blow up a linear model.

    >>> f = forecast_features(ForecastInputs("cmp-001", 3600.0, 3600, 100.0, 20000, 200, 3,
    ...                                      90.0, 120.0, 30.0, None, 0.1))
    >>> f["nowcast"], f["expected_roi"], f["roi_so_far"], f["has_sentiment"]
    (0.2, 0.2, -0.1, 0.0)
    """
    nowcast = roi_nowcast(inputs.revenue, inputs.open_expected_revenue, inputs.spend)
    if nowcast is None:
        return None
    spend = inputs.spend
    hour = (inputs.window_start % 86400.0) / 3600.0
    angle = 2 * math.pi * hour / 24.0
    prev = inputs.previous_roi
    sentiment = inputs.sentiment_mean
    return {
        "nowcast": _clip(nowcast),
        "expected_roi": _clip((inputs.expected_revenue - spend) / spend),
        "roi_so_far": _clip((inputs.revenue - spend) / spend),
        "log_spend": math.log1p(spend),
        "log_clicks": math.log1p(inputs.clicks),
        "ctr": inputs.clicks / inputs.impressions if inputs.impressions else 0.0,
        "open_share": inputs.open_expected_revenue / inputs.expected_revenue
        if inputs.expected_revenue > 0
        else 0.0,
        "hour_sin": math.sin(angle),
        "hour_cos": math.cos(angle),
        "previous_roi": _clip(prev) if prev is not None and math.isfinite(prev) else 0.0,
        "has_previous": 0.0 if prev is None else 1.0,
        "sentiment": sentiment if sentiment is not None and math.isfinite(sentiment) else 0.0,
        "has_sentiment": 0.0 if sentiment is None else 1.0,
    }


def _clip(value: float, lo: float = -1.0, hi: float = 20.0) -> float:
    """ROI is at least -1; above 20 (21x ROAS) only happens on near-zero spend."""
    return lo if value < lo else hi if value > hi else value


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    """Knobs compared in tools/evaluate_models.py; the defaults are the measured choice."""

    target: Literal["roi", "residual"] = "roi"
    """``residual``: learn final ROI − nowcast; ``roi``: the final ROI itself."""
    learning_rate: float = 0.02
    """Measured: 0.005 learns too slowly, 0.05 is noisier, 0.1 diverges."""
    loss: Literal["squared", "huber", "absolute"] = "absolute"
    """``absolute`` learns the conditional median, which is what MAE rewards; on one-minute
    windows (0-2 conversions each) a squared loss chases the rare large ROIs (docs)."""

    @property
    def version(self) -> str:
        """``roi-forecast-linreg-v2`` for the defaults; others get a digest of their config."""
        return config_version("roi-forecast-linreg-v2", self, ForecastConfig())


class RoiForecaster:
    """Online linear regression (River) of a window's final ROI; see the module docstring.

    >>> f = RoiForecaster()
    >>> x = ForecastInputs("cmp-001", 0.0, 3600, 100.0, 20000, 200, 3, 90.0, 120.0, 30.0,
    ...                    None, None)
    >>> f.predict(x)  # before learning: the nowcast
    0.2
    >>> f.learn(x, 0.2, realised_roi=0.5)
    >>> f.quality().mae, f.samples_seen
    (0.3, 1)
    """

    def __init__(self, config: ForecastConfig | None = None) -> None:
        self.config = config or ForecastConfig()
        self.version = self.config.version
        self.samples_seen = 0
        self._model = self._new_model()
        self._errors = MeanTracker(window=ROLLING_WINDOWS)

    def _new_model(self) -> compose.Pipeline:
        c = self.config
        losses: dict[str, optim.losses.RegressionLoss] = {
            "squared": optim.losses.Squared(),
            "huber": optim.losses.Huber(epsilon=0.5),
            "absolute": optim.losses.Absolute(),  # the median: what MAE rewards
        }
        loss = losses[c.loss]
        regressor = linear_model.LinearRegression(
            optimizer=optim.SGD(c.learning_rate), loss=loss, intercept_lr=c.learning_rate
        )
        return preprocessing.StandardScaler() | regressor

    def predict(self, inputs: ForecastInputs) -> float | None:
        """Forecast of the window's final realised ROI; ``None`` when spend is zero."""
        x = forecast_features(inputs)
        if x is None:
            return None
        if self.samples_seen == 0:
            return x["nowcast"]  # nothing learnt yet: the nowcast is the best guess there is
        raw = float(self._model.predict_one(x))
        value = x["nowcast"] + raw if self.config.target == "residual" else raw
        return _clip(value) if math.isfinite(value) else x["nowcast"]

    def learn(self, inputs: ForecastInputs, predicted: float | None, realised_roi: float) -> None:
        """A matured window: the error of the forecast made at close first, then learn."""
        if not math.isfinite(realised_roi):
            return
        if predicted is not None:
            self._errors.update(abs(predicted - realised_roi))
        x = forecast_features(inputs)
        if x is None:
            return
        target = _clip(realised_roi)
        if self.config.target == "residual":
            target -= x["nowcast"]
        self._model.learn_one(x, target)
        self.samples_seen += 1

    def quality(self) -> ModelQuality:
        return ModelQuality(
            samples_seen=self.samples_seen,
            auc=None,
            log_loss=None,
            rolling_auc=None,
            mae=self._errors.mean(),
            drifts=0,
            rolling_mae=self._errors.rolling_mean(),
        )

    def to_state(self) -> str:
        return encode_state(self)

    @classmethod
    def from_state(cls, state: str) -> RoiForecaster:
        model = decode_state(state)
        if not isinstance(model, cls):
            raise TypeError(f"state holds a {type(model).__name__}, not a {cls.__name__}")
        return model
