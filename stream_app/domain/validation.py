"""Bytes in, a valid event or a reason out: the edge where bad input becomes a dead letter.

The fast path is one msgspec decode into a typed struct. Only failures take the slow path,
which re-parses leniently to tell the reasons apart (bad JSON, an unsupported schema
version, a schema violation, a non-finite or negative amount, an unknown currency).
Reasons are a closed set so they can label metrics.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import NamedTuple

import msgspec

from .events import EVENT_TYPES, SCHEMA_VERSION, Conversion, Event, EventKind, Spend
from .money import CurrencyTable


class Reason(StrEnum):
    """Why an input record went to the dead-letter topic."""

    BAD_JSON = "bad_json"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    SCHEMA_VIOLATION = "schema_violation"
    NON_FINITE_AMOUNT = "non_finite_amount"
    NEGATIVE_AMOUNT = "negative_amount"
    UNKNOWN_CURRENCY = "unknown_currency"
    UNSCORABLE_TEXT = "unscorable_text"
    PROCESSING_ERROR = "processing_error"


class Rejection(NamedTuple):
    reason: Reason
    detail: str


class Validated(NamedTuple):
    """A valid event with its money already in the reporting currency (0.0 if none)."""

    event: Event
    money: float


class EventDecoder:
    """Decodes and validates the events of one kind against a currency table.

    Examples
    --------
    >>> table = CurrencyTable({"USD": 1.0, "EUR": 2.0}, reporting="USD")
    >>> decode = EventDecoder("spend", table)
    >>> ok = decode(b'{"schema_version": 1, "event_id": "e1", "campaign_id": "c1",'
    ...             b' "channel": "search", "amount": 5, "currency": "EUR",'
    ...             b' "impressions": 100, "ts": 1700000000}')
    >>> ok.money
    10.0
    >>> decode(b'{"schema_version": 1, "amount": -1}').reason
    <Reason.SCHEMA_VIOLATION: 'schema_violation'>
    >>> decode(b"{not json").reason
    <Reason.BAD_JSON: 'bad_json'>
    """

    def __init__(self, kind: EventKind, currencies: CurrencyTable) -> None:
        self.kind = kind
        self._type = EVENT_TYPES[kind]
        self._decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(self._type)
        self._currencies = currencies
        self._has_money = kind in ("spend", "conversion")

    def __call__(self, data: bytes) -> Validated | Rejection:
        try:
            event = self._decoder.decode(data)
        except msgspec.DecodeError:
            return self._explain(data)
        if self._has_money:
            return self._check_money(event)
        return Validated(event, 0.0)

    def _check_money(self, event: Event) -> Validated | Rejection:
        if isinstance(event, Spend):
            amount, currency = event.amount, event.currency
        elif isinstance(event, Conversion):
            amount, currency = event.revenue, event.currency
        else:
            return Validated(event, 0.0)
        if not math.isfinite(amount):
            return Rejection(Reason.NON_FINITE_AMOUNT, f"{self.kind} amount is not finite")
        if amount < 0:
            return Rejection(Reason.NEGATIVE_AMOUNT, f"{self.kind} amount is negative")
        if currency not in self._currencies:
            return Rejection(Reason.UNKNOWN_CURRENCY, f"no rate for currency {currency}")
        return Validated(event, self._currencies.to_reporting(amount, currency))

    def _explain(self, data: bytes) -> Validated | Rejection:
        """Slow path: find out why the strict decode failed."""
        try:
            # The stdlib parser accepts NaN/Infinity and huge exponents (as inf), so that
            # non-finite money gets its own reason rather than "bad JSON".
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:
            return Rejection(Reason.BAD_JSON, type(exc).__name__)
        if isinstance(obj, dict):
            version = obj.get("schema_version")
            if version != SCHEMA_VERSION and isinstance(version, int):
                return Rejection(
                    Reason.UNSUPPORTED_SCHEMA_VERSION, f"schema_version {version} is not supported"
                )
        try:
            event = msgspec.convert(obj, self._type)
        except msgspec.ValidationError as exc:
            return Rejection(Reason.SCHEMA_VIOLATION, str(exc))
        return self._check_money(event)
