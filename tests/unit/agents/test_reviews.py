"""The review agent without a broker: screening outcomes, and a model failure that must not
lose or crash anything (a text that breaks the model is dead-lettered, the rest scored)."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import msgspec
import orjson

from stream_app.agents.reviews import ReviewAgent
from stream_app.domain.records import DeadLetter, ScoredReview
from stream_app.engine.stage import Outbox, Record
from stream_app.sentiment import SentimentScore
from stream_app.settings import Settings

TOPIC = "reviews"


class Scorer:
    """Scores by keyword; a text containing 'boom' makes the model fail, as a batch too."""

    version = "stub-1"

    def predict_many(self, texts: Sequence[str]) -> list[SentimentScore]:
        if any("boom" in t for t in texts):
            raise RuntimeError("onnxruntime failed")
        return [self.predict_one(t) for t in texts]

    def predict_one(self, text: str) -> SentimentScore:
        if "boom" in text:
            raise RuntimeError("onnxruntime failed")
        good = "good" in text
        return SentimentScore("positive" if good else "negative", 0.8 if good else -0.6, False)


def record(offset: int, text: str, key: bytes = b"whatever") -> Record:
    value = {"schema_version": 1, "event_id": f"r{offset}", "campaign_id": "c1", "text": text}
    value["ts"] = 1.0
    return Record(TOPIC, 0, offset, 0, key, orjson.dumps(value))


async def test_a_text_that_breaks_the_model_is_dead_lettered_and_the_rest_scored() -> None:
    agent = ReviewAgent(Settings(metrics_port=0), scorer=Scorer())
    out = Outbox()
    texts = ["good stuff here", "this is bad", "boom goes the model", "", "\x00\x01\x02\x03"]
    await agent.process(agent.new_state(0), [record(i, t) for i, t in enumerate(texts)], out)

    scored = {
        r.event_id: r
        for topic, key, value, _ in out.messages
        if topic == "reviews-scored"
        for r in [msgspec.json.decode(value, type=ScoredReview)]
    }
    assert {k: (v.label, v.unscored_reason) for k, v in scored.items()} == {
        "r0": ("positive", None),
        "r1": ("negative", None),
        "r3": (None, "empty_text"),
    }
    assert all(key == b"c1" for topic, key, _, _ in out.messages if topic == "reviews-scored")
    dead = [
        msgspec.json.decode(value, type=DeadLetter)
        for topic, _, value, _ in out.messages
        if topic == "dead-letter"
    ]
    assert sorted((d.reason, d.offset) for d in dead) == [
        ("processing_error", 2),
        ("unscorable_text", 4),
    ]
    assert orjson.loads(base64.b64decode(dead[0].value_b64))["event_id"] in {"r2", "r4"}
    assert out.outcomes[(TOPIC, "accepted")] == 3
    assert out.outcomes[(TOPIC, "dead_letter")] == 2
    assert out.reviews_scored == {"positive": 1, "negative": 1}
    assert out.reviews_unscored == {"empty_text": 1}
