"""Records the processor writes: per-window ROI, latest-per-campaign, deltas, dead letters.

Each has a JSON Schema in ``schemas/`` (generated from these structs by
``stream-app schemas export`` and checked in CI). Ratios are ``null`` when their
denominator is zero; sentiment and model fields are ``null`` until those stages run.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .roi import Totals


class Metrics(msgspec.Struct, frozen=True, kw_only=True):
    """Sums and ratios over one window or all time, money in ``currency``."""

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

    @classmethod
    def of(cls, totals: Totals, currency: str) -> Metrics:
        return cls(
            currency=currency,
            spend=round(totals.spend, 6),
            impressions=totals.impressions,
            clicks=totals.clicks,
            conversions=totals.conversions,
            revenue=round(totals.revenue, 6),
            roi=totals.roi(),
            roas=totals.roas(),
            cpa=totals.cpa(),
            ctr=totals.ctr(),
            cvr=totals.cvr(),
            reviews=totals.reviews,
            scored_reviews=totals.scored_reviews,
            sentiment_mean=totals.sentiment_mean(),
            negative_share=totals.negative_share(),
        )

    def totals(self) -> Totals:
        """The sums back (ratios are derived, so nothing is lost)."""
        scored = self.scored_reviews
        return Totals(
            spend=self.spend,
            impressions=self.impressions,
            clicks=self.clicks,
            conversions=self.conversions,
            revenue=self.revenue,
            reviews=self.reviews,
            scored_reviews=scored,
            sentiment_sum=(self.sentiment_mean or 0.0) * scored,
            negative_reviews=round((self.negative_share or 0.0) * scored),
        )


class Predictions(msgspec.Struct, frozen=True, kw_only=True):
    """What the online models say about a window (or all time); ``null`` without them.

    ``roi_nowcast`` = (revenue + ``open_expected_revenue`` − spend) / spend: the ROI once
    the clicks still inside their attribution window convert as the conversion model
    expects. ``roi_forecast`` is the forecaster's prediction of the window's final ROI, made
    when the window closed (``null`` while it is open). docs/online-models.md.
    """

    p_conversion_mean: float | None = None
    expected_revenue: float | None = None
    open_expected_revenue: float | None = None
    roi_nowcast: float | None = None
    roi_forecast: float | None = None
    conversion_model_version: str | None = None
    forecast_model_version: str | None = None


class WindowRoi(msgspec.Struct, frozen=True, kw_only=True):
    """``campaign-roi``: one campaign, one event-time window, re-emitted on every change."""

    schema_version: Literal[1] = 1
    campaign_id: str
    window_start: float
    window_end: float
    revision: int
    closed: bool = False
    """Its own events are in (past end + allowed lateness); conversions may still come."""
    metrics: Metrics
    predictions: Predictions = Predictions()
    emitted_at: float


class CampaignLatest(msgspec.Struct, frozen=True, kw_only=True):
    """``campaign-roi-latest`` (compacted, keyed by campaign_id): what a bidder reads."""

    schema_version: Literal[1] = 1
    campaign_id: str
    revision: int
    cumulative: Metrics
    predictions: Predictions = Predictions()
    """Over all time; ``roi_forecast`` is in ``last_closed_window``."""
    last_window: WindowRoi | None
    last_closed_window: WindowRoi | None = None
    too_late_events: int
    updated_at: float


DeltaKind = Literal["click", "conversion"]


class CampaignDelta(msgspec.Struct, frozen=True, array_like=True):
    """Internal (``campaign-deltas``): attribution's per-batch sums for one campaign window,
    or (kind ``progress``) how far one attribution partition has read its inputs.

    Pre-aggregating per batch keeps the repartition topic orders of magnitude smaller
    than the click stream it summarises. ``source`` is the attribution partition that sent
    it. ``late`` says its events were already late in their own input stream (judged there,
    event by event, before pre-aggregation hid their order): the window must not take them.

    A ``progress`` record has no campaign and no sums: it carries ``source``'s
    ``click_watermark`` and ``conversion_watermark`` (the largest event times it has read
    from ``clicks`` and ``conversions``; ``max_ts`` is the larger). Each attribution partition
    sends one to *every* partition after the deltas of a commit in which they moved, so
    aggregation knows its progress whether it got deltas from it or not (docs/semantics.md,
    Time). Records written before ``source`` existed decode with the defaults.
    """

    campaign_id: str
    window_start: float
    kind: DeltaKind | Literal["progress"]
    totals: list[int | float]  # Totals.to_list(): counts stay integers
    max_ts: float
    source: int | None = None
    late: bool = False
    click_watermark: float | None = None
    conversion_watermark: float | None = None

    @classmethod
    def progress(
        cls, source: int, click_watermark: float, conversion_watermark: float
    ) -> CampaignDelta:
        """The progress record of attribution partition ``source``."""
        return cls(
            campaign_id="",
            window_start=0.0,
            kind="progress",
            totals=[],
            max_ts=max(click_watermark, conversion_watermark),
            source=source,
            click_watermark=click_watermark,
            conversion_watermark=conversion_watermark,
        )


class ScoredReview(msgspec.Struct, frozen=True, kw_only=True):
    """``reviews-scored`` (keyed by campaign_id): a review's sentiment, never its text.

    ``score`` is ``2 * P(positive) - 1`` in [-1, 1]. A review the model cannot read (empty,
    no words, not English) still counts as a review: ``score`` and ``label`` are ``null``
    and ``unscored_reason`` says why.
    """

    schema_version: Literal[1] = 1
    event_id: str
    campaign_id: str
    ts: float
    rating: int | None
    score: float | None
    label: Literal["negative", "positive"] | None
    unscored_reason: Literal["empty_text", "no_words", "non_english"] | None
    truncated: bool
    model_version: str
    scored_at: float


class ClickScored(msgspec.Struct, frozen=True, kw_only=True):
    """``clicks-scored`` (keyed by click_id): the conversion model's view of a new click.

    Made from the click alone before any label is known; bidders read it per click.
    ``expected_value`` = ``p_conversion`` × predicted order value, in ``currency``.
    """

    schema_version: Literal[1] = 1
    click_id: str
    campaign_id: str
    ts: float
    p_conversion: float
    expected_value: float
    currency: str
    model_version: str
    scored_at: float


class ModelQualityRecord(msgspec.Struct, frozen=True, kw_only=True):
    """``model-quality`` (keyed by model and partition): progressive validation.

    Every figure compares a label with the prediction made *before* it was known. Each
    input partition has its own model (docs/online-models.md), hence one record each.
    """

    schema_version: Literal[1] = 1
    model: Literal["conversion", "roi_forecast"]
    model_version: str
    partition: int
    samples_seen: int
    auc: float | None
    log_loss: float | None
    rolling_auc: float | None
    rolling_log_loss: float | None
    mae: float | None
    rolling_mae: float | None
    drifts: int
    emitted_at: float


class UnattributedConversion(msgspec.Struct, frozen=True, kw_only=True):
    """``conversions-unattributed``: counted, never dropped, for reconciliation."""

    schema_version: Literal[1] = 1
    event_id: str
    click_id: str
    revenue: float
    currency: str
    ts: float
    reason: Literal["unknown_click", "outside_window"]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """``dead-letter``: the original bytes, where they came from and why they were refused.

    An original too large to fit whole keeps a prefix: ``truncated`` is true, and
    ``original_size`` and ``original_sha256`` identify the full record.
    """

    schema_version: Literal[1] = 1
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key_b64: str | None
    value_b64: str
    reason: str
    detail: str
    worker_id: str
    failed_at: float
    truncated: bool = False
    original_size: int | None = None
    original_sha256: str | None = None


class BidInputs(msgspec.Struct, frozen=True, kw_only=True):
    """The ROI figures a bidder also sees on ``campaign-roi-latest``, at decision time.

    The rule decides on the posterior (``BidUncertainty``); these are carried so a bidder
    can compare: the nowcast of the latest window, the forecast of the latest closed one,
    the last matured window's realised ROI and the all-time ROI (docs/bidding.md).
    """

    roi_nowcast: float | None = None
    roi_forecast: float | None = None
    matured_roi: float | None = None
    cumulative_roi: float | None = None


class BidUncertainty(msgspec.Struct, frozen=True, kw_only=True):
    """The posterior behind a multiplier, from decayed evidence (docs/bidding.md).

    ``spend`` … ``revenue`` are the evidence sums, each event weighted by
    2^(−age / half-life); a campaign with 3 conversions here is far less certain than one
    with 3,000. ROAS is CVR × order value / CPC; ``roas_p05``/``roas_p95`` bound a 90 %
    interval; ``credibility`` in [0, 1] is how far the multiplier follows the evidence rather
    than 1; ``p_roi_below_floor`` is P(ROI < floor) at the lowest multiplier.
    """

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


class BidSignal(msgspec.Struct, frozen=True, kw_only=True):
    """``bid-signals`` (compacted, keyed by campaign_id): the recommended bid multiplier.

    One decision per campaign per ``bid_interval_seconds`` of event time. ``multiplier``
    scales the campaign's base bid, within the configured bounds and at most
    ``bid_max_step`` from ``previous_multiplier``. ``advice``: ``run``; ``pause`` (stop
    bidding: ROI is below ``floor_roi`` with high probability even at the lowest
    multiplier); ``paused`` (still); ``resume`` (bid again, at the lowest multiplier).
    Money in ``currency``.
    """

    schema_version: Literal[1] = 1
    campaign_id: str
    revision: int
    multiplier: float
    previous_multiplier: float
    paused: bool
    advice: Literal["run", "pause", "paused", "resume"]
    target_kind: Literal["roas", "roi"]
    target: float
    target_roas: float
    floor_roi: float
    currency: str
    decided_at: float
    """Event time of the decision (a multiple of ``bid_interval_seconds``)."""
    inputs: BidInputs
    uncertainty: BidUncertainty
    emitted_at: float


class AlertDriver(msgspec.Struct, frozen=True, kw_only=True):
    """One term of the exact decomposition log ROAS = log CTR + log CVR + log order value
    − log CPM (docs/alerts.md).

    ``contribution`` is the term's change in log ROAS (signed: negative pulls ROAS down;
    for ``cpm`` it is −Δ log CPM); ``share`` = contribution / Δ log ROAS, so the shares sum
    to 1 and a term that moved against the change has a negative share.
    """

    name: Literal["ctr", "cvr", "order_value", "cpm"]
    before: float
    now: float
    contribution: float
    share: float


class AlertTopic(msgspec.Struct, frozen=True, kw_only=True):
    """A review topic whose share among the campaign's negative reviews grew."""

    topic: int
    terms: list[str]
    share_before: float
    share_now: float


class AlertSentiment(msgspec.Struct, frozen=True, kw_only=True):
    """Review sentiment before and now (``null`` without scored reviews in the span)."""

    reviews_before: int
    reviews_now: int
    mean_before: float | None
    mean_now: float | None
    negative_share_before: float | None
    negative_share_now: float | None


class CampaignAlert(msgspec.Struct, frozen=True, kw_only=True):
    """``campaign-alerts`` (keyed by campaign_id; ``campaign-alerts-latest`` compacted).

    One record when a campaign's delay-corrected ROI drops (``state`` ``firing``) and one when
    it recovers (``resolved``); ``alert_id`` is the same for both. ``roi_before`` is the
    baseline span's ROI, ``roi_now`` the recent span's, both with the recent clicks'
    conversions still to come estimated from the observed conversion-delay distribution
    (docs/alerts.md). ``drivers`` are ordered by how much they pulled ROAS down, the true
    cause first; ``summary`` is the one-line explanation also exported to Prometheus.
    """

    schema_version: Literal[1] = 1
    alert_id: str
    campaign_id: str
    state: Literal["firing", "resolved"]
    severity: Literal["page", "ticket"]
    revision: int
    window_start: float
    """Start of the recent span (event time)."""
    window_end: float
    baseline_start: float
    baseline_end: float
    roi_before: float
    roi_now: float
    z_score: float
    spend_now: float
    conversions_now: int
    expected_conversions_now: float
    """Conversions the recent clicks would have had by now at the baseline CVR."""
    currency: str
    drivers: list[AlertDriver]
    sentiment: AlertSentiment
    topics: list[AlertTopic]
    summary: str
    fired_at: float
    """Event time at which it fired."""
    resolved_at: float | None = None
    emitted_at: float


class TopicTerms(msgspec.Struct, frozen=True, kw_only=True):
    topic: int
    terms: list[str]


class ReviewTopics(msgspec.Struct, frozen=True, kw_only=True):
    """``review-topics`` (keyed by campaign_id): one campaign's reviews of one micro-batch
    and minute, as topic mass (the online topic model's document-topic shares summed).

    ``negative_mass`` counts only reviews scored below 0. ``topics`` are the model's top
    terms per topic as of this batch. Never review text: terms only.
    """

    schema_version: Literal[1] = 1
    campaign_id: str
    bucket_start: float
    reviews: int
    negative_reviews: int
    mass: list[float]
    negative_mass: list[float]
    topics: list[TopicTerms]
    model_version: str
    emitted_at: float
