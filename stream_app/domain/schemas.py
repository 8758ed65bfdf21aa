"""JSON Schemas of every event and record, generated from the structs that implement them.

``schemas/*.schema.json`` are these, written by ``stream-app schemas``; a unit test keeps
the committed files equal to the generated ones. Input money fields get ``minimum: 0``
in the published contract, although the decoder checks the sign itself so that a
negative amount gets a dead-letter reason of its own.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .events import Click, Conversion, Review, Spend
from .records import (
    BidSignal,
    CampaignAlert,
    CampaignDelta,
    CampaignLatest,
    ClickScored,
    DeadLetter,
    ModelQualityRecord,
    ReviewTopics,
    ScoredReview,
    UnattributedConversion,
    WindowRoi,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"

SCHEMA_TYPES: dict[str, type[msgspec.Struct]] = {
    "click": Click,
    "conversion": Conversion,
    "spend": Spend,
    "review": Review,
    "review-scored": ScoredReview,
    "campaign-roi": WindowRoi,
    "campaign-roi-latest": CampaignLatest,
    "bid-signal": BidSignal,
    "campaign-alert": CampaignAlert,
    "review-topics": ReviewTopics,
    "campaign-delta": CampaignDelta,
    "click-scored": ClickScored,
    "model-quality": ModelQualityRecord,
    "conversion-unattributed": UnattributedConversion,
    "dead-letter": DeadLetter,
}
MONEY_FIELDS = {"conversion": "revenue", "spend": "amount"}


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) published for ``name``."""
    struct = SCHEMA_TYPES[name]
    schema: dict[str, Any] = msgspec.json.schema(struct)
    root = schema["$defs"][struct.__name__]
    if name in MONEY_FIELDS:
        root["properties"][MONEY_FIELDS[name]]["minimum"] = 0
    return {"$schema": DRAFT, "$id": f"{name}.schema.json", "title": name, **schema}
