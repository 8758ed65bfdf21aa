"""Bytes in, a valid event or a reason out: the edge where bad input becomes a dead letter.

The fast path is one msgspec decode into a typed struct; msgspec itself refuses invalid
UTF-8 and lone surrogate escapes. Only failures take the slow path, which re-parses to tell
the reasons apart (bad JSON, an unsupported schema version, a schema violation, a
non-finite or negative amount, an unknown currency). The slow path is as strict as the fast
one about text (UTF-8 only, no surrogates), so it never accepts what the fast path refused
for being unreadable. Size and nesting depth are bounded before either parser runs.
Reasons are a closed set so they can label metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple

import msgspec

from .events import EVENT_TYPES, MAX_MONEY, SCHEMA_VERSION, Conversion, Event, EventKind, Spend
from .money import CurrencyTable

MAX_EVENT_BYTES = 1_048_576
"""Largest input record decoded (Kafka's default ``message.max.bytes`` is about this)."""
MAX_DEPTH = 32
"""Deepest nesting of objects and arrays in an input record (events are 1 or 2 deep)."""


class Reason(StrEnum):
    """Why an input record went to the dead-letter topic."""

    BAD_JSON = "bad_json"
    TOO_LARGE = "too_large"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    SCHEMA_VIOLATION = "schema_violation"
    NON_FINITE_AMOUNT = "non_finite_amount"
    NEGATIVE_AMOUNT = "negative_amount"
    UNKNOWN_CURRENCY = "unknown_currency"
    UNSCORABLE_TEXT = "unscorable_text"
    PROCESSING_ERROR = "processing_error"
    POISON_PILL = "poison_pill"
    """The worker died processing it before (``stream_app.engine.poison``)."""


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
    >>> decode(b'{"campaign_id": "\\\\ud800"}').detail
    'lone surrogate in a string: not Unicode text'
    """

    def __init__(self, kind: EventKind, currencies: CurrencyTable) -> None:
        self.kind = kind
        self._type = EVENT_TYPES[kind]
        self._decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(self._type)
        self._currencies = currencies
        self.has_money = kind in ("spend", "conversion")

    def __call__(self, data: bytes) -> Validated | Rejection:
        if len(data) > MAX_EVENT_BYTES:
            return Rejection(Reason.TOO_LARGE, f"{len(data)} bytes > {MAX_EVENT_BYTES}")
        if data.count(b"{") + data.count(b"[") > MAX_DEPTH and nesting_depth(data) > MAX_DEPTH:
            return Rejection(Reason.BAD_JSON, f"nested deeper than {MAX_DEPTH} levels")
        try:
            event = self._decoder.decode(data)
        except (msgspec.DecodeError, RecursionError):
            return self._explain(data)
        if self.has_money:
            return self._check_money(event)
        return Validated(event, 0.0)

    def decode_all(self, values: Sequence[bytes]) -> list[Event] | None:
        """Every value's event in one msgspec call; None when any value needs :meth:`__call__`
        (invalid, blank, holding a newline, too large or too deep), which then gives each
        value exactly the result it would have had alone.

        The values are decoded as JSON lines, joined by newlines: one event per value only
        when no value holds a newline or is blank (decode_lines skips blank lines), hence
        the two counts. Each decoded value is an object, with a ``{`` of its own, so when
        the whole batch holds at most ``MAX_DEPTH + n - 1`` brackets no value holds more
        than ``MAX_DEPTH``: the per-value depth bound could not have refused any of them.
        Money is not checked here (:meth:`check_money`).

        >>> decode = EventDecoder("click", CurrencyTable({"USD": 1.0}, reporting="USD"))
        >>> click = (b'{"schema_version": 1, "event_id": "e%d", "click_id": "k%d",'
        ...          b' "campaign_id": "c1", "channel": "search", "user_id": "u1", "ts": 5}')
        >>> [e.event_id for e in decode.decode_all([click % (1, 1), click % (2, 2)])]
        ['e1', 'e2']
        >>> decode.decode_all([click % (1, 1), b"{not json"]) is None
        True
        """
        n = len(values)
        data = b"\n".join(values)
        if (
            data.count(b"\n") != n - 1
            or data.count(b"{") + data.count(b"[") > MAX_DEPTH + n - 1
            or max(map(len, values), default=0) > MAX_EVENT_BYTES
        ):
            return None
        try:
            events = self._decoder.decode_lines(data)
        except (msgspec.DecodeError, RecursionError):
            return None
        return events if len(events) == n else None

    def check_money(self, event: Event) -> Validated | Rejection:
        """A decoded event's money checked and converted (events without money pass)."""
        if self.has_money:
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
        money = self._currencies.to_reporting(amount, currency)
        if not money <= MAX_MONEY:
            return Rejection(
                Reason.SCHEMA_VIOLATION, f"{self.kind} amount exceeds {MAX_MONEY:g} when converted"
            )
        return Validated(event, money)

    def _explain(self, data: bytes) -> Validated | Rejection:
        """Slow path: find out why the strict decode failed."""
        try:
            # Strict UTF-8: bytes.decode refuses encoded surrogates (ED A0 80) and UTF-16,
            # which json.loads(bytes) would sniff and accept.
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection(Reason.BAD_JSON, f"not UTF-8 at byte {exc.start}")
        try:
            # The stdlib parser accepts NaN/Infinity and huge exponents (as inf), so that
            # non-finite money gets its own reason rather than "bad JSON".
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return Rejection(Reason.BAD_JSON, type(exc).__name__)
        if has_lone_surrogate(obj):
            return Rejection(Reason.BAD_JSON, "lone surrogate in a string: not Unicode text")
        if isinstance(obj, dict):
            version = obj.get("schema_version")
            if version != SCHEMA_VERSION and isinstance(version, int):
                return Rejection(
                    Reason.UNSUPPORTED_SCHEMA_VERSION, f"schema_version {version} is not supported"
                )
            amount = obj.get(_MONEY_FIELD.get(self.kind, ""))
            if isinstance(amount, float) and not math.isfinite(amount):
                return Rejection(Reason.NON_FINITE_AMOUNT, f"{self.kind} amount is not finite")
        try:
            event = msgspec.convert(obj, self._type)
        except msgspec.ValidationError as exc:
            return Rejection(Reason.SCHEMA_VIOLATION, str(exc))
        return self._check_money(event)


_MONEY_FIELD: dict[str, str] = {"spend": "amount", "conversion": "revenue"}


def has_lone_surrogate(obj: object) -> bool:
    """Whether any string (key or value) in a parsed JSON value holds a lone surrogate.

    >>> has_lone_surrogate({"a": ["ok", "\\udc80"]}), has_lone_surrogate({"😀": 1})
    (True, False)
    """
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(obj, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(has_lone_surrogate(v) for v in obj)
    return False


def nesting_depth(data: bytes) -> int:
    """Deepest nesting of ``{`` and ``[`` outside strings, without parsing.

    Only run when the bytes hold more brackets than ``MAX_DEPTH`` (a review's text may):
    a parser's recursion must never be what bounds the depth.

    >>> nesting_depth(b'{"a": [[1], {"b": "[[[["}]}')
    3
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x7D, 0x5D):  # } ]
            depth -= 1
    return deepest
