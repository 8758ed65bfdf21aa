"""Agent over ``clicks`` + ``conversions`` (both keyed by click_id): attribution.

Emits per-batch sums per campaign window to ``campaign-deltas`` (keyed by campaign_id),
which repartitions the attributed stream onto the campaign-keyed aggregation agent.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ..domain.attribution import Attribution, AttributionConfig
from ..domain.events import Click, Conversion
from ..domain.money import CurrencyTable
from ..domain.outcomes import Outcome
from ..domain.validation import Validated
from ..engine.stage import Outbox
from ..settings import Settings
from .base import EdgeDecoder, Record

_encode = msgspec.json.Encoder().encode


class AttributionAgent:
    name = "attribution"
    stateful = True

    def __init__(self, settings: Settings) -> None:
        t = settings.topics
        self.topics = (t.clicks, t.conversions)
        self._deltas_topic = t.campaign_deltas
        self._unattributed_topic = t.conversions_unattributed
        self._config = AttributionConfig(
            window_size_seconds=settings.window_size_seconds,
            attribution_window_seconds=settings.attribution_window_seconds,
            conversion_grace_seconds=settings.conversion_grace_seconds,
            dedup_horizon_seconds=settings.dedup_horizon_seconds,
            currency=settings.reporting_currency,
        )
        currencies = CurrencyTable(settings.currency_rates, settings.reporting_currency)
        self._edge = EdgeDecoder(
            {t.clicks: "click", t.conversions: "conversion"},
            currencies,
            t.dead_letter,
            settings.worker_id,
        )

    def new_state(self) -> Attribution:
        return Attribution(self._config)

    def process(self, state: Attribution, records: Sequence[Record], out: Outbox) -> None:
        def handle(valid: Validated) -> Outcome:
            event = valid.event
            if isinstance(event, Click):
                return state.on_click(event)
            assert isinstance(event, Conversion)
            return state.on_conversion(event, valid.money)

        self._edge.process(records, out, handle)

    def flush(self, state: Attribution, out: Outbox, now: float) -> None:
        state.expire_pending()
        for delta in state.drain_deltas():
            out.send(self._deltas_topic, delta.campaign_id.encode(), _encode(delta))
        for conversion in state.drain_unattributed():
            out.send(self._unattributed_topic, conversion.click_id.encode(), _encode(conversion))
            out.unattributed[conversion.reason] += 1
