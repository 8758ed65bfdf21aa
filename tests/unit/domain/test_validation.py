"""Every way an input can be bad has its own dead-letter reason."""

from __future__ import annotations

import orjson
import pytest

from stream_app.domain.events import Conversion, Spend
from stream_app.domain.money import CurrencyTable
from stream_app.domain.validation import EventDecoder, Reason, Rejection, Validated

TABLE = CurrencyTable({"USD": 1.0, "EUR": 1.1}, "USD")
SPEND = {
    "schema_version": 1,
    "event_id": "e1",
    "campaign_id": "c1",
    "channel": "search",
    "amount": 12.5,
    "currency": "EUR",
    "impressions": 1000,
    "ts": 1_767_225_600.0,
}


def decode_spend(raw: bytes) -> Validated | Rejection:
    return EventDecoder("spend", TABLE)(raw)


def test_valid_spend_is_converted_to_reporting_currency() -> None:
    result = decode_spend(orjson.dumps(SPEND))
    assert isinstance(result, Validated)
    assert isinstance(result.event, Spend)
    assert result.money == pytest.approx(12.5 * 1.1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", Reason.BAD_JSON),
        (b"\xff\xfe\x00garbage", Reason.BAD_JSON),
        (b"", Reason.BAD_JSON),
        (b"[1, 2]", Reason.SCHEMA_VIOLATION),
        (orjson.dumps({**SPEND, "schema_version": 2}), Reason.UNSUPPORTED_SCHEMA_VERSION),
        (orjson.dumps({**SPEND, "impressions": "many"}), Reason.SCHEMA_VIOLATION),
        (
            orjson.dumps({k: v for k, v in SPEND.items() if k != "campaign_id"}),
            Reason.SCHEMA_VIOLATION,
        ),
        (orjson.dumps({**SPEND, "amount": -3}), Reason.NEGATIVE_AMOUNT),
        (orjson.dumps(SPEND).replace(b"12.5", b"NaN"), Reason.NON_FINITE_AMOUNT),
        (orjson.dumps(SPEND).replace(b"12.5", b"Infinity"), Reason.NON_FINITE_AMOUNT),
        (orjson.dumps(SPEND).replace(b"12.5", b"1e999"), Reason.NON_FINITE_AMOUNT),
        (orjson.dumps({**SPEND, "currency": "XYZ"}), Reason.UNKNOWN_CURRENCY),
        (orjson.dumps({**SPEND, "currency": "usd"}), Reason.SCHEMA_VIOLATION),
    ],
)
def test_each_kind_of_bad_input_has_its_reason(raw: bytes, reason: Reason) -> None:
    result = decode_spend(raw)
    assert isinstance(result, Rejection)
    assert result.reason is reason


def test_rejection_details_never_quote_the_payload() -> None:
    secret = "user-42-very-private"
    raw = orjson.dumps({**SPEND, "campaign_id": 7, "channel": secret})
    result = decode_spend(raw)
    assert isinstance(result, Rejection)
    assert secret not in result.detail


def test_conversion_revenue_is_checked_like_spend() -> None:
    decode = EventDecoder("conversion", TABLE)
    ok = decode(
        b'{"schema_version":1,"event_id":"v","click_id":"k","revenue":10,"currency":"USD","ts":1}'
    )
    assert isinstance(ok, Validated)
    assert isinstance(ok.event, Conversion)
    bad = decode(
        b'{"schema_version":1,"event_id":"v","click_id":"k","revenue":-1,"currency":"USD","ts":1}'
    )
    assert isinstance(bad, Rejection)
    assert bad.reason is Reason.NEGATIVE_AMOUNT
