"""The published JSON Schemas match the structs, and agree with the fast decoder."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest

from stream_app.domain.money import CurrencyTable
from stream_app.domain.schemas import SCHEMA_TYPES, json_schema
from stream_app.domain.validation import EventDecoder, Reason, Rejection, Validated
from stream_app.generator import Scenario, TrafficGenerator
from stream_app.settings import DEFAULT_RATES

SCHEMAS = Path(__file__).parents[3] / "schemas"


@pytest.mark.parametrize("name", sorted(SCHEMA_TYPES))
def test_committed_schema_is_the_generated_one(name: str) -> None:
    committed = orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())
    assert committed == json_schema(name), "run `stream-app schemas` and commit"


def test_schema_and_decoder_agree_on_generated_traffic() -> None:
    """Valid events pass both; schema-level bad events fail both."""
    currencies = CurrencyTable(DEFAULT_RATES, "USD")
    validators = {
        kind: jsonschema.Draft202012Validator(json_schema(kind))
        for kind in ("click", "conversion", "spend", "review")
    }
    decoders = {kind: EventDecoder(kind, currencies) for kind in validators}
    checked = 0
    for record in TrafficGenerator(Scenario(seed=3, duration_seconds=60, bad_share=0.2)):
        result = decoders[record.topic_kind](record.value)
        try:
            document = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            assert isinstance(result, Rejection)
            continue
        schema_ok = validators[record.topic_kind].is_valid(document)
        if isinstance(result, Validated):
            assert schema_ok, record.value
        elif result.reason in (Reason.SCHEMA_VIOLATION, Reason.NEGATIVE_AMOUNT):
            assert not schema_ok, record.value
        checked += 1
    assert checked > 1000
