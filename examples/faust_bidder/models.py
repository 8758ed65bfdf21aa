"""Typed ``faust.Record`` models of the two topics a bidder reads.

They mirror ``schemas/bid-signal.schema.json`` and ``schemas/campaign-roi-latest.schema.json``
field for field; ``tests/unit/examples/test_faust_models.py`` compares them, so a schema
change that these models miss fails the tests instead of a bidder in production.
"""

from __future__ import annotations

import faust


class BidInputs(faust.Record, serializer="json"):
    roi_nowcast: float | None = None
    roi_forecast: float | None = None
    matured_roi: float | None = None
    cumulative_roi: float | None = None


class BidUncertainty(faust.Record, serializer="json"):
    spend: float
    clicks: float
    conversions: float
    revenue: float
    cvr_mean: float
    cvr_sd: float
    order_value_mean: float
    order_value_sd: float
    cpc: float
    roas_mean: float
    roas_p05: float
    roas_p95: float
    credibility: float
    p_roi_below_floor: float


class BidSignal(faust.Record, serializer="json"):
    """``bid-signals``: the recommended multiplier of one campaign."""

    campaign_id: str
    revision: int
    multiplier: float
    previous_multiplier: float
    paused: bool
    advice: str
    target_kind: str
    target: float
    target_roas: float
    floor_roi: float
    currency: str
    decided_at: float
    inputs: BidInputs
    uncertainty: BidUncertainty
    emitted_at: float
    schema_version: int = 1


class Metrics(faust.Record, serializer="json"):
    currency: str
    spend: float
    impressions: int
    clicks: int
    conversions: int
    revenue: float
    roi: float | None
    roas: float | None
    cpa: float | None
    ctr: float | None
    cvr: float | None
    reviews: int
    scored_reviews: int
    sentiment_mean: float | None
    negative_share: float | None


class Predictions(faust.Record, serializer="json"):
    p_conversion_mean: float | None = None
    expected_revenue: float | None = None
    open_expected_revenue: float | None = None
    roi_nowcast: float | None = None
    roi_forecast: float | None = None
    conversion_model_version: str | None = None
    forecast_model_version: str | None = None


class WindowRoi(faust.Record, serializer="json"):
    campaign_id: str
    window_start: float
    window_end: float
    revision: int
    metrics: Metrics
    emitted_at: float
    schema_version: int = 1
    closed: bool = False
    predictions: Predictions = Predictions()


class CampaignLatest(faust.Record, serializer="json"):
    """``campaign-roi-latest``: one campaign's cumulative metrics and latest windows."""

    campaign_id: str
    revision: int
    cumulative: Metrics
    last_window: WindowRoi | None
    too_late_events: int
    updated_at: float
    schema_version: int = 1
    predictions: Predictions = Predictions()
    last_closed_window: WindowRoi | None = None


MODELS: dict[str, type[faust.Record]] = {
    "BidSignal": BidSignal,
    "BidInputs": BidInputs,
    "BidUncertainty": BidUncertainty,
    "CampaignLatest": CampaignLatest,
    "Metrics": Metrics,
    "Predictions": Predictions,
    "WindowRoi": WindowRoi,
}
"""Each model by the name of its ``$defs`` entry in ``schemas/``."""
