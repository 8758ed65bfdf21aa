"""Agent over ``reviews`` (keyed by campaign_id): sentiment scoring in micro-batches.

It runs in its own consumer group and transaction (:func:`stream_app.runner.build_workers`)
and scores off the event loop, so a slow model never holds up clicks, conversions and
spend in the same process. Each poll takes at most ``sentiment_batch_size`` reviews (the
batch layer's equivalent of Faust's ``stream.take(n, within=…)``); the scored records,
dead letters and input offsets commit together, exactly once. Texts never reach a log.

Each readable review also teaches the partition's online topic model
(:class:`~stream_app.learning.topics.ReviewTopicModel`); per campaign and minute, the
topic mass of its reviews (and of the negative ones) goes to ``review-topics`` with the
top terms per topic, for the alert explanations (docs/alerts.md). The model is changelog
state: a snapshot every ``SNAPSHOT_EVERY`` reviews (as the STYLE asks of River models) and,
in every transaction between, the bags of words it learnt, so a restart replays them onto
the snapshot and resumes exactly where the last commit left it (:class:`TopicState`).
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
from ..domain.records import ReviewTopics, ScoredReview, TopicTerms
from ..domain.validation import Reason
from ..engine.stage import Outbox
from ..learning.topics import ReviewTopicModel, tokens
from ..sentiment import CorruptText, Screened, SentimentScore, SentimentScorer, screen
from ..settings import Settings
from .base import EdgeDecoder, Record

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


SNAPSHOT_EVERY = 200
TOPICS_KEY = "model|topics"
JOURNAL_PREFIX = "model|topics|j|"


class NoState:
    """Scoring keeps nothing between batches (de-duplication happens at aggregation)."""

    def changes(self) -> list[Change]:
        return []

    def restore(self, key: str, value: object) -> None:
        raise ValueError(f"the sentiment stage has no state; got {key!r}")


class TopicState:
    """One partition's review topic model, exactly as of the last commit after a restart.

    The whole model (~45 KiB for the generator's templated reviews, 1.4-2.8 MB for a
    2,000-word vocabulary: docs/alerts.md) is written every ``SNAPSHOT_EVERY`` reviews; in
    every other transaction that learnt, the bags of words it learnt (``tokens``: lower
    case, no stop words; ~25 words a review), under a key of their own. A restart loads the
    snapshot and replays the bags after it in order: the model is deterministic (its random
    state is in the snapshot), so it is the model of the last commit, not of the last
    snapshot. A snapshot deletes the bags it covers (tombstones, same transaction).
    """

    def __init__(self, n_topics: int) -> None:
        self._model = ReviewTopicModel(n_topics)
        self.unsaved = 0
        """Reviews learnt since the last snapshot (replayed ones too)."""
        self.learnt: list[dict[str, int]] = []
        """Bags learnt since the last ``changes()``."""
        self.journal = 0
        """Journal keys written since the last snapshot."""
        self._replay: dict[int, list[dict[str, int]]] = {}

    @property
    def model(self) -> ReviewTopicModel:
        if self._replay:  # after a restore: the bags after the snapshot, in order
            for seq in sorted(self._replay):
                for bag in self._replay[seq]:
                    self._model.learn_bag(bag)
                    self.unsaved += 1
            self._replay = {}
        return self._model

    def learn(self, text: str) -> list[float]:
        bag = tokens(text)
        shares = self.model.learn_bag(bag)
        if bag:
            self.learnt.append(bag)
            self.unsaved += 1
        return shares

    def changes(self) -> list[Change]:
        if not self.learnt:
            return []
        self.learnt, learnt = [], self.learnt
        if self.unsaved < SNAPSHOT_EVERY:
            self.journal += 1
            return [(f"{JOURNAL_PREFIX}{self.journal - 1:08d}", learnt)]
        out: list[Change] = [(TOPICS_KEY, self.model.to_state())]
        out += [(f"{JOURNAL_PREFIX}{seq:08d}", None) for seq in range(self.journal)]
        self.unsaved = self.journal = 0
        return out

    def restore(self, key: str, value: object) -> None:
        if key == TOPICS_KEY and isinstance(value, str):
            self._model = ReviewTopicModel.from_state(value)
        elif key.startswith(JOURNAL_PREFIX) and isinstance(value, list):
            seq = int(key[len(JOURNAL_PREFIX) :])
            self._replay[seq] = [{str(w): int(n) for w, n in bag.items()} for bag in value]
            self.journal = max(self.journal, seq + 1)
        else:
            raise ValueError(f"unknown sentiment state key {key!r}")


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
    stateful = True

    def __init__(self, settings: Settings, scorer: TextScorer | None = None) -> None:
        t = settings.topics
        self.topics = (t.reviews,)
        self._scored_topic = t.reviews_scored
        self._topics_topic = t.review_topics
        self._n_topics = settings.review_topics_count
        self.scorer: TextScorer = scorer or SentimentScorer(
            settings.sentiment_model_dir,
            threads=settings.sentiment_threads,
            batch_size=settings.sentiment_model_batch_size,
        )
        currencies = CurrencyTable(settings.currency_rates, settings.reporting_currency)
        self._edge = EdgeDecoder(
            {t.reviews: "review"}, currencies, t.dead_letter, settings.worker_id
        )

    def new_state(self, partition: int) -> TopicState:
        return TopicState(self._n_topics)

    async def process(self, state: TopicState, records: Sequence[Record], out: Outbox) -> None:
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
        mass: dict[tuple[str, float], tuple[list[int], list[float], list[float]]] = {}
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
            if score is not None:
                shares = state.learn(item.screened.text)
                key = (value.campaign_id, (value.ts // 60) * 60.0)
                if key not in mass:
                    mass[key] = ([0, 0], [0.0] * len(shares), [0.0] * len(shares))
                counts, all_mass, negative = mass[key]
                counts[0] += 1
                counts[1] += int(score.score < 0)
                for k, x in enumerate(shares):
                    all_mass[k] += x
                    if score.score < 0:
                        negative[k] += x
            if value.label is not None:
                out.reviews_scored[value.label] += 1
            else:
                out.reviews_unscored[str(reason)] += 1
        if mass:
            terms = [TopicTerms(topic=k, terms=t) for k, t in enumerate(state.model.top_terms())]
            for (campaign_id, start), (counts, all_mass, negative) in sorted(mass.items()):
                topics = ReviewTopics(
                    campaign_id=campaign_id,
                    bucket_start=start,
                    reviews=counts[0],
                    negative_reviews=counts[1],
                    mass=[round(x, 6) for x in all_mass],
                    negative_mass=[round(x, 6) for x in negative],
                    topics=terms,
                    model_version=state.model.version,
                    emitted_at=now,
                )
                out.send(self._topics_topic, campaign_id.encode(), _encode(topics))

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

    def flush(self, state: TopicState, out: Outbox, now: float) -> None:
        """Nothing buffered: every batch is scored and sent before its offsets commit."""
