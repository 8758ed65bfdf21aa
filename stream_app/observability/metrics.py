"""Every metric the worker exports, built from an injected registry (one per test).

Names follow Prometheus conventions: base units, ``_total`` counters, ``_ratio`` for
unitless ratios. Money gauges carry the reporting currency as a label. Campaign labels
are bounded by :class:`LabelBudget`; campaigns beyond the budget are summed into
``campaign="other"``. A ratio whose denominator is zero is absent, not NaN.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ..domain.records import BidSignal, CampaignAlert, ModelQualityRecord
from ..domain.records import Metrics as RecordMetrics
from ..domain.roi import Totals
from ..engine.stage import Outbox
from ..engine.worker import CommitObserver, Worker
from .labels import OTHER, LabelBudget

EXPLANATION_MAX_CHARS = 300
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The worker's metrics; :meth:`observe_commit` is the engine's commit observer."""

    def __init__(self, registry: CollectorRegistry, max_campaigns: int) -> None:
        self.registry = registry
        self._budget = LabelBudget(max_campaigns)
        self._others: dict[str, RecordMetrics] = {}
        self._other_bids: dict[str, BidSignal] = {}
        self.events = Counter(
            "stream_app_events_total",
            "Input events by topic and outcome (accepted, duplicate, attributed, ...).",
            ["topic", "outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "stream_app_dead_letters_total",
            "Input records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        # per worker of a process: "roi" (attribution + aggregation) or "sentiment"
        self.transactions = Counter(
            "stream_app_transactions_total",
            "Committed Kafka transactions (outputs + state + offsets).",
            ["worker"],
            registry=registry,
        )
        self.latency = Histogram(
            "stream_app_processing_latency_seconds",
            "From the Kafka timestamp of the oldest record of a partition batch to the "
            "commit of the transaction that carries its results.",
            ["worker"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.commit_duration = Histogram(
            "stream_app_commit_duration_seconds",
            "Time to flush, produce and commit one transaction.",
            ["worker"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.unrestored = Gauge(
            "stream_app_partitions_unrestored",
            "Assigned partitions paused because their state could not be restored "
            "from the changelog (the log says why; retried at the next rebalance).",
            ["worker"],
            registry=registry,
        )
        self._loop_time = _LoopTime()
        registry.register(self._loop_time)
        self.ready = Gauge(
            "stream_app_worker_ready",
            "1 when the worker has its partitions assigned and restored (/healthz), else 0.",
            ["worker"],
            registry=registry,
        )
        self.lag = Gauge(
            "stream_app_consumer_lag_messages",
            "Records in assigned input partitions not yet processed, summed per topic.",
            ["topic"],
            registry=registry,
        )
        self.unattributed = Counter(
            "stream_app_conversions_unattributed_total",
            "Conversions with no click in the attribution window, by reason.",
            ["reason"],
            registry=registry,
        )
        self.model_info = Gauge(
            "stream_app_model_info",
            "The model version each model slot serves (value 1).",
            ["model", "version"],
            registry=registry,
        )
        self.reviews_scored = Counter(
            "stream_app_reviews_scored_total",
            "Review deliveries scored, by label (positive when score >= 0); a duplicate "
            "delivery is scored again and dropped later, at aggregation.",
            ["label"],
            registry=registry,
        )
        self.reviews_unscored = Counter(
            "stream_app_reviews_unscored_total",
            "Reviews counted but not scored (empty_text, no_words, non_english).",
            ["reason"],
            registry=registry,
        )
        self.sentiment_batch_duration = Histogram(
            "stream_app_sentiment_batch_duration_seconds",
            "Time to tokenise and score one micro-batch of reviews.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.sentiment_batch_size = Histogram(
            "stream_app_sentiment_batch_reviews",
            "Reviews per scored micro-batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )

        def model_gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, ["model", "partition"], registry=registry)

        self.model_samples = model_gauge(
            "stream_app_model_samples_seen", "Labels a partition's model has learned from."
        )
        self.model_auc = model_gauge(
            "stream_app_model_progressive_auc_ratio",
            "ROC AUC of predictions made before their label was known, since start.",
        )
        self.model_rolling_auc = model_gauge(
            "stream_app_model_rolling_auc_ratio", "Progressive ROC AUC over recent labels."
        )
        self.model_log_loss = model_gauge(
            "stream_app_model_progressive_log_loss", "Progressive log loss, since start."
        )
        self.model_mae = model_gauge(
            "stream_app_model_progressive_mae_ratio",
            "Progressive mean absolute error of ROI forecasts (ROI is a ratio).",
        )
        self.model_drifts = model_gauge(
            "stream_app_model_drifts", "Drift detections that reset or sped up the model."
        )

        def campaign_gauge(name: str, doc: str, *extra: str) -> Gauge:
            return Gauge(name, doc, ["campaign", *extra], registry=registry)

        self.spend = campaign_gauge(
            "stream_app_campaign_spend", "Cumulative spend (reporting currency).", "currency"
        )
        self.revenue = campaign_gauge(
            "stream_app_campaign_revenue", "Cumulative attributed revenue.", "currency"
        )
        self.cpa = campaign_gauge(
            "stream_app_campaign_cpa",
            "Cumulative cost per attributed conversion (reporting currency).",
            "currency",
        )
        self.clicks = campaign_gauge("stream_app_campaign_clicks", "Clicks, cumulative.")
        self.conversions = campaign_gauge(
            "stream_app_campaign_conversions", "Attributed conversions, cumulative."
        )
        self.roi = campaign_gauge("stream_app_campaign_roi_ratio", "Cumulative ROI.")
        self.roas = campaign_gauge("stream_app_campaign_roas_ratio", "Cumulative ROAS.")
        self.ctr = campaign_gauge("stream_app_campaign_ctr_ratio", "Cumulative CTR.")
        self.cvr = campaign_gauge("stream_app_campaign_cvr_ratio", "Cumulative CVR.")
        self.window_roi = campaign_gauge(
            "stream_app_campaign_window_roi_ratio", "ROI of the campaign's latest window."
        )
        self.sentiment = campaign_gauge(
            "stream_app_campaign_sentiment_mean", "Mean review sentiment in [-1, 1]."
        )
        self.window_nowcast = campaign_gauge(
            "stream_app_campaign_window_roi_nowcast_ratio",
            "ROI of the latest window once its open clicks convert as the model expects.",
        )
        self.window_forecast = campaign_gauge(
            "stream_app_campaign_window_roi_forecast_ratio",
            "Forecast final ROI of the campaign's latest closed window.",
        )
        self.p_conversion = campaign_gauge(
            "stream_app_campaign_p_conversion_mean_ratio",
            "Mean predicted p(conversion) of the campaign's clicks, cumulative.",
        )
        self.negative_share = campaign_gauge(
            "stream_app_campaign_negative_review_ratio", "Share of scored reviews below 0."
        )
        self.reviews = campaign_gauge(
            "stream_app_campaign_reviews", "Reviews received (scored or not), cumulative."
        )
        # bid-signals (docs/bidding.md); campaign="other": the mean multiplier and the
        # number paused of the campaigns beyond the label budget
        self.bid_multiplier = campaign_gauge(
            "stream_app_campaign_bid_multiplier_ratio",
            "Recommended bid multiplier of the campaign's latest bid-signals decision "
            "(× its base bid; kept while paused).",
        )
        self.bid_paused = campaign_gauge(
            "stream_app_campaign_bid_paused",
            "1 while the latest bid-signals decision advises the campaign paused, else 0.",
        )
        self.bid_decisions = Counter(
            "stream_app_bid_decisions_total",
            "bid-signals decisions committed, by advice (run, pause, paused, resume).",
            ["advice"],
            registry=registry,
        )

        self.alert_info = Gauge(
            "stream_app_campaign_alert_info",
            "1 while the campaign's ROI-drop alert fires; its id, severity, first driver and "
            "explanation as labels (one series per firing campaign: bounded by the campaign "
            "label budget, removed when the alert resolves). docs/alerts.md.",
            ["campaign", "alert_id", "severity", "driver", "explanation"],
            registry=registry,
        )
        self.alerts = Counter(
            "stream_app_alerts_total",
            "ROI-drop alert records by state (firing, resolved) and severity.",
            ["state", "severity"],
            registry=registry,
        )
        self._alert_labels: dict[str, tuple[str, ...]] = {}

    def observe_alert(self, alert: CampaignAlert) -> None:
        """Export one committed alert record (firing: set; resolved: remove)."""
        self.alerts.labels(alert.state, alert.severity).inc()
        label = self._budget.label(alert.campaign_id)
        if label == OTHER:
            return
        old = self._alert_labels.pop(label, None)
        if old is not None:
            with contextlib.suppress(KeyError):
                self.alert_info.remove(*old)
        if alert.state != "firing":
            return
        driver = alert.drivers[0].name if alert.drivers else ""
        labels = (
            label,
            alert.alert_id,
            alert.severity,
            driver,
            alert.summary[:EXPLANATION_MAX_CHARS],
        )
        self.alert_info.labels(*labels).set(1)
        self._alert_labels[label] = labels

    def watch(self, name: str, worker: Worker) -> None:
        """Health gauges read from ``worker`` at every scrape."""
        self.unrestored.labels(name).set_function(lambda: len(worker.unrestored))
        self.ready.labels(name).set_function(lambda: float(worker.health() is None))
        self._loop_time.workers[name] = worker

    # -- observer -----------------------------------------------------------------------
    def observer(self, worker: str) -> CommitObserver:
        """The engine's commit observer for one worker of this process."""
        return functools.partial(self.observe_commit, worker=worker)

    def observe_commit(
        self,
        out: Outbox,
        duration: float,
        oldest_ms: Mapping[tuple[str, int], int],
        lag: Mapping[str, int],
        now: float,
        worker: str = "roi",
    ) -> None:
        self.transactions.labels(worker).inc()
        self.commit_duration.labels(worker).observe(duration)
        latency = self.latency.labels(worker)
        for ts_ms in oldest_ms.values():
            latency.observe(max(0.0, now - ts_ms / 1000))
        for (topic, outcome), n in out.outcomes.items():
            self.events.labels(topic, outcome).inc(n)
        for reason, n in out.dead_letters.items():
            self.dead_letters.labels(reason).inc(n)
        for reason, n in out.unattributed.items():
            self.unattributed.labels(reason).inc(n)
        for label, n in out.reviews_scored.items():
            self.reviews_scored.labels(label).inc(n)
        for reason, n in out.reviews_unscored.items():
            self.reviews_unscored.labels(reason).inc(n)
        for size, seconds in out.sentiment_batches:
            self.sentiment_batch_size.observe(size)
            self.sentiment_batch_duration.observe(seconds)
        for q in out.model_quality:
            self._set_model(q)
        for topic, messages in lag.items():
            self.lag.labels(topic).set(messages)
        for alert in out.alerts:
            self.observe_alert(alert)
        others_changed = False
        for record in out.latest:
            label = self._budget.label(record.campaign_id)
            if label == OTHER:
                self._others[record.campaign_id] = record.cumulative
                others_changed = True
            else:
                self._set_campaign(label, record.cumulative)
                window, closed = record.last_window, record.last_closed_window
                _set(self.window_roi, label, window.metrics.roi if window else None)
                _set(self.window_nowcast, label, window.predictions.roi_nowcast if window else None)
                _set(
                    self.window_forecast, label, closed.predictions.roi_forecast if closed else None
                )
                _set(self.p_conversion, label, record.predictions.p_conversion_mean)
        if others_changed:
            self._set_campaign(OTHER, _sum(self._others.values()))
        self._set_bids(out.bid_signals)

    def _set_bids(self, signals: Iterable[BidSignal]) -> None:
        others_changed = False
        for signal in signals:
            self.bid_decisions.labels(signal.advice).inc()
            label = self._budget.label(signal.campaign_id)
            if label == OTHER:
                self._other_bids[signal.campaign_id] = signal
                others_changed = True
            else:
                self.bid_multiplier.labels(label).set(signal.multiplier)
                self.bid_paused.labels(label).set(float(signal.paused))
        if others_changed:
            others = self._other_bids.values()
            self.bid_multiplier.labels(OTHER).set(sum(s.multiplier for s in others) / len(others))
            self.bid_paused.labels(OTHER).set(sum(s.paused for s in others))

    def _set_model(self, q: ModelQualityRecord) -> None:
        labels = (q.model, str(q.partition))
        self.model_info.labels(q.model, q.model_version).set(1)
        self.model_samples.labels(*labels).set(q.samples_seen)
        self.model_drifts.labels(*labels).set(q.drifts)
        for gauge, value in (
            (self.model_auc, q.auc),
            (self.model_rolling_auc, q.rolling_auc),
            (self.model_log_loss, q.log_loss),
            (self.model_mae, q.mae),
        ):
            if value is not None:
                gauge.labels(*labels).set(value)

    def _set_campaign(self, label: str, m: RecordMetrics) -> None:
        self.spend.labels(label, m.currency).set(m.spend)
        self.revenue.labels(label, m.currency).set(m.revenue)
        self.clicks.labels(label).set(m.clicks)
        self.conversions.labels(label).set(m.conversions)
        _set(self.cpa, (label, m.currency), m.cpa)
        _set(self.roi, label, m.roi)
        _set(self.roas, label, m.roas)
        _set(self.ctr, label, m.ctr)
        _set(self.cvr, label, m.cvr)
        _set(self.sentiment, label, m.sentiment_mean)
        _set(self.negative_share, label, m.negative_share)
        self.reviews.labels(label).set(m.reviews)


def _set(gauge: Gauge, labels: str | tuple[str, ...], value: float | None) -> None:
    """Set the series, or remove it when the value is undefined (absent, not NaN)."""
    values = (labels,) if isinstance(labels, str) else labels
    if value is None:
        with contextlib.suppress(KeyError):  # absent already
            gauge.remove(*values)
    else:
        gauge.labels(*values).set(value)


def _sum(metrics: Iterable[RecordMetrics]) -> RecordMetrics:
    """Totals over many campaigns, with every ratio recomputed from the sums."""
    totals = Totals()
    currency = ""
    for m in metrics:
        currency = m.currency
        totals.add(m.totals())
    return RecordMetrics.of(totals, currency)


class _LoopTime(Collector):
    """``stream_app_worker_loop_seconds_total``: each watched worker's
    :attr:`~stream_app.engine.worker.Worker.loop_seconds`, read at every scrape."""

    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "stream_app_worker_loop_seconds",
            "Seconds of a worker's event-loop thread by phase: poll (waiting for records), "
            "process, prepare (flush and serialise a transaction), wait_commit (a full "
            "transaction waiting for the one in flight).",
            labels=["worker", "phase"],
        )
        for name, worker in self.workers.items():
            for phase, seconds in worker.loop_seconds.items():
                family.add_metric([name, phase], seconds)
        yield family
