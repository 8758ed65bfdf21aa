"""The one settings object: every topic name, size and knob, fed by environment variables.

Each field reads ``STREAM_APP_<FIELD>`` (for example ``STREAM_APP_WINDOW_SIZE_SECONDS=30``);
a ``.env`` file in the working directory is read too. ``docs/configuration.md`` lists them.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .engine.clients import KafkaConnection
from .kafka_local.config import LocalKafkaConfig

DEFAULT_RATES: dict[str, float] = {
    "USD": 1.0,
    "EUR": 1.08,
    "GBP": 1.27,
    "JPY": 0.0067,
    "CAD": 0.73,
    "AUD": 0.66,
}

SENTIMENT_MODEL_DIR = Path(__file__).resolve().parents[1] / "onnx_models" / "sentiment"


class Topics(BaseSettings):
    """Kafka topic names; one name per concept, as in docs/topics.md."""

    model_config = SettingsConfigDict(env_prefix="STREAM_APP_TOPIC_", frozen=True)

    prefix: str = Field("", description="Prepended to every name, to share a cluster.")
    clicks: str = "clicks"
    conversions: str = "conversions"
    spend: str = "spend"
    reviews: str = "reviews"
    reviews_scored: str = "reviews-scored"
    clicks_scored: str = "clicks-scored"
    model_quality: str = "model-quality"
    campaign_deltas: str = "campaign-deltas"
    campaign_roi: str = "campaign-roi"
    campaign_roi_latest: str = "campaign-roi-latest"
    bid_signals: str = "bid-signals"
    campaign_alerts: str = "campaign-alerts"
    campaign_alerts_latest: str = "campaign-alerts-latest"
    review_topics: str = "review-topics"
    conversions_unattributed: str = "conversions-unattributed"
    dead_letter: str = "dead-letter"

    @model_validator(mode="after")
    def _apply_prefix(self) -> Topics:
        if self.prefix:
            for name in type(self).model_fields:
                value = getattr(self, name)
                if name != "prefix" and not value.startswith(self.prefix):
                    object.__setattr__(self, name, self.prefix + value)
        return self


class Settings(BaseSettings):
    """Runtime configuration of the worker, the generator and the demo."""

    model_config = SettingsConfigDict(
        env_prefix="STREAM_APP_", env_file=".env", extra="ignore", frozen=True
    )

    app_id: str = Field("campaign-roi", description="Consumer group and state-topic prefix.")
    worker_id: str = Field(
        "worker-1", description="Stable per worker; names its transactional producer."
    )
    bootstrap_servers: str = Field(
        "", description="Kafka to use; empty means the local broker on 127.0.0.1:kafka_port."
    )
    partitions: PositiveInt = Field(4, description="Partitions of every input and state topic.")
    replication_factor: PositiveInt | None = Field(
        None,
        description="Replicas of each topic the product creates (create-topics, worker start); "
        "empty means the broker's default.replication.factor. 3 on a production cluster. "
        "Existing topics are left as they are.",
    )
    min_insync_replicas: PositiveInt | None = Field(
        None,
        description="min.insync.replicas of each topic the product creates; empty means the "
        "broker's default. Every producer here writes with acks=all, so a write needs this "
        "many replicas in sync: 2 with 3 replicas survives one broker down without data loss.",
    )

    # Kafka security (docs/deployment.md): applied to every client the product makes
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="librdkafka security.protocol; SASL_SSL for a managed Kafka."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = Field(
        "PLAIN", description="sasl.mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str = Field("", description="SASL user (PLAIN, SCRAM).")
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), description="SASL password; never logged or shown (a secret string)."
    )
    kafka_ssl_ca_location: Path | None = Field(
        None, description="PEM file of the CAs to trust; empty means the system's CA store."
    )
    kafka_ssl_certificate_location: Path | None = Field(
        None, description="Client certificate (PEM) for mutual TLS."
    )
    kafka_ssl_key_location: Path | None = Field(
        None, description="Client private key (PEM) for mutual TLS."
    )
    kafka_ssl_key_password: SecretStr = Field(
        SecretStr(""), description="Password of the client key, if it has one."
    )
    kafka_client_config: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Any other librdkafka properties for every client (JSON object, e.g. "
        '`{"sasl.oauthbearer.method": "oidc", ...}`); values are kept secret. Applied after '
        "the settings above.",
    )

    # local broker (stream-app kafka start)
    kafka_port: PositiveInt = 9092
    kafka_controller_port: PositiveInt = 9093
    kafka_data_dir: Path = Path.home() / ".local/share/stream-app/kafka"
    kafka_cache_dir: Path = Path.home() / ".cache/stream-app"
    state_dir: Path = Field(
        Path.home() / ".local/share/stream-app/state",
        description="This worker's local files: the in-flight mark that isolates a record "
        "which kills the worker (docs/topology.md). Keep it on a volume that outlives restarts.",
    )

    state_store: Literal["memory", "rocksdb"] = Field(
        "memory",
        description="Where attribution keeps its keyed state (click index, seen ids, pending "
        "conversions, open clicks): `memory` (Python dicts, restored from the whole changelog "
        "on every assignment) or `rocksdb` (on disk under state_dir/stores/<worker_id>, memory "
        "bounded by the four settings below; a restart replays only the changelog after the "
        "store's checkpoint). docs/topology.md, State.",
    )
    state_block_cache_bytes: PositiveInt = Field(
        32 * 1024 * 1024,
        description="rocksdb: block cache shared by every store of the process (index and "
        "filter blocks included). 32 MiB ran as fast as 64 over 1.5M open clicks "
        "(docs/throughput.md, State).",
    )
    state_write_buffer_bytes: PositiveInt = Field(
        16 * 1024 * 1024, description="rocksdb: memtable size per store (one per partition)."
    )
    state_max_write_buffers: PositiveInt = Field(
        2, description="rocksdb: memtables per store, the active one included."
    )
    state_write_buffer_budget_bytes: PositiveInt = Field(
        64 * 1024 * 1024,
        description="rocksdb: the memtables of every store of the process together (a write "
        "buffer manager): past it the store being written flushes, so more partitions flush "
        "sooner rather than hold more (soft: each store keeps its active memtable).",
    )
    state_checkpoint_interval_seconds: float = Field(
        1.0,
        ge=0.0,
        description="rocksdb: how often committed writes go to disk with their changelog "
        "offset; in between they stay in memory (at most this long of writes per partition).",
    )

    # semantics (docs/semantics.md)
    window_size_seconds: PositiveInt = Field(60, description="Tumbling event-time windows.")
    allowed_lateness_seconds: float = Field(
        120.0,
        ge=0,
        description="A window takes its own events until the watermark passes its end plus "
        "this; then it closes and is forecast. Also how long a click's negative label waits.",
    )
    idle_source_timeout_seconds: PositiveFloat = Field(
        30.0,
        description="Windows close on the slowest input (spend, reviews-scored, each "
        "attribution partition's clicks and conversions). An input that has not advanced for "
        "this long, wall clock, since it was last seen or since the worker took the partition "
        "over, is idle and stops holding windows open until it advances again.",
    )
    attribution_window_seconds: PositiveFloat = Field(
        7 * 86400.0,
        description="A conversion counts for a click this long after it; a click without one "
        "by then is a negative label for the conversion model. The demo uses 600.",
    )
    label_window_seconds: PositiveFloat | None = Field(
        None,
        description="How long a click waits for a conversion before the conversion model learns "
        "it as a negative; empty means the attribution window. Shorter lets the model learn "
        "within hours instead of days; a conversion after it still counts as revenue, but the "
        "model has learnt that click as a negative.",
    )
    conversion_grace_seconds: float = Field(
        3600.0, ge=0, description="How long a conversion may wait for its click."
    )
    dedup_horizon_seconds: PositiveFloat = 86400.0
    reporting_currency: str = "USD"
    currency_rates: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_RATES),
        description="Units of reporting currency per unit of each currency (JSON).",
    )

    # processing
    commit_interval_seconds: PositiveFloat = Field(
        0.2,
        description="One Kafka transaction (outputs, state, offsets) per interval. A click "
        "reaches campaign-roi after about two intervals (docs/scaling.md): p99 0.6 s at 0.2 s "
        "and half the sustainable rate, 1.3 s at 0.5 s.",
    )
    max_poll_records: PositiveInt = 5000
    max_transaction_records: PositiveInt = Field(
        50_000,
        description="Input records one transaction may take: past this the worker waits for "
        "the transaction in flight before reading on, so a backlog is caught up in bounded "
        "transactions (their outputs, changelog and store writes are held in memory until "
        "committed) instead of ever larger ones.",
    )
    transaction_timeout_seconds: PositiveFloat = Field(
        10.0,
        description="How long the broker waits before aborting a crashed worker's open "
        "transaction; bounds how long a rebalance waits for read_committed state.",
    )

    session_timeout_seconds: PositiveFloat = Field(
        10.0,
        description="How long a worker may stop heartbeating (frozen, paused, cut off) before "
        "the group gives its partitions to another; a zombie's later commit is refused.",
    )
    max_poll_interval_seconds: PositiveFloat = Field(
        300.0,
        description="Longest gap between two polls before the group drops a worker "
        "(a stuck loop). Restores run outside the poll loop, so they are not bounded by it.",
    )

    # online models (docs/online-models.md)
    models_enabled: bool = Field(
        True, description="Conversion model and ROI forecaster; off only to measure their cost."
    )

    # bid signals (docs/bidding.md)
    bid_target_kind: Literal["roas", "roi"] = Field(
        "roas", description="What bid_target and bid_targets are: a ROAS or an ROI."
    )
    bid_target: float = Field(
        1.75,
        gt=-1.0,
        description="Default target of every campaign. 1.75 ROAS maximises profit when clicks "
        "grow as bid^0.8 and cost per click as bid^0.6 (the simulated auction).",
    )
    bid_targets: dict[str, float] = Field(
        default_factory=dict, description="Per-campaign targets (JSON), over bid_target."
    )
    bid_min_multiplier: PositiveFloat = Field(0.3, description="Lowest recommended multiplier.")
    bid_max_multiplier: PositiveFloat = Field(3.0, description="Highest recommended multiplier.")
    bid_max_step: PositiveFloat = Field(
        0.25, description="Largest relative change per decision (0.25: ×1.25 or ÷1.25)."
    )
    bid_interval_seconds: PositiveFloat = Field(
        900.0, description="Event time between two decisions of a campaign's multiplier."
    )
    bid_half_life_seconds: PositiveFloat = Field(
        6 * 3600.0, description="Event time after which evidence counts half as much."
    )
    bid_cpc_elasticity: PositiveFloat = Field(
        0.6, description="β in ROAS ∝ multiplier^−β: how much dearer clicks get as bids rise."
    )
    bid_prior_cvr: float = Field(
        0.02, gt=0, lt=1, description="Conversion rate assumed for a campaign with no history."
    )
    bid_prior_clicks: PositiveFloat = Field(
        50.0, description="Weight, in clicks, of a campaign's long-run CVR in its posterior."
    )
    bid_order_value_cv: PositiveFloat = Field(
        0.5, description="Spread of single order values (sd / mean) for the posterior."
    )
    bid_credibility_scale: PositiveFloat = Field(
        0.5,
        description="τ: the multiplier follows the evidence by τ²/(τ²+σ²), σ the sd of ln ROAS, "
        "and otherwise returns towards 1.",
    )
    bid_floor_roi: float = Field(
        0.0, gt=-1.0, description="Pause when ROI is below this with high probability."
    )
    bid_pause_probability: float = Field(
        0.9, gt=0, lt=1, description="P(ROI < floor at the lowest multiplier) that pauses."
    )
    bid_resume_probability: float = Field(
        0.5, gt=0, lt=1, description="P(ROI < floor) at or below which a paused campaign resumes."
    )

    # ROI-drop alerts and review topics (docs/alerts.md)
    alert_recent_seconds: PositiveFloat = Field(
        900.0, description="Recent span whose delay-corrected ROI is tested against the baseline."
    )
    alert_baseline_seconds: PositiveFloat = Field(
        6 * 3600.0, description="Baseline span, just before the recent one."
    )
    alert_min_spend: float = Field(
        10.0, ge=0, description="Least spend (reporting currency) in the recent span to alert."
    )
    alert_min_expected_conversions: float = Field(
        10.0,
        ge=0,
        description="Least conversions the recent span would have at the baseline CVR to alert.",
    )
    alert_z: PositiveFloat = Field(
        3.5, description="Standard errors ROAS must fall by (square-root Poisson scale) to fire."
    )
    alert_min_roi_drop: float = Field(
        0.25, ge=0, description="Least fall of ROI (recent against baseline) to fire."
    )
    alert_min_roas_fall: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Or least relative fall of ROAS to fire (a losing campaign has little ROI "
        "left to lose).",
    )
    alert_interval_seconds: PositiveFloat = Field(
        60.0, description="Event time between two tests of every campaign."
    )
    alert_bucket_seconds: PositiveFloat = Field(
        60.0,
        description="Event time summed per bucket (spans are whole buckets); rounded to whole "
        "click windows (window_size_seconds), as clicks and conversions arrive per window.",
    )
    alert_min_baseline_conversions: float = Field(
        30.0, ge=0, description="Least conversions in the baseline span to alert."
    )
    alert_review_span_seconds: PositiveFloat = Field(
        3600.0, description="Recent span of the sentiment (and fallback topic) comparison."
    )
    alert_delay_horizon_seconds: PositiveFloat = Field(
        3600.0,
        description="Conversion delays are histogrammed up to this; an older bucket is complete.",
    )
    demo_time_scale: PositiveFloat = Field(
        1.0,
        description="Event seconds per wall-clock second of the demo's traffic (1: live; the "
        "demo's tests run it faster to reach its alert sooner).",
    )
    review_topics_count: PositiveInt = Field(
        8, description="Topics of the online review topic model (per sentiment partition)."
    )

    # review sentiment (docs/sentiment.md)
    sentiment_model_dir: Path = Field(
        SENTIMENT_MODEL_DIR,
        description="Folder with model.int8.onnx, tokenizer.json and sentiment.json.",
    )
    sentiment_threads: PositiveInt = Field(1, description="onnxruntime intra-op threads.")
    sentiment_batch_size: PositiveInt = Field(
        64, description="Most reviews taken per poll and handed to one scoring call."
    )
    sentiment_model_batch_size: PositiveInt = Field(
        1,
        description="Texts per onnxruntime run. 32 is 22-36% faster on tweets only (slower "
        "on a mix with long reviews), but int8 activation ranges are per batch, so a score "
        "then depends on its neighbours (docs/sentiment.md).",
    )

    # observability
    metrics_port: int = Field(9308, ge=0, description="Prometheus /metrics; 0 disables.")
    metrics_bind_address: str = Field(
        "127.0.0.1",
        description="Address /metrics and /healthz listen on: loopback keeps a local run "
        "private; 0.0.0.0 (all interfaces, as the container sets it) lets Prometheus scrape "
        "it from another host.",
    )
    healthz_max_commit_age_seconds: PositiveFloat = Field(
        120.0,
        description="/healthz answers 503 when a worker has processed records but committed "
        "no transaction for this long (stuck transactions; an idle worker stays healthy).",
    )
    metrics_max_campaigns: PositiveInt = Field(
        50, description="Campaigns with their own label value; the rest are 'other'."
    )

    topics: Topics = Field(default_factory=Topics)

    @field_validator("currency_rates")
    @classmethod
    def _rates_positive(cls, rates: dict[str, float]) -> dict[str, float]:
        bad = [code for code, rate in rates.items() if not rate > 0]
        if bad:
            raise ValueError(f"currency rates must be positive: {bad}")
        return {code.upper(): rate for code, rate in rates.items()}

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        """Refuse a SASL setup without credentials at start, not as a broker timeout later."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        needs_password = sasl and self.kafka_sasl_mechanism != "OAUTHBEARER"
        if needs_password and not (
            self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} with "
                f"{self.kafka_sasl_mechanism} needs kafka_sasl_username and kafka_sasl_password"
            )
        if not self.kafka_security_protocol.endswith("SSL"):
            tls = [
                name
                for name in ("kafka_ssl_ca_location", "kafka_ssl_certificate_location")
                if getattr(self, name) is not None
            ]
            if tls:
                raise ValueError(f"{', '.join(tls)} set, but kafka_security_protocol has no SSL")
        if (
            self.min_insync_replicas is not None
            and self.replication_factor is not None
            and self.min_insync_replicas > self.replication_factor
        ):
            raise ValueError(
                f"min_insync_replicas {self.min_insync_replicas} > replication_factor "
                f"{self.replication_factor}: no write could ever succeed"
            )
        return self

    @model_validator(mode="after")
    def _group_timeouts(self) -> Settings:
        """librdkafka refuses a consumer whose poll interval is below its session timeout."""
        if self.max_poll_interval_seconds < self.session_timeout_seconds:
            raise ValueError("max_poll_interval_seconds must be >= session_timeout_seconds")
        return self

    @model_validator(mode="after")
    def _bid_bounds(self) -> Settings:
        if not self.bid_min_multiplier <= 1.0 <= self.bid_max_multiplier:
            raise ValueError("bid_min_multiplier <= 1 <= bid_max_multiplier required")
        if not self.bid_resume_probability < self.bid_pause_probability:
            raise ValueError("bid_resume_probability must be below bid_pause_probability")
        return self

    @model_validator(mode="after")
    def _local_bootstrap(self) -> Settings:
        if not self.bootstrap_servers:
            object.__setattr__(self, "bootstrap_servers", f"127.0.0.1:{self.kafka_port}")
        if self.reporting_currency not in self.currency_rates:
            raise ValueError(f"reporting currency {self.reporting_currency} has no rate")
        return self

    @cached_property
    def consumer_group(self) -> str:
        return self.app_id

    @cached_property
    def kafka(self) -> KafkaConnection:
        """The cluster for every Kafka client: bootstrap servers plus security settings."""
        security: dict[str, str] = {"security.protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL_"):
            security["sasl.mechanism"] = self.kafka_sasl_mechanism
            if self.kafka_sasl_username:
                security["sasl.username"] = self.kafka_sasl_username
                security["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        files = {
            "ssl.ca.location": self.kafka_ssl_ca_location,
            "ssl.certificate.location": self.kafka_ssl_certificate_location,
            "ssl.key.location": self.kafka_ssl_key_location,
        }
        security |= {key: str(path) for key, path in files.items() if path is not None}
        if key_password := self.kafka_ssl_key_password.get_secret_value():
            security["ssl.key.password"] = key_password
        security |= {k: v.get_secret_value() for k, v in self.kafka_client_config.items()}
        return KafkaConnection(self.bootstrap_servers, security)

    def local_kafka(self) -> LocalKafkaConfig:
        """The embedded broker's configuration, from the same settings."""
        return LocalKafkaConfig(
            port=self.kafka_port,
            controller_port=self.kafka_controller_port,
            data_dir=self.kafka_data_dir,
            cache_dir=self.kafka_cache_dir,
        )

    def state_topic(self, stage: str) -> str:
        """Compacted changelog topic of one processing stage."""
        return f"{self.app_id}-{stage}-changelog"
