"""The Faust bidder's ``faust.Record`` models say what ``schemas/`` say, field for field."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import orjson
import pytest

from examples.faust_bidder.models import MODELS

SCHEMAS = Path(__file__).parents[3] / "schemas"


def definitions() -> dict[str, dict[str, Any]]:
    defs: dict[str, dict[str, Any]] = {}
    for name in ("bid-signal", "campaign-roi-latest"):
        defs |= orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())["$defs"]
    return defs


def nullable(prop: dict[str, Any]) -> bool:
    options = prop.get("anyOf", [prop])
    return any(o.get("type") == "null" for o in options)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_fields_match_the_schema(name: str) -> None:
    """Same names; nothing the model requires may be missing by the schema; null where the
    schema allows null (Faust gives optional fields a None default)."""
    schema = definitions()[name]
    options = MODELS[name]._options
    assert set(options.fields) == set(schema["properties"])
    required = {f for f in options.fields if f not in options.defaults}
    assert required <= set(schema.get("required", ()))
    for field, kind in options.fields.items():
        optional = type(None) in typing.get_args(kind)
        assert optional == nullable(schema["properties"][field]), field


def test_every_record_the_bidder_reads_has_a_model() -> None:
    assert set(definitions()) == set(MODELS)
