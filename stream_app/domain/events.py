"""Input events as typed structs, decoded straight from JSON bytes by msgspec.

The JSON Schemas in ``schemas/`` are the published contract; these structs are its fast
implementation (``tests/unit/domain/test_schema_parity.py`` checks they agree). Event time
``ts`` is Unix epoch seconds (UTC) everywhere.

Every number is bounded to what state and outputs can hold: a timestamp before 2100, at
most ``MAX_COUNT`` impressions and ``MAX_MONEY`` per event, so that sums stay finite and
64-bit for longer than any campaign runs. Money has no lower bound here on purpose:
negative and non-finite amounts are rejected by :mod:`.validation` with reasons of their
own instead of a generic schema violation.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1

MAX_TS = 4_102_444_800.0
"""2100-01-01T00:00:00Z: no event happens later; ``Infinity`` and ``1e400`` are not times."""
MAX_MONEY = 1e12
"""Most money one event may carry, in its own currency and in the reporting currency."""
MAX_COUNT = 1_000_000_000
"""Most impressions one spend event may report; 9e9 such events still fit in 64 bits."""

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Ts = Annotated[float, msgspec.Meta(ge=0, le=MAX_TS)]
Money = Annotated[float, msgspec.Meta(le=MAX_MONEY)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
Label = Annotated[str, msgspec.Meta(max_length=64)]


class Click(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """A user clicked an ad; ``click_id`` joins it to later conversions."""

    schema_version: Literal[1]
    event_id: Id
    click_id: Id
    campaign_id: Id
    channel: Label
    user_id: Id
    ts: Ts
    device: Label = "unknown"
    geo: Label = "unknown"
    placement: Label = "unknown"
    creative: Label = "unknown"


class Conversion(msgspec.Struct, frozen=True):
    """A purchase postback; arrives minutes to days after its click, maybe before it."""

    schema_version: Literal[1]
    event_id: Id
    click_id: Id
    revenue: Money
    currency: Currency
    ts: Ts


class Spend(msgspec.Struct, frozen=True):
    """What a campaign paid a channel for ``impressions`` impressions."""

    schema_version: Literal[1]
    event_id: Id
    campaign_id: Id
    channel: Label
    amount: Money
    currency: Currency
    impressions: Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
    ts: Ts


class Review(msgspec.Struct, frozen=True):
    """A free-text review of a campaign's product, scored for sentiment downstream.

    ``text`` has no length limit of its own: a long review is cut to its head and tail for
    the model, never rejected (the record size limit, ``MAX_EVENT_BYTES``, bounds it).
    """

    schema_version: Literal[1]
    event_id: Id
    campaign_id: Id
    text: str
    ts: Ts
    rating: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None


Event = Click | Conversion | Spend | Review
EventKind = Literal["click", "conversion", "spend", "review"]

EVENT_TYPES: dict[EventKind, type[Event]] = {
    "click": Click,
    "conversion": Conversion,
    "spend": Spend,
    "review": Review,
}
