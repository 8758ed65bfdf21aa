"""Agent over ``spend``, ``reviews-scored`` and ``campaign-deltas`` (all keyed by campaign_id).

Folds them into per-campaign windows and cumulative totals and emits every changed window
to ``campaign-roi`` and every changed campaign to ``campaign-roi-latest``. ``campaign-deltas``
also carries each attribution partition's progress (records of kind ``progress``); windows
close on the minimum watermark over every input source (docs/semantics.md, Time).
The partition's ROI forecaster forecasts each window as it closes and learns as windows
mature; its progressive MAE goes to ``model-quality``. Spend, clicks and conversions also
feed each campaign's bidding evidence, and once per ``bid_interval_seconds`` of event time
every campaign gets a decision on ``bid-signals`` (docs/bidding.md) — in the same
transaction as ``campaign-roi-latest``, its state in the same changelog. Once per minute of
event time each campaign's delay-corrected ROI is also tested for a drop: alerts that fire
or resolve go to ``campaign-alerts`` and the compacted ``campaign-alerts-latest``, explained
by their drivers, sentiment and the ``review-topics`` that grew (docs/alerts.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from ..domain.alerts import AlertBook, AlertConfig
from ..domain.bidding import BidBook, BiddingConfig
from ..domain.events import Event, Spend
from ..domain.journal import Change
from ..domain.money import CurrencyTable
from ..domain.outcomes import Outcome
from ..domain.records import BidInputs, CampaignDelta, ReviewTopics, ScoredReview
from ..domain.roi import Totals
from ..domain.validation import Reason
from ..domain.windows import Aggregation, AggregationConfig
from ..engine.stage import Outbox
from ..learning import ConversionConfig, RoiForecaster
from ..settings import Settings
from ..state import MemoryStore, StateStore
from .base import EdgeDecoder, Record
from .quality import quality_record, record_key

_encode = msgspec.json.Encoder().encode
_decode_delta = msgspec.json.Decoder(CampaignDelta).decode
_decode_review = msgspec.json.Decoder(ScoredReview).decode
_decode_topics = msgspec.json.Decoder(ReviewTopics).decode
T = TypeVar("T")


class PartitionAggregation(Aggregation):
    """One campaign partition's windows, totals, ROI forecaster and bidding state.

    Windows live in ``store`` (:class:`~stream_app.domain.windows.Aggregation`); the
    bidding and alerting books stay in memory (bounded by campaigns, not by time), with a
    copy of their changelog records in the store to rebuild them from a reused store.
    """

    def __init__(
        self,
        partition: int,
        config: AggregationConfig,
        forecaster: RoiForecaster | None = None,
        conversion_model_version: str | None = None,
        bidding: BiddingConfig | None = None,
        alerting: AlertConfig | None = None,
        store: StateStore | None = None,
    ) -> None:
        # before the base constructor: it restores them from a reused store
        self.bids = BidBook(bidding or BiddingConfig(), config.currency)
        self.alerts = AlertBook(alerting or AlertConfig(), config.currency)
        super().__init__(config, forecaster, conversion_model_version, store)
        self.partition = partition
        self.reported_samples = 0

    def on_spend(self, spend: Spend, amount: float) -> Outcome:
        outcome = super().on_spend(spend, amount)
        if outcome is not Outcome.DUPLICATE:
            self.bids.observe(spend.campaign_id, spend.ts, spend=amount)
            self.alerts.observe_spend(spend.campaign_id, spend.ts, amount, spend.impressions)
        return outcome

    def on_review(self, review: ScoredReview) -> Outcome:
        outcome = super().on_review(review)
        if outcome is not Outcome.DUPLICATE:
            self.alerts.observe_review(review)
        return outcome

    def on_delta(self, delta: CampaignDelta) -> Outcome:
        outcome = super().on_delta(delta)
        if delta.kind != "progress":  # late or not, evidence is evidence
            t = Totals.from_list(delta.totals)
            self.bids.observe(
                delta.campaign_id,
                delta.max_ts,
                clicks=t.clicks,
                conversions=t.conversions,
                revenue=t.revenue,
            )
            if delta.kind == "click":
                self.alerts.observe_clicks(delta.campaign_id, delta.window_start, t.clicks)
            else:  # the delay from the middle of the click window: ± half a window
                middle = delta.window_start + self.config.window_size_seconds / 2
                self.alerts.observe_conversions(
                    delta.campaign_id,
                    delta.window_start,
                    t.conversions,
                    t.revenue,
                    delta.max_ts - middle,
                )
        return outcome

    def bid_context(self, campaign_id: str) -> tuple[Totals | None, BidInputs]:
        """All-time totals (the bidding priors) and the ROI figures reported with a bid."""
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            return None, BidInputs()
        last = self.window(campaign_id, campaign.last_window_start or -1.0)
        closed = self.window(campaign_id, campaign.last_closed_start or -1.0)
        scored = self.conversion_model_version is not None
        return campaign.totals, BidInputs(
            roi_nowcast=last.totals.roi_nowcast() if last is not None and scored else None,
            roi_forecast=closed.forecast if closed is not None else None,
            matured_roi=campaign.last_matured_roi,
            cumulative_roi=campaign.totals.roi(),
        )

    def changes(self) -> list[Change]:
        books = self.bids.changes() + self.alerts.changes()
        self.keep(books)
        return super().changes() + books

    def _restore_record(self, key: str, value: Any) -> None:
        if self.bids.owns(key):
            self.bids.restore(key, value)
        elif self.alerts.owns(key):
            self.alerts.restore(key, value)
        else:
            super()._restore_record(key, value)


def bidding_config(settings: Settings) -> BiddingConfig:
    """The bid rule's configuration from the ``bid_*`` settings."""
    return BiddingConfig(
        target_kind=settings.bid_target_kind,
        target=settings.bid_target,
        targets=dict(settings.bid_targets),
        min_multiplier=settings.bid_min_multiplier,
        max_multiplier=settings.bid_max_multiplier,
        max_step=settings.bid_max_step,
        interval_seconds=settings.bid_interval_seconds,
        half_life_seconds=settings.bid_half_life_seconds,
        cpc_elasticity=settings.bid_cpc_elasticity,
        prior_cvr=settings.bid_prior_cvr,
        prior_clicks=settings.bid_prior_clicks,
        order_value_cv=settings.bid_order_value_cv,
        credibility_scale=settings.bid_credibility_scale,
        floor_roi=settings.bid_floor_roi,
        pause_probability=settings.bid_pause_probability,
        resume_probability=settings.bid_resume_probability,
    )


class AggregationAgent:
    name = "aggregation"
    stateful = True

    def __init__(self, settings: Settings) -> None:
        t = settings.topics
        self.topics = (t.spend, t.reviews_scored, t.campaign_deltas, t.review_topics)
        self._topics_topic = t.review_topics
        self._alerts_topic = t.campaign_alerts
        self._alerts_latest_topic = t.campaign_alerts_latest
        self._deltas_topic = t.campaign_deltas
        self._reviews_topic = t.reviews_scored
        self._roi_topic = t.campaign_roi
        self._latest_topic = t.campaign_roi_latest
        self._bids_topic = t.bid_signals
        self._quality_topic = t.model_quality
        self._models = settings.models_enabled
        self._config = AggregationConfig(
            window_size_seconds=settings.window_size_seconds,
            allowed_lateness_seconds=settings.allowed_lateness_seconds,
            attribution_window_seconds=settings.attribution_window_seconds,
            dedup_horizon_seconds=settings.dedup_horizon_seconds,
            currency=settings.reporting_currency,
            upstream_partitions=settings.partitions,
            idle_source_timeout_seconds=settings.idle_source_timeout_seconds,
        )
        self._bidding = bidding_config(settings)
        self._alerting = AlertConfig(
            recent_seconds=settings.alert_recent_seconds,
            baseline_seconds=settings.alert_baseline_seconds,
            min_spend=settings.alert_min_spend,
            min_expected_conversions=settings.alert_min_expected_conversions,
            z_fire=settings.alert_z,
            min_roi_drop=settings.alert_min_roi_drop,
            min_roas_fall=settings.alert_min_roas_fall,
            interval_seconds=settings.alert_interval_seconds,
            # whole click windows: clicks and conversions arrive per window (docs/alerts.md)
            bucket_seconds=max(
                1, round(settings.alert_bucket_seconds / settings.window_size_seconds)
            )
            * float(settings.window_size_seconds),
            min_baseline_conversions=settings.alert_min_baseline_conversions,
            review_span_seconds=settings.alert_review_span_seconds,
            delay_horizon_seconds=settings.alert_delay_horizon_seconds,
        )
        currencies = CurrencyTable(settings.currency_rates, settings.reporting_currency)
        self._edge = EdgeDecoder({t.spend: "spend"}, currencies, t.dead_letter, settings.worker_id)

    def new_state(self, partition: int) -> PartitionAggregation:
        return self.new_stored_state(partition, MemoryStore())

    def new_stored_state(self, partition: int, store: StateStore) -> PartitionAggregation:
        """The partition's state over ``store`` (the engine's, on disk when configured)."""
        if not self._models:
            return PartitionAggregation(
                partition, self._config, bidding=self._bidding, alerting=self._alerting, store=store
            )
        return PartitionAggregation(
            partition,
            self._config,
            RoiForecaster(),
            ConversionConfig().version,
            self._bidding,
            self._alerting,
            store,
        )

    def process(self, state: PartitionAggregation, records: Sequence[Record], out: Outbox) -> None:
        topic = records[0].topic if records else None
        if topic == self._deltas_topic:
            self._process_deltas(state, records, out)
        elif topic == self._reviews_topic:
            self._process_reviews(state, records, out)
        elif topic == self._topics_topic:
            for record in records:
                found = self._internal(record, _decode_topics, out)
                if found is not None:
                    state.alerts.observe_topics(found)
        else:

            def handle(event: Event, money: float) -> Outcome:
                assert isinstance(event, Spend)
                return state.on_spend(event, money)

            self._edge.process(records, out, handle)

    def _process_reviews(
        self, state: PartitionAggregation, records: Sequence[Record], out: Outbox
    ) -> None:
        counts: dict[Outcome, int] = {}
        for record in records:
            review = self._internal(record, _decode_review, out)
            if review is not None:
                outcome = state.on_review(review)
                counts[outcome] = counts.get(outcome, 0) + 1
        for outcome, n in counts.items():
            out.outcomes[(self._reviews_topic, outcome)] += n

    def _internal(self, record: Record, decode: Callable[[bytes], T], out: Outbox) -> T | None:
        """Our own records from an internal topic; a malformed one is dead-lettered."""
        try:
            return decode(record.value or b"")
        except msgspec.DecodeError as exc:
            self._edge.reject(record, Reason.SCHEMA_VIOLATION, str(exc), out)
            return None

    def _process_deltas(
        self, state: PartitionAggregation, records: Sequence[Record], out: Outbox
    ) -> None:
        for record in records:
            delta = self._internal(record, _decode_delta, out)
            if delta is None:
                continue
            if state.on_delta(delta) is Outcome.TOO_LATE:  # count the events, not the record
                totals = Totals.from_list(delta.totals)
                late = totals.clicks if delta.kind == "click" else totals.conversions
                out.outcomes[(record.topic, Outcome.TOO_LATE)] += late

    def flush(self, state: PartitionAggregation, out: Outbox, now: float) -> None:
        state.advance(now)
        windows, latest = state.drain_emissions(now)
        for window in windows:
            out.send(self._roi_topic, window.campaign_id.encode(), _encode(window))
        for record in latest:
            out.send(self._latest_topic, record.campaign_id.encode(), _encode(record))
        out.latest.extend(latest)
        for signal in state.bids.tick(state.watermark, now, state.bid_context):
            out.send(self._bids_topic, signal.campaign_id.encode(), _encode(signal))
            out.bid_signals.append(signal)
        for alert in state.alerts.tick(state.watermark, state.conversion_watermark, now):
            value = _encode(alert)
            out.send(self._alerts_topic, alert.campaign_id.encode(), value)
            out.send(self._alerts_latest_topic, alert.campaign_id.encode(), value)
            out.alerts.append(alert)
        forecaster = state.forecaster
        if forecaster is not None and forecaster.samples_seen != state.reported_samples:
            state.reported_samples = forecaster.samples_seen
            quality = quality_record(
                "roi_forecast", forecaster.version, state.partition, forecaster.quality(), now
            )
            out.send(self._quality_topic, record_key(quality), _encode(quality))
            out.model_quality.append(quality)
