"""Click → conversion attribution for one click_id-keyed partition.

Clicks and conversions are both keyed by ``click_id`` so a conversion always meets its
click in the same partition (docs/semantics.md). A conversion counts for its click's
campaign, in the click's window, when it happened within the attribution window of the
click. One that arrives before its click waits up to the grace period of event time;
unknown or out-of-window conversions are reported as unattributed, never dropped.

Clicks scored by the conversion model stay *open* until the conversion watermark passes
their label window (by default the attribution window) plus the allowed lateness; then the
model learns them, positive if a conversion was attributed meanwhile, else negative. Every
label, positive or negative, reaches the model at the same age: were positives learnt at
their conversion, a new campaign (or the whole model after a cold start) would see only
positives for a label window and overestimate p(conversion) several-fold. Each label carries
the features and the prediction made at click time, so the model learns from what it saw
then. A click's expected value leaves its window's ``open_expected_revenue`` (the nowcast's
input) as soon as it converts, or when it is labelled negative.

Lateness is judged here, per input stream and event by event, because the deltas sum many
events per batch and hide their order: a click is late when the click watermark had passed
its window's end plus the allowed lateness before it was read, a conversion when the
conversion watermark had passed its click window's end plus the attribution window plus the
allowed lateness before it was read. Late events go in deltas marked ``late`` (cumulative
totals only). After its deltas, each commit tells every aggregation partition both
watermarks (:meth:`Attribution.drain_progress`), so aggregation closes a window only once
every attribution partition has got past it (docs/semantics.md, Time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from ..learning import ConversionModel, ModelQuality, click_features
from ..state import MemoryStore, StateStore
from .dedup import Deduplicator
from .events import Click, Conversion
from .journal import BucketedLog, Change, restore_model
from .outcomes import Outcome
from .records import CampaignDelta, DeltaKind, UnattributedConversion
from .roi import Totals
from .windows import window_start

CLICK_BUCKET_SECONDS = 3600
CONVERSION_MODEL_KEY = "model|conversion"
# event_id, revenue (reporting currency), ts, the conversion watermark when it was read
PendingConversion = tuple[str, float, float, float]
# click_id, campaign_id, ts, then for a scored click: features, p_conversion, expected_value
ClickEntry = tuple[str, str, float] | tuple[str, str, float, dict[str, float], float, float]
# campaign_id, window start, kind, late: the deltas of a transaction, summed per key
DeltaKey = tuple[str, float, DeltaKind, bool]
# an open click in the store: campaign_id, ts, features, p_conversion, expected_value, and the
# revenue of its first attributed conversion (None until then) — what the label needs
OpenEntry = list[Any]


@dataclass(frozen=True, slots=True)
class AttributionConfig:
    window_size_seconds: int
    attribution_window_seconds: float
    conversion_grace_seconds: float
    dedup_horizon_seconds: float
    currency: str
    label_window_seconds: float | None = None
    """A click with no conversion after this is a negative label; None: the attribution window."""
    label_lateness_seconds: float = 0.0
    """How long after its label window a click waits before it is labelled negative."""
    allowed_lateness_seconds: float | None = None
    """Events later than this in their own stream go in ``late`` deltas; None: never."""


class Scored(msgspec.Struct, frozen=True, gc=False):
    """What the conversion model said about a click when it arrived.

    A msgspec struct, not a named tuple or a frozen dataclass: one is made per click, and a
    struct is built in C (about 0.1 against 0.8 µs for the named tuple here); ``gc=False``:
    it refers to no container that could refer back to it.
    """

    features: dict[str, float]
    p_conversion: float
    expected_value: float


class Label(msgspec.Struct, frozen=True, gc=False):
    """A click's outcome with the features and prediction of click time (delayed label);
    one per labelled click, hence a struct (see :class:`Scored`)."""

    click_id: str
    scored: Scored
    converted: bool
    revenue: float | None


class Attribution:
    """Joins conversions to clicks and sums both per campaign window for the next stage.

    What grows with traffic — seen event ids, the click index, pending conversions, open
    clicks — lives in ``store`` (in memory by default, RocksDB in the worker when
    configured: :mod:`stream_app.state`), each with an index by time bucket for expiry.
    Per batch, the deltas, labels and scored clicks stay in memory until drained.
    """

    def __init__(
        self,
        config: AttributionConfig,
        model: ConversionModel | None = None,
        partition: int | None = None,
        store: StateStore | None = None,
    ) -> None:
        store = store if store is not None else MemoryStore()
        self.config = config
        self.model = model
        self.partition = partition
        """The clicks/conversions partition: the ``source`` of its deltas and progress."""
        self._progress_sent: tuple[float, float] | None = None
        self._model_changed = False  # learnt since the last snapshot
        self._scored_clicks: list[tuple[Click, Scored]] = []
        # new clicks awaiting their score, with their features and their click delta's totals
        self._unscored: list[tuple[Click, dict[str, float], Totals]] = []
        # the first conversion of the last of them, when it came before its click
        self._unscored_converted: dict[str, tuple[float, Totals]] = {}
        # One watermark per input: each side waits for the *other* stream's event time, so
        # a backlog read faster on one topic never gives up on the other too early.
        self._meta = store.table("meta")
        marks = self._meta.get("watermarks") or (0.0, 0.0)  # a store reused after a restart
        self.click_watermark: float = marks[0]
        self.conversion_watermark: float = marks[1]
        horizon = config.dedup_horizon_seconds
        self.seen_clicks = Deduplicator("seen-click", horizon, store)
        self.seen_conversions = Deduplicator("seen-conversion", horizon, store)
        self.clicks = store.table("click")  # click_id -> [campaign_id, ts]
        self._click_log: BucketedLog[ClickEntry] = BucketedLog("click", store)
        self._clicks_by_bucket = store.index("click|bucket")
        self._put_click = self.clicks.put  # bound once: the per-click path
        self._index_click_bucket = self._clicks_by_bucket.add
        self._first_click = self.seen_clicks.first_time
        self._log_click_entry = self._click_log.append
        self._window_size = config.window_size_seconds
        self._lateness = config.allowed_lateness_seconds
        self.pending = store.table("pending")  # click_id -> [PendingConversion]
        # the keys of ``pending``, in memory: every click asks, few have one, and on disk
        # the question is a lookup (bounded: conversions waiting for their click)
        self._pending_ids: set[str] = set(self.pending)
        self._pending_by_ts = store.index("pending|ts")
        self._pending_dirty: set[str] = set()
        self._deltas: dict[DeltaKey, tuple[Totals, float]] = {}
        self._unattributed: list[UnattributedConversion] = []
        self.open = store.table("open")  # scored clicks awaiting their label: OpenEntry
        self._open_by_ts = store.index("open|ts")  # for negative labels
        self._labels: list[Label] = []
        self._labelled_log: BucketedLog[str] = BucketedLog("labelled", store)
        self._converted_log: BucketedLog[tuple[str, float]] = BucketedLog("converted", store)
        # restore only, for a label or conversion record read before its click's record
        self._labelled_early = store.table("labelled")
        self._converted_early = store.table("converted")
        self._early_by_bucket = store.index("early|bucket")
        saved_model = self._meta.get(CONVERSION_MODEL_KEY)
        if saved_model is not None and self.model is not None:
            self.model = restore_model(self.model, saved_model, ConversionModel.from_state)

    # -- events -------------------------------------------------------------------------
    def on_click(self, click: Click, scored: Scored | None = None) -> Outcome:
        """Index the click; with ``scored``, keep it open until its label is known.

        With a model and no ``scored``, the model scores the click with the other new clicks
        in one vectorised call (:meth:`score_pending`), before anything reads or changes the
        model: the same score as when it arrived.
        """
        # _late, window_start, _remember_click, _delta and _log_click inlined: this runs once
        # per click, and the calls were a fifth of its cost (benchmarks/throughput.py)
        click_id, campaign_id, ts = click.click_id, click.campaign_id, click.ts
        if not self._first_click(click.event_id, ts) or click_id in self.clicks:
            return Outcome.DUPLICATE
        size = self._window_size
        start = (ts // size) * float(size)
        watermark = self.click_watermark
        lateness = self._lateness
        late = lateness is not None and start + size + lateness <= watermark  # as _late
        if ts > watermark:
            self.click_watermark = ts
        bucket = int(ts // CLICK_BUCKET_SECONDS)
        self._put_click(click_id, [campaign_id, ts])
        self._index_click_bucket(bucket, click_id)
        key: DeltaKey = (campaign_id, start, "click", late)
        delta = self._deltas.get(key)
        if delta is None:
            totals = Totals()
            self._deltas[key] = (totals, ts)
        else:
            totals = delta[0]
            if ts > delta[1]:
                self._deltas[key] = (totals, ts)
        totals.clicks += 1
        if scored is None and self.model is not None:
            self._unscored.append((click, click_features(click), totals))
        elif scored is None:
            self._log_click_entry(bucket, (click_id, campaign_id, ts))
        else:
            self._log_click(bucket, click_id, campaign_id, ts, scored)
            totals.expected_revenue += scored.expected_value
            totals.open_expected_revenue += scored.expected_value
            totals.p_conversion_sum += scored.p_conversion
        waiting = self.pending.get(click.click_id) if click.click_id in self._pending_ids else None
        if waiting is not None:
            self._pending_ids.discard(click.click_id)
            self.pending.delete(click.click_id)
            self._pending_dirty.add(click.click_id)
            for event_id, revenue, ts, read_at in waiting:
                self._attribute(event_id, click.click_id, revenue, ts, read_at)
        return Outcome.ACCEPTED

    def on_conversion(self, conversion: Conversion, revenue: float) -> Outcome:
        if not self.seen_conversions.first_time(conversion.event_id, conversion.ts):
            return Outcome.DUPLICATE
        read_at = self.conversion_watermark  # its lateness is judged against this
        if conversion.ts > self.conversion_watermark:
            self.conversion_watermark = conversion.ts
        if conversion.click_id in self.clicks:
            return self._attribute(
                conversion.event_id, conversion.click_id, revenue, conversion.ts, read_at
            )
        waiting = self.pending.get(conversion.click_id) or []
        waiting.append([conversion.event_id, revenue, conversion.ts, read_at])
        self.pending.put(conversion.click_id, waiting)
        self._pending_ids.add(conversion.click_id)
        self._pending_by_ts.add(conversion.ts, conversion.click_id)
        self._pending_dirty.add(conversion.click_id)
        return Outcome.PENDING

    def score_pending(self) -> None:
        """Score the new clicks since the last call, all in one call to the model.

        Runs before anything reads the open clicks, their changelog or the deltas, and before
        the model changes (an order value learnt, labels learnt): each click gets the score
        it would have got on arrival.
        """
        batch = self._unscored
        model = self.model
        if not batch or model is None:
            return
        p = model.p_conversion_many([features for _, features, _ in batch]).tolist()
        # only now: were the model to fail, the clicks would still be waiting, not lost
        self._unscored = []
        converted, self._unscored_converted = self._unscored_converted, {}
        values: dict[str, float] = {}  # order value per campaign, until one is learnt
        scored_clicks = self._scored_clicks
        for (click, features, totals), p_i in zip(batch, p, strict=True):
            campaign_id = click.campaign_id
            value = values.get(campaign_id)
            if value is None:
                value = values[campaign_id] = model.order_value(campaign_id)
            ev_i = p_i * value
            scored = Scored(features, p_i, ev_i)
            scored_clicks.append((click, scored))
            bucket = int(click.ts // CLICK_BUCKET_SECONDS)
            self._log_click(bucket, click.click_id, campaign_id, click.ts, scored)
            totals.expected_revenue += ev_i
            totals.open_expected_revenue += ev_i
            totals.p_conversion_sum += p_i
            if converted and click.click_id in converted:
                revenue, on_time = converted.pop(click.click_id)
                entry = self.open.get(click.click_id) or [None] * 6  # scored: open
                self._converts(click.click_id, entry, revenue, on_time)
                values.clear()

    def _attribute(
        self, event_id: str, click_id: str, revenue: float, ts: float, read_at: float
    ) -> Outcome:
        """Attribute a conversion read when the conversion watermark was ``read_at``."""
        # the last new click's own conversions (they came before it) wait for its score;
        # any other conversion may teach the value model: every new click is scored first
        unscored_click = bool(self._unscored) and self._unscored[-1][0].click_id == click_id
        if self._unscored and not unscored_click:
            self.score_pending()
        campaign_id, click_ts = self.clicks.get(click_id) or ("", 0.0)  # indexed: never None
        window = self.config.attribution_window_seconds
        if ts - click_ts > window:
            self._unattributed_conversion(event_id, click_id, revenue, ts, "outside_window")
            return Outcome.UNATTRIBUTED
        late = self._late(click_ts, window, read_at)
        totals = self._delta(campaign_id, click_ts, "conversion", ts, late)
        totals.conversions += 1
        totals.revenue += revenue
        if unscored_click:
            if click_id not in self._unscored_converted:  # its first conversion
                on_time = self._delta(campaign_id, click_ts, "conversion", ts) if late else totals
                self._unscored_converted[click_id] = (revenue, on_time)
            return Outcome.ATTRIBUTED
        entry = self.open.get(click_id)
        if entry is not None and entry[5] is None:
            on_time = self._delta(campaign_id, click_ts, "conversion", ts) if late else totals
            self._converts(click_id, entry, revenue, on_time)
        return Outcome.ATTRIBUTED

    def _converts(self, click_id: str, entry: OpenEntry, revenue: float, on_time: Totals) -> None:
        """An open click's first attributed conversion (``on_time``: its delta, not late)."""
        # no longer open, late or not: the window's nowcast must stop expecting it
        on_time.open_expected_revenue -= entry[4]
        entry[5] = revenue
        self.open.put(click_id, entry)
        if self.model is not None:
            self.model.learn_value(entry[2], revenue)
            self._model_changed = True
        self._converted_log.append(int(entry[1] // CLICK_BUCKET_SECONDS), (click_id, revenue))

    def _label(self, click_id: str, entry: OpenEntry) -> None:
        revenue = entry[5]
        scored = Scored(entry[2], entry[3], entry[4])
        self._labels.append(Label(click_id, scored, revenue is not None, revenue))
        self._labelled_log.append(int(entry[1] // CLICK_BUCKET_SECONDS), click_id)

    def _unattributed_conversion(
        self, event_id: str, click_id: str, revenue: float, ts: float, reason: Any
    ) -> None:
        self._unattributed.append(
            UnattributedConversion(
                event_id=event_id,
                click_id=click_id,
                revenue=revenue,
                currency=self.config.currency,
                ts=ts,
                reason=reason,
            )
        )

    def _log_click(
        self, bucket: int, click_id: str, campaign_id: str, ts: float, scored: Scored | None
    ) -> None:
        """The click's changelog entry; a scored click is also open until its label."""
        if scored is None:
            self._click_log.append(bucket, (click_id, campaign_id, ts))
            return
        self._open(
            click_id,
            [campaign_id, ts, scored.features, scored.p_conversion, scored.expected_value, None],
        )
        self._click_log.append(
            bucket,
            (
                click_id,
                campaign_id,
                ts,
                scored.features,
                scored.p_conversion,
                scored.expected_value,
            ),
        )

    def _remember_click(self, click_id: str, campaign_id: str, ts: float, bucket: int) -> None:
        self.clicks.put(click_id, [campaign_id, ts])
        self._clicks_by_bucket.add(bucket, click_id)

    def _open(self, click_id: str, entry: OpenEntry) -> None:
        self.open.put(click_id, entry)
        self._open_by_ts.add(entry[1], click_id)

    def _late(self, click_ts: float, after_end: float, watermark: float) -> bool:
        """Whether an event for the window of ``click_ts``, accepted until ``after_end`` plus
        the allowed lateness past the window's end, comes after ``watermark`` passed that."""
        lateness = self.config.allowed_lateness_seconds
        if lateness is None:
            return False
        size = self.config.window_size_seconds
        return window_start(click_ts, size) + size + after_end + lateness <= watermark

    def _delta(
        self, campaign_id: str, click_ts: float, kind: DeltaKind, ts: float, late: bool = False
    ) -> Totals:
        key = (campaign_id, window_start(click_ts, self.config.window_size_seconds), kind, late)
        entry = self._deltas.get(key)
        if entry is None:
            totals = Totals()
            self._deltas[key] = (totals, ts)
            return totals
        if ts > entry[1]:
            self._deltas[key] = (entry[0], ts)
        return entry[0]

    # -- outputs ------------------------------------------------------------------------
    def drain_deltas(self) -> list[CampaignDelta]:
        self.score_pending()
        out = [
            CampaignDelta(campaign_id, start, kind, totals.to_list(), max_ts, self.partition, late)
            for (campaign_id, start, kind, late), (totals, max_ts) in self._deltas.items()
        ]
        self._deltas = {}
        return out

    def drain_progress(self) -> CampaignDelta | None:
        """Both watermarks, when they moved since the last call (and a partition is set).

        Send it to every aggregation partition *after* the deltas drained with it: every
        delta before it was judged against the previous progress.
        """
        marks = (self.click_watermark, self.conversion_watermark)
        if self.partition is None or marks == self._progress_sent or marks == (0.0, 0.0):
            return None
        self._progress_sent = marks
        return CampaignDelta.progress(self.partition, *marks)

    def drain_unattributed(self) -> list[UnattributedConversion]:
        out, self._unattributed = self._unattributed, []
        return out

    def drain_labels(self) -> list[Label]:
        """Labels since the last call, in the order they became known."""
        out, self._labels = self._labels, []
        return out

    def drain_scored_clicks(self) -> list[tuple[Click, Scored]]:
        self.score_pending()
        out, self._scored_clicks = self._scored_clicks, []
        return out

    def learn(self) -> ModelQuality | None:
        """Teach the model every label since the last call; its quality if it learned."""
        self.score_pending()  # with the model they arrived to
        labels = self.drain_labels()
        if self.model is None or not labels:
            return None
        # in one call, in label order; each order value was learnt at its conversion
        self.model.learn_many(
            [label.scored.features for label in labels],
            [label.scored.p_conversion for label in labels],
            [label.converted for label in labels],
        )
        self._model_changed = True
        return self.model.quality()

    # -- state --------------------------------------------------------------------------
    def expire_pending(self) -> None:
        """Give up on conversions that waited past the grace period for their click."""
        overdue = self.click_watermark - self.config.conversion_grace_seconds
        for _, click_id in self._pending_by_ts.pop_before(overdue):
            waiting = self.pending.get(click_id)
            if waiting is None or all(entry[2] >= overdue for entry in waiting):
                continue  # its click came, or this entry was handled with an earlier one
            still: list[PendingConversion] = []
            for entry in waiting:
                event_id, revenue, ts, _ = entry
                if ts < overdue:
                    self._unattributed_conversion(event_id, click_id, revenue, ts, "unknown_click")
                else:
                    still.append(entry)
            if still:
                self.pending.put(click_id, still)
            else:
                self.pending.delete(click_id)
                self._pending_ids.discard(click_id)
            self._pending_dirty.add(click_id)

    def expire_labels(self) -> None:
        """Label every open click whose label window (and lateness) passed."""
        self.score_pending()
        cfg = self.config
        window = cfg.label_window_seconds or cfg.attribution_window_seconds
        horizon = self.conversion_watermark - window - cfg.label_lateness_seconds
        for ts, click_id in self._open_by_ts.pop_before(horizon):
            entry = self.open.get(click_id)
            if entry is None or entry[1] != ts:
                continue  # labelled already (a duplicate entry)
            self.open.delete(click_id)
            if entry[5] is None:
                wm = self.conversion_watermark
                totals = self._delta(entry[0], ts, "conversion", wm)
                totals.open_expected_revenue -= entry[4]
            self._label(click_id, entry)

    def _expire_clicks(self) -> list[Change]:
        """Forget clicks no conversion can be attributed to any more."""
        horizon = (
            self.conversion_watermark
            - self.config.attribution_window_seconds
            - self.config.conversion_grace_seconds
        )
        before = int(horizon // CLICK_BUCKET_SECONDS)
        _, tombstones = self._click_log.expire_before(before)
        self._forget_clicks_before(before)
        tombstones.extend(self._labelled_log.expire_before(before)[1])
        tombstones.extend(self._converted_log.expire_before(before)[1])
        return tombstones

    def _forget_clicks_before(self, bucket: int) -> None:
        for _, click_id in self._clicks_by_bucket.pop_before(bucket):
            self.clicks.delete(click_id)
        for _, click_id in self._early_by_bucket.pop_before(bucket):
            self._labelled_early.delete(click_id)
            self._converted_early.delete(click_id)

    def changes(self) -> list[Change]:
        """Everything that changed since the last call, as changelog records.

        Call after :meth:`expire_pending`, :meth:`expire_labels` and the drains, in the same
        transaction.
        """
        self.score_pending()
        out = self._expire_clicks()
        out.extend(self.seen_clicks.expire(self.click_watermark))
        out.extend(self.seen_conversions.expire(self.conversion_watermark))
        out.extend(self.seen_clicks.changes())
        out.extend(self.seen_conversions.changes())
        out.extend(self._click_log.changes())
        out.extend(self._labelled_log.changes())
        out.extend(self._converted_log.changes())
        for click_id in self._pending_dirty:
            waiting = self.pending.get(click_id)
            out.append((f"pending|{click_id}", waiting or None))
        self._pending_dirty = set()
        marks = [self.click_watermark, self.conversion_watermark]
        out.append(("watermarks", marks))
        self._meta.put("watermarks", marks)
        if self.model is not None and self._model_changed:
            saved = self.model.to_state()
            out.append((CONVERSION_MODEL_KEY, saved))
            self._meta.put(CONVERSION_MODEL_KEY, saved)
            self._model_changed = False
        return out

    def restore(self, key: str, value: Any) -> None:
        """Apply one changelog record, in offset order; ``value`` None is a tombstone.

        Writes what the record means into the store, so a store reused after a restart
        replays only the records after its checkpoint. Label and conversion records of a
        click may come before the click's record (a compacted log keeps each key's last
        position), so they are kept aside until it comes.
        """
        if key == "watermarks":
            self.click_watermark, self.conversion_watermark = value
            self._meta.put("watermarks", value)
        elif self.seen_clicks.owns(key):
            self.seen_clicks.restore(key, value)
        elif self.seen_conversions.owns(key):
            self.seen_conversions.restore(key, value)
        elif self._click_log.owns(key):
            bucket, items = self._click_log.restore(key, value)
            if value is None:
                self._forget_clicks_before(bucket + 1)
            for item in items:
                click_id, campaign_id, ts = item[:3]
                self._remember_click(click_id, campaign_id, ts, bucket)
                if len(item) == 6 and click_id not in self._labelled_early:
                    revenue = self._converted_early.get(click_id)
                    self._open(click_id, [campaign_id, ts, item[3], item[4], item[5], revenue])
        elif self._converted_log.owns(key):
            bucket, converted = self._converted_log.restore(key, value)
            for click_id, revenue in converted:  # before or after its click's entry
                entry = self.open.get(click_id)
                if entry is not None:
                    entry[5] = revenue
                    self.open.put(click_id, entry)
                elif click_id not in self.clicks:
                    self._converted_early.put(click_id, revenue)
                    self._early_by_bucket.add(bucket, click_id)
        elif self._labelled_log.owns(key):
            bucket, click_ids = self._labelled_log.restore(key, value)
            for click_id in click_ids:  # keys restore in any order: before or after the click
                if click_id in self.open:
                    self.open.delete(click_id)
                elif click_id not in self.clicks:
                    self._labelled_early.put(click_id, 1)
                    self._early_by_bucket.add(bucket, click_id)
        elif key.startswith("pending|"):
            click_id = key.removeprefix("pending|")
            if value is None:
                self.pending.delete(click_id)
                self._pending_ids.discard(click_id)
                return
            # written before the read-at watermark was kept: judged as read on time
            waiting = [
                [entry[0], entry[1], entry[2], entry[3] if len(entry) > 3 else 0.0]
                for entry in value
            ]
            self.pending.put(click_id, waiting)
            self._pending_ids.add(click_id)
            for entry in waiting:
                self._pending_by_ts.add(entry[2], click_id)
        elif key == CONVERSION_MODEL_KEY:
            if self.model is not None and value is not None:
                self.model = restore_model(self.model, value, ConversionModel.from_state)
                self._meta.put(CONVERSION_MODEL_KEY, value)
        else:
            raise ValueError(f"unknown attribution state key {key!r}")
