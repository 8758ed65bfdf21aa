"""Fuzzing the input path: bytes → decode and validate → domain → state → changelog → restore.

Whatever arrives on an input topic, the agent must not raise; every record is accounted
for (an outcome, or a dead letter with its original bytes and a documented reason); every
output record matches its published schema; and every state change serialises as the
engine writes it (orjson) and restores into an equal state. Hypothesis runs
``FUZZ_EXAMPLES`` examples per property (200 by default, for CI); the long run is
``FUZZ_EXAMPLES=20000 .venv/bin/pytest tests/unit/agents/test_input_fuzz.py
--hypothesis-show-statistics``.

The named tests below pin the inputs that crashed the worker in issue 11 (each one made it
exit, again on every restart).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.agents import AggregationAgent, AttributionAgent, ReviewAgent
from stream_app.agents.reviews import TextScorer
from stream_app.domain.records import DeadLetter
from stream_app.domain.schemas import json_schema
from stream_app.domain.validation import MAX_EVENT_BYTES, Reason
from stream_app.engine.stage import Outbox, Record
from stream_app.sentiment import SentimentScore
from stream_app.settings import Settings

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SETTINGS = Settings(metrics_port=0)
T = SETTINGS.topics
SEMANTICS = (Path(__file__).parents[3] / "docs" / "semantics.md").read_text()
OUTPUT_SCHEMAS = {
    T.campaign_roi: "campaign-roi",
    T.campaign_roi_latest: "campaign-roi-latest",
    T.campaign_deltas: "campaign-delta",
    T.clicks_scored: "click-scored",
    T.model_quality: "model-quality",
    T.conversions_unattributed: "conversion-unattributed",
    T.dead_letter: "dead-letter",
    T.reviews_scored: "review-scored",
    T.review_topics: "review-topics",
    T.campaign_alerts: "campaign-alert",
    T.campaign_alerts_latest: "campaign-alert",
}
VALIDATORS = {
    topic: jsonschema.Draft202012Validator(json_schema(name))
    for topic, name in OUTPUT_SCHEMAS.items()
}
KIND = {T.clicks: "click", T.conversions: "conversion", T.spend: "spend", T.reviews: "review"}


class KeywordScorer:
    """Stands in for the ONNX model: the review path's decoding is what is fuzzed here."""

    version = "stub-1"

    def predict_many(self, texts: Sequence[str]) -> list[SentimentScore]:
        return [self.predict_one(t) for t in texts]

    def predict_one(self, text: str) -> SentimentScore:
        good = "good" in text
        return SentimentScore("positive" if good else "negative", 0.5 if good else -0.5, False)


def records(topic: str, values: Sequence[bytes]) -> list[Record]:
    return [Record(topic, 0, i, 0, b"k", v) for i, v in enumerate(values)]


# -- strategies ----------------------------------------------------------------------------
EDGE_TEXT = ["\ud800", "a\udc80b", "\x00", "😀", "x" * 129, "", " ", "\u202e", "\ufeff"]
texts = st.one_of(st.text(max_size=12), st.sampled_from(EDGE_TEXT))
EDGE_NUMBERS: list[Any] = [
    1e20,
    1e308,
    -1e308,
    1e-320,
    -0.0,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    math.inf,
    -math.inf,
    math.nan,
    4_102_444_801,
    1e12,
    1e12 + 1,
    1_000_000_001,
]
numbers = st.one_of(
    st.floats(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(EDGE_NUMBERS),
    st.floats(min_value=1.7e9, max_value=1.8e9),
)
fields = st.one_of(texts, numbers, st.none(), st.booleans())
FIELDS = {
    "click": ["event_id", "click_id", "campaign_id", "channel", "user_id", "ts", "device"],
    "conversion": ["event_id", "click_id", "revenue", "currency", "ts"],
    "spend": ["event_id", "campaign_id", "channel", "amount", "currency", "impressions", "ts"],
    "review": ["event_id", "campaign_id", "text", "ts", "rating"],
}
VALID = {
    "event_id": "e1",
    "click_id": "k1",
    "campaign_id": "c1",
    "channel": "search",
    "user_id": "u1",
    "ts": 1_767_225_600.0,
    "device": "mobile",
    "revenue": 12.5,
    "currency": "EUR",
    "amount": 3.25,
    "impressions": 1000,
    "text": "good product",
    "rating": 4,
}


@st.composite
def documents(draw: st.DrawFn, kind: str) -> bytes:
    """A JSON event of ``kind``: mostly valid fields, some replaced by edge values."""
    doc: dict[str, Any] = {"schema_version": draw(st.sampled_from([1, 1, 1, 2, "1", None]))}
    for name in FIELDS[kind]:
        doc[name] = draw(fields) if draw(st.integers(0, 3)) == 0 else VALID[name]
    if draw(st.booleans()):
        doc["event_id"] = f"e{draw(st.integers(0, 3))}"  # duplicates
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    depth = draw(st.sampled_from([0, 0, 0, 2, 40, 5000]))
    if depth:  # an extra field nested `depth` levels deep
        text = text[:-1] + ', "extra": ' + "[" * depth + "]" * depth + "}"
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "utf-32"]))
    return text.encode(encoding, "surrogatepass")


def inputs(kind: str) -> st.SearchStrategy[list[bytes]]:
    return st.lists(st.one_of(documents(kind), st.binary(max_size=64)), min_size=1, max_size=6)


# -- the property --------------------------------------------------------------------------
def check_outputs(topic: str, values: Sequence[bytes], out: Outbox) -> None:
    """Every record accounted for; dead letters keep their bytes and a documented reason."""
    counted = sum(n for (t, _), n in out.outcomes.items() if t == topic)
    assert counted == len(values)
    dead = [v for t, _, v, _ in out.messages if t == T.dead_letter]
    assert len(dead) == sum(out.dead_letters.values())
    for message in dead:
        letter = msgspec.json.decode(message, type=DeadLetter)
        assert letter.reason in {r.value for r in Reason}
        assert f"`{letter.reason}`" in SEMANTICS, f"reason {letter.reason} is not documented"
        kept, original = base64.b64decode(letter.value_b64), values[letter.offset]
        if letter.truncated:  # too large to keep whole: a prefix, and what identifies the rest
            assert original.startswith(kept)
            assert letter.original_size == len(original)
            assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
        else:
            assert kept == original
    for t, _, value, _ in out.messages:
        VALIDATORS[t].validate(orjson.loads(value))


def round_trip(agent: Any, state: Any) -> Any:
    """The state's changelog as the engine writes and compacts it, restored into a new one."""
    log: dict[str, bytes | None] = {}
    for key, value in state.changes():
        log[key] = None if value is None else orjson.dumps(value)
    restored = agent.new_state(0)
    for key, value in log.items():
        if value is not None:
            restored.restore(key, orjson.loads(value))
    return restored


@FUZZ
@given(
    st.sampled_from([T.clicks, T.conversions]).flatmap(
        lambda t: st.tuples(st.just(t), inputs(KIND[t]))
    )
)
def test_attribution_survives_any_input_and_round_trips_its_state(
    case: tuple[str, list[bytes]],
) -> None:
    topic, values = case
    agent = AttributionAgent(SETTINGS)
    state = agent.new_state(0)
    out = Outbox()
    agent.process(state, records(topic, values), out)
    agent.flush(state, out, 1_767_225_700.0)
    check_outputs(topic, values, out)
    restored = round_trip(agent, state)
    assert restored.clicks == state.clicks
    assert restored.pending == state.pending
    assert set(restored.open) == set(state.open)


@FUZZ
@given(inputs("spend"))
def test_aggregation_survives_any_spend_and_round_trips_its_state(values: list[bytes]) -> None:
    agent = AggregationAgent(SETTINGS)
    state = agent.new_state(0)
    out = Outbox()
    agent.process(state, records(T.spend, values), out)
    agent.flush(state, out, 1_767_225_700.0)
    check_outputs(T.spend, values, out)
    restored = round_trip(agent, state)
    assert restored.campaigns == state.campaigns
    assert restored.windows.keys() == state.windows.keys()
    for key, window in state.windows.items():
        assert restored.windows[key].totals == window.totals


@FUZZ
@given(inputs("review"))
async def test_review_scoring_survives_any_review(values: list[bytes]) -> None:
    scorer: TextScorer = KeywordScorer()
    agent = ReviewAgent(SETTINGS, scorer=scorer)
    out = Outbox()
    await agent.process(agent.new_state(0), records(T.reviews, values), out)
    check_outputs(T.reviews, values, out)


def test_every_reason_is_documented() -> None:
    documented = set(re.findall(r"`([a-z_]+)`", SEMANTICS.split("## Bad input")[1]))
    assert {r.value for r in Reason} <= documented


# -- the inputs of issue 11, by name -------------------------------------------------------
def reason_of(topic: str, value: bytes) -> str | None:
    """The dead-letter reason of one record, or None when it was accepted."""
    out = Outbox()
    if topic == T.reviews:
        import asyncio

        agent: Any = ReviewAgent(SETTINGS, scorer=KeywordScorer())
        asyncio.run(agent.process(agent.new_state(0), records(topic, [value]), out))
    else:
        agent = AttributionAgent(SETTINGS) if topic != T.spend else AggregationAgent(SETTINGS)
        state = agent.new_state(0)
        agent.process(state, records(topic, [value]), out)
        agent.flush(state, out, 1_767_225_700.0)
        round_trip(agent, state)
    check_outputs(topic, [value], out)
    letters = [
        msgspec.json.decode(v, type=DeadLetter) for t, _, v, _ in out.messages if t == T.dead_letter
    ]
    return letters[0].reason if letters else None


def event(kind: str, **changes: Any) -> dict[str, Any]:
    doc = {"schema_version": 1, **{name: VALID[name] for name in FIELDS[kind]}}
    return {**doc, **changes}


TOPIC_OF = {kind: topic for topic, kind in KIND.items()}


@pytest.mark.parametrize("kind", ["click", "conversion", "spend"])
@pytest.mark.parametrize("form", ["raw bytes ED A0 80", "escape \\ud800"])
def test_issue_11_lone_surrogate_is_bad_json(kind: str, form: str) -> None:
    field = "click_id" if kind == "conversion" else "campaign_id"
    text = json.dumps(event(kind, **{field: "a\ud800"}), ensure_ascii=form.startswith("escape"))
    assert reason_of(TOPIC_OF[kind], text.encode("utf-8", "surrogatepass")) == "bad_json"


@pytest.mark.parametrize("field", ["event_id", "text"])
def test_issue_11_lone_surrogate_in_a_review_is_bad_json(field: str) -> None:
    value = json.dumps(event("review", **{field: "r\udc80"})).encode()
    assert reason_of(T.reviews, value) == "bad_json"


@pytest.mark.parametrize(
    ("kind", "changes", "reason"),
    [
        ("spend", {"impressions": 10**20}, "schema_violation"),
        ("spend", {"impressions": 1e20}, "schema_violation"),
        ("spend", {"amount": 1e308, "currency": "EUR"}, "schema_violation"),
        ("spend", {"amount": 9e11, "currency": "JPY"}, None),
        ("conversion", {"revenue": 1e300}, "schema_violation"),
        ("spend", {"ts": math.inf}, "schema_violation"),
        ("click", {"ts": math.inf}, "schema_violation"),
        ("spend", {"amount": math.inf}, "non_finite_amount"),
        ("spend", {"amount": math.nan}, "non_finite_amount"),
    ],
)
def test_issue_11_numbers_are_bounded_by_what_state_holds(
    kind: str, changes: dict[str, Any], reason: str | None
) -> None:
    assert reason_of(TOPIC_OF[kind], json.dumps(event(kind, **changes)).encode()) == reason


def test_issue_11_timestamp_1e400_is_a_schema_violation() -> None:
    value = json.dumps(event("spend")).replace("1767225600.0", "1e400").encode()
    assert reason_of(T.spend, value) == "schema_violation"


def test_issue_11_deep_nesting_is_bad_json() -> None:
    doc = json.dumps(event("click"))[:-1] + ', "extra": ' + "[" * 5000 + "]" * 5000 + "}"
    assert reason_of(T.clicks, doc.encode()) == "bad_json"


def test_issue_11_utf16_is_bad_json() -> None:
    assert reason_of(T.clicks, json.dumps(event("click")).encode("utf-16")) == "bad_json"


def test_a_record_over_the_size_limit_is_too_large_and_one_under_is_read() -> None:
    doc = event("review")
    doc["text"] = "good " * (MAX_EVENT_BYTES // 5)
    assert reason_of(T.reviews, json.dumps(doc).encode()) == "too_large"
    doc["text"] = "good " * (MAX_EVENT_BYTES // 5 - 100)
    assert reason_of(T.reviews, json.dumps(doc).encode()) is None
