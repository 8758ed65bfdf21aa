"""Agent over ``clicks`` + ``conversions`` (both keyed by click_id): attribution and the
conversion model.

Emits per-batch sums per campaign window to ``campaign-deltas`` (keyed by campaign_id),
which repartitions the attributed stream onto the campaign-keyed aggregation agent, and
after them, to every ``campaign-deltas`` partition, the partition's click and conversion
watermarks whenever they moved (aggregation closes windows on the slowest source). Each
new click is scored by the partition's conversion model (``clicks-scored``); labels teach
it at every commit, and its progressive quality goes to ``model-quality``.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ..domain.attribution import Attribution, AttributionConfig
from ..domain.events import Click, Conversion, Event
from ..domain.money import CurrencyTable
from ..domain.outcomes import Outcome
from ..domain.records import ClickScored
from ..engine.stage import Outbox
from ..learning import ConversionModel
from ..settings import Settings
from ..state import MemoryStore, StateStore
from .base import EdgeDecoder, Record
from .quality import quality_record, record_key


class PartitionAttribution(Attribution):
    """One click_id partition's attribution state and conversion model."""

    def __init__(
        self,
        partition: int,
        config: AttributionConfig,
        model: ConversionModel | None,
        store: StateStore | None = None,
    ) -> None:
        super().__init__(config, model, partition, store)
        self.partition: int = partition


_encode = msgspec.json.Encoder().encode


class AttributionAgent:
    name = "attribution"
    stateful = True

    def __init__(self, settings: Settings) -> None:
        t = settings.topics
        self.topics = (t.clicks, t.conversions)
        self._deltas_topic = t.campaign_deltas
        self._unattributed_topic = t.conversions_unattributed
        self._scored_topic = t.clicks_scored
        self._quality_topic = t.model_quality
        self._models = settings.models_enabled
        self._currency = settings.reporting_currency
        self._config = AttributionConfig(
            window_size_seconds=settings.window_size_seconds,
            attribution_window_seconds=settings.attribution_window_seconds,
            conversion_grace_seconds=settings.conversion_grace_seconds,
            dedup_horizon_seconds=settings.dedup_horizon_seconds,
            currency=settings.reporting_currency,
            label_window_seconds=settings.label_window_seconds,
            label_lateness_seconds=settings.allowed_lateness_seconds,
            allowed_lateness_seconds=settings.allowed_lateness_seconds,
        )
        self._aggregation_partitions = settings.partitions
        currencies = CurrencyTable(settings.currency_rates, settings.reporting_currency)
        self._edge = EdgeDecoder(
            {t.clicks: "click", t.conversions: "conversion"},
            currencies,
            t.dead_letter,
            settings.worker_id,
        )

    def new_state(self, partition: int) -> PartitionAttribution:
        return self.new_stored_state(partition, MemoryStore())

    def new_stored_state(self, partition: int, store: StateStore) -> PartitionAttribution:
        """The partition's state over ``store`` (the engine's, on disk when configured)."""
        model = ConversionModel() if self._models else None
        return PartitionAttribution(partition, self._config, model, store)

    def process(self, state: PartitionAttribution, records: Sequence[Record], out: Outbox) -> None:
        on_click, on_conversion = state.on_click, state.on_conversion

        def handle(event: Event, money: float) -> Outcome:
            if type(event) is Click:
                return on_click(event)
            assert isinstance(event, Conversion)
            return on_conversion(event, money)

        self._edge.process(records, out, handle)

    def flush(self, state: PartitionAttribution, out: Outbox, now: float) -> None:
        state.expire_pending()
        state.expire_labels()
        quality = state.learn()
        model = state.model
        if model is not None:
            self._send_scored(state, model.version, out, now)
            if quality is not None:
                record = quality_record("conversion", model.version, state.partition, quality, now)
                out.send(self._quality_topic, record_key(record), _encode(record))
                out.model_quality.append(record)
        for delta in state.drain_deltas():
            out.send(self._deltas_topic, delta.campaign_id.encode(), _encode(delta))
        progress = state.drain_progress()
        if progress is not None:  # to every partition, deltas or not, after the deltas
            encoded = _encode(progress)
            for p in range(self._aggregation_partitions):
                out.send(self._deltas_topic, None, encoded, p)
        for conversion in state.drain_unattributed():
            out.send(self._unattributed_topic, conversion.click_id.encode(), _encode(conversion))
            out.unattributed[conversion.reason] += 1

    def _send_scored(
        self, state: PartitionAttribution, version: str, out: Outbox, now: float
    ) -> None:
        """One ``clicks-scored`` record per new click, keyed by click_id like ``clicks`` (so
        to the click's own partition).

        One encode per record: each is its own Kafka message, and encoding the batch as one
        list and splitting it measured slower (docs/throughput.md, "The model path").
        """
        send, topic, partition, currency = (
            out.send,
            self._scored_topic,
            state.partition,
            self._currency,
        )
        for click, scored in state.drain_scored_clicks():
            click_id = click.click_id
            value = ClickScored(
                click_id=click_id,
                campaign_id=click.campaign_id,
                ts=click.ts,
                p_conversion=scored.p_conversion,
                expected_value=scored.expected_value,
                currency=currency,
                model_version=version,
                scored_at=now,
            )
            send(topic, click_id.encode(), _encode(value), partition)
