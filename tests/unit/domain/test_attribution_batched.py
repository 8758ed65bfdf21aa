"""Clicks scored in batches (issue 13) get what scoring each on arrival gave them.

The reference scores every click as it arrives (:meth:`Attribution.score_pending` after each
``on_click``, the old behaviour); the batched run leaves them to the next read or model
change. Same generated traffic (clicks, conversions before and after their clicks,
duplicates), same commits: the same scores, deltas, labels, changelog and model.
"""

from __future__ import annotations

from typing import Any

from stream_app.domain.attribution import Attribution, AttributionConfig, Scored
from stream_app.domain.events import Click, Conversion
from stream_app.domain.money import CurrencyTable
from stream_app.domain.validation import EventDecoder, Validated
from stream_app.generator import Scenario, TrafficGenerator
from stream_app.learning import ConversionModel

CONFIG = AttributionConfig(
    window_size_seconds=60,
    attribution_window_seconds=300.0,
    conversion_grace_seconds=30.0,
    dedup_horizon_seconds=3600.0,
    currency="USD",
    label_lateness_seconds=10.0,
    allowed_lateness_seconds=10.0,
)


class OneByOne(Attribution):
    def on_click(self, click: Click, scored: Scored | None = None) -> Any:
        outcome = super().on_click(click, scored)
        self.score_pending()
        return outcome


def _events() -> list[list[Validated]]:
    """Batches of one topic each, in the generator's order (as a consumer reads them)."""
    scenario = Scenario(
        seed=11,
        n_campaigns=6,
        duration_seconds=1500.0,
        clicks_per_second=20.0,
        reviews_per_minute=0.0,
        duplicate_share=0.02,
        late_share=0.05,
        bad_share=0.0,
        attribution_window_seconds=300.0,
    )
    currencies = CurrencyTable({"USD": 1.0, "EUR": 1.1, "GBP": 1.3}, "USD")
    decoders = {k: EventDecoder(k, currencies) for k in ("click", "conversion")}
    batches: list[list[Validated]] = []
    kind = None
    for record in TrafficGenerator(scenario, currencies=currencies):
        if record.topic_kind not in decoders:
            continue
        valid = decoders[record.topic_kind](record.value)
        assert isinstance(valid, Validated)
        if record.topic_kind != kind or len(batches[-1]) >= 250:
            batches.append([])
            kind = record.topic_kind
        batches[-1].append(valid)
    # conversions read ahead of their clicks too: swap some neighbouring batches
    for i in range(0, len(batches) - 1, 7):
        batches[i], batches[i + 1] = batches[i + 1], batches[i]
    return batches


def _run(a: Attribution, batches: list[list[Validated]]) -> list[Any]:
    seen: list[Any] = []
    for n, batch in enumerate(batches):
        for valid in batch:
            event = valid.event
            if isinstance(event, Click):
                seen.append(a.on_click(event))
            else:
                assert isinstance(event, Conversion)
                seen.append(a.on_conversion(event, valid.money))
        if n % 5 == 4:  # a commit
            a.expire_pending()
            a.expire_labels()
            quality = a.learn()
            seen.append(quality)
            seen.append([(c.click_id, s) for c, s in a.drain_scored_clicks()])
            seen.append(sorted(a.drain_deltas(), key=repr))
            seen.append(a.drain_unattributed())
            seen.append([(k, v) for k, v in a.changes() if not k.startswith("model|")])
    return seen


def test_batched_scoring_equals_scoring_each_click_on_arrival() -> None:
    batches = _events()
    reference = OneByOne(CONFIG, ConversionModel(), 0)
    batched = Attribution(CONFIG, ConversionModel(), 0)
    want, got = _run(reference, batches), _run(batched, batches)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == w
    assert reference.model is not None
    assert batched.model is not None
    assert batched.model.samples_seen == reference.model.samples_seen > 1000
    assert batched.model._classifier.weights == reference.model._classifier.weights
    assert batched.model.quality() == reference.model.quality()
    assert batched.open.keys() == reference.open.keys()
