"""Input events as typed structs, decoded straight from JSON bytes by msgspec.

The JSON Schemas in ``schemas/`` are the published contract; these structs are its fast
implementation (``tests/unit/domain/test_schema_parity.py`` checks they agree). Event time
``ts`` is Unix epoch seconds (UTC) everywhere. Money fields are not range-constrained here
on purpose: negative and non-finite amounts are rejected by :mod:`.validation` with reasons
of their own instead of a generic schema violation.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Ts = Annotated[float, msgspec.Meta(ge=0)]
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
    revenue: float
    currency: Currency
    ts: Ts


class Spend(msgspec.Struct, frozen=True):
    """What a campaign paid a channel for ``impressions`` impressions."""

    schema_version: Literal[1]
    event_id: Id
    campaign_id: Id
    channel: Label
    amount: float
    currency: Currency
    impressions: Annotated[int, msgspec.Meta(ge=0)]
    ts: Ts


class Review(msgspec.Struct, frozen=True):
    """A free-text review of a campaign's product, scored for sentiment downstream.

    ``text`` has no length limit: a long review is cut to its head and tail for the model,
    never rejected (the broker's message size limit bounds it anyway).
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
