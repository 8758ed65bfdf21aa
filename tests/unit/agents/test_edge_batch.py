"""A batch decoded in one call (``EventDecoder.decode_all``) gives each record exactly what
decoding it alone gives: the same events to the domain, the same dead letters, the same
counts, whatever the batch mixes in (blank values, newlines, values that would merge or
split when joined, nesting that only the per-record bound refuses, bad money)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.agents.base import EdgeDecoder
from stream_app.domain.events import Event
from stream_app.domain.money import CurrencyTable
from stream_app.domain.outcomes import Outcome
from stream_app.domain.validation import MAX_DEPTH, EventDecoder
from stream_app.engine.stage import Outbox, Record

TABLE = CurrencyTable({"USD": 1.0, "EUR": 1.1}, "USD")
KINDS = {"clicks": "click", "conversions": "conversion"}


def click(i: int) -> dict[str, object]:
    return {
        "schema_version": 1,
        "event_id": f"e{i}",
        "click_id": f"k{i}",
        "campaign_id": "c1",
        "channel": "search",
        "user_id": "u1",
        "ts": 1_767_225_600.0 + i,
    }


def conversion(i: int, revenue: float) -> dict[str, object]:
    return {
        "schema_version": 1,
        "event_id": f"v{i}",
        "click_id": f"k{i}",
        "revenue": revenue,
        "currency": "EUR",
        "ts": 1_767_225_600.0 + i,
    }


def compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def tricky(i: int) -> list[bytes]:
    """Values that a join could misread: each must fail or pass exactly as it would alone."""
    nested: object = 1
    for _ in range(MAX_DEPTH + 1):
        nested = [nested]
    a, b = compact(click(i)), compact(click(i + 1))
    return [
        b"",
        b" ",
        json.dumps(click(i), indent=1).encode(),  # valid, with newlines inside
        a + b"," + b,  # two events in one record
        a + b"\n" + b,
        a[:-1] + b',"x":"}',  # opens a string that the next record's bytes would close
        b'{"y":"' + b"," + a[1:],
        compact({**click(i), "extra": nested}),  # valid, but deeper than the bound
        compact({**click(i), "note": "{[{["}),  # brackets in a string: valid
        b"{not json",
        b"\xff\xfe",
    ]


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    topic = draw(st.sampled_from(sorted(KINDS)))
    n = draw(st.integers(min_value=1, max_value=12))
    values: list[bytes] = []
    for i in range(n):
        if topic == "clicks":
            good = compact(click(i))
        else:
            revenue = draw(st.sampled_from([5.0, 0.0, -1.0, 1e300]))
            good = compact(conversion(i, revenue))
        values.append(draw(st.one_of(st.just(good), st.sampled_from(tricky(i)))))
    return topic, values


def run(topic: str, batch: list[list[bytes]]) -> tuple[list[tuple[Event, float]], Outbox]:
    edge = EdgeDecoder(KINDS, TABLE, "dead-letter", "w1")  # type: ignore[arg-type]
    seen: list[tuple[Event, float]] = []

    def handle(event: Event, money: float) -> Outcome:
        seen.append((event, money))
        return Outcome.ACCEPTED

    out = Outbox()
    offset = 0
    for values in batch:
        records = [Record(topic, 0, offset + i, 0, b"k", v) for i, v in enumerate(values)]
        offset += len(values)
        edge.process(records, out, handle)
    return seen, out


def letters(out: Outbox) -> list[tuple[str, bytes | None, dict[str, object]]]:
    """The dead letters sent, but for when they were written."""
    sent = [(topic, key, json.loads(value)) for topic, key, value, _ in out.messages]
    for _, _, letter in sent:
        letter.pop("failed_at")
    return sent


@settings(max_examples=300, deadline=None)
@given(batches())
def test_a_batch_is_decoded_as_each_record_alone(batch: tuple[str, list[bytes]]) -> None:
    topic, values = batch
    together, out_together = run(topic, [values])
    alone, out_alone = run(topic, [[v] for v in values])
    assert together == alone
    assert letters(out_together) == letters(out_alone)
    assert out_together.outcomes == out_alone.outcomes
    assert out_together.dead_letters == out_alone.dead_letters


def test_valid_records_take_the_one_call_path() -> None:
    """The fast path is taken for clean batches (else the test above proves nothing)."""
    decode = EventDecoder("click", TABLE)
    values = [compact(click(i)) for i in range(100)]
    events = decode.decode_all(values)
    assert events is not None
    assert [e.event_id for e in events] == [f"e{i}" for i in range(100)]
    for odd in tricky(7):
        if b'"note"' not in odd:  # brackets in a string are only text: fine in a batch
            assert decode.decode_all([*values, odd]) is None, odd
