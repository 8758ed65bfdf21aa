"""Agent over ``reviews`` (keyed by campaign_id): sentiment scoring in micro-batches.

It runs in its own consumer group and transaction (:func:`stream_app.runner.build_workers`)
and scores off the event loop, so a slow model never holds up clicks, conversions and
spend in the same process. Each poll takes at most ``sentiment_batch_size`` reviews (the
batch layer's equivalent of Faust's ``stream.take(n, within=…)``); the scored records,
dead letters and input offsets commit together, exactly once. Texts never reach a log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from ..domain.events import Review
from ..domain.journal import Change
from ..domain.money import CurrencyTable
from ..domain.outcomes import Outcome
from ..domain.records import ScoredReview
from ..domain.validation import Reason
from ..engine.stage import Outbox
from ..sentiment import CorruptText, Screened, SentimentScore, SentimentScorer, screen
from ..settings import Settings
from .base import EdgeDecoder, Record

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


class NoState:
    """Scoring keeps nothing between batches (de-duplication happens at aggregation)."""

    def changes(self) -> list[Change]:
        return []

    def restore(self, key: str, value: object) -> None:
        raise ValueError(f"the sentiment stage has no state; got {key!r}")


class TextScorer(Protocol):
    """What the agent needs of a sentiment model (:class:`SentimentScorer` in production)."""

    version: str

    def predict_many(self, texts: Sequence[str]) -> list[SentimentScore]: ...

    def predict_one(self, text: str) -> SentimentScore: ...


@dataclass(slots=True)
class _Pending:
    record: Record
    review: Review
    screened: Screened


class ReviewAgent:
    name = "sentiment"
    stateful = False

    def __init__(self, settings: Settings, scorer: TextScorer | None = None) -> None:
        t = settings.topics
        self.topics = (t.reviews,)
        self._scored_topic = t.reviews_scored
        self.scorer: TextScorer = scorer or SentimentScorer(
            settings.sentiment_model_dir,
            threads=settings.sentiment_threads,
            batch_size=settings.sentiment_model_batch_size,
        )
        currencies = CurrencyTable(settings.currency_rates, settings.reporting_currency)
        self._edge = EdgeDecoder(
            {t.reviews: "review"}, currencies, t.dead_letter, settings.worker_id
        )

    def new_state(self, partition: int) -> NoState:
        return NoState()

    async def process(self, state: NoState, records: Sequence[Record], out: Outbox) -> None:
        batch: list[_Pending] = []
        for record in records:
            valid = self._edge.decode(record, out)
            if valid is None:
                continue
            review = valid.event
            assert isinstance(review, Review)
            try:
                screened = screen(review.text)
            except CorruptText as exc:
                self._edge.reject(record, Reason.UNSCORABLE_TEXT, str(exc), out)
                continue
            batch.append(_Pending(record, review, screened))
        readable = [p for p in batch if p.screened.unscored is None]
        started = time.perf_counter()
        scores = await self._score(readable, out)
        if readable:
            out.sentiment_batches.append((len(readable), time.perf_counter() - started))
        now = time.time()
        version = self.scorer.version
        for item in batch:
            score = scores.get(id(item))
            if item.screened.unscored is None and score is None:
                continue  # dead-lettered by _score
            reason = item.screened.unscored
            value = ScoredReview(
                event_id=item.review.event_id,
                campaign_id=item.review.campaign_id,
                ts=item.review.ts,
                rating=item.review.rating,
                score=None if score is None else round(score.score, 6),
                label=None if score is None else score.label,
                unscored_reason=reason,
                truncated=item.screened.cut or (score is not None and score.truncated),
                model_version=version,
                scored_at=now,
            )
            # keyed by campaign whatever the input key was: aggregation is campaign-partitioned
            out.send(self._scored_topic, value.campaign_id.encode(), _encode(value))
            out.outcomes[(item.record.topic, Outcome.ACCEPTED)] += 1
            if value.label is not None:
                out.reviews_scored[value.label] += 1
            else:
                out.reviews_unscored[str(reason)] += 1

    async def _score(self, batch: list[_Pending], out: Outbox) -> dict[int, SentimentScore]:
        """Scores by ``id`` of the pending item; a failing text is found and dead-lettered."""
        if not batch:
            return {}
        texts = [p.screened.text for p in batch]
        try:
            scores = await asyncio.to_thread(self.scorer.predict_many, texts)
            return {id(p): s for p, s in zip(batch, scores, strict=True)}
        except Exception:
            log.exception("scoring a batch of %d reviews failed; retrying one by one", len(batch))
        found: dict[int, SentimentScore] = {}
        for item in batch:
            try:
                found[id(item)] = await asyncio.to_thread(
                    self.scorer.predict_one, item.screened.text
                )
            except Exception as exc:
                self._edge.reject(item.record, Reason.PROCESSING_ERROR, type(exc).__name__, out)
        return found

    def flush(self, state: NoState, out: Outbox, now: float) -> None:
        """Nothing buffered: every batch is scored and sent before its offsets commit."""
