"""Per-campaign tumbling windows and cumulative totals for one campaign-keyed partition.

Event time decides the window. Each input *source* has its own watermark (the largest event
time it has delivered): ``spend``, ``reviews`` and, per attribution partition *q*,
``click|q`` and ``conversion|q`` (from its ``progress`` records on ``campaign-deltas``).
The partition's watermark for its own events (spend, reviews, clicks) is the **minimum** over
those sources, and its conversion watermark the minimum over the ``conversion|q`` sources:
a window closes only once every source has got past it, however fast one of them is read.
A source that has not advanced for ``idle_source_timeout_seconds`` of wall-clock time (since
it was last seen, or since this state was created or restored) is idle and left out of the
minimum until it advances again; a source never seen holds every window until then. The
combined watermarks never go back.

A window takes its own events until the watermark passes its end plus the allowed lateness
(then it *closes*), and attributed conversions (revenue lands in the window of the click, as
ad platforms report it) until, in addition, the conversion watermark passes its end plus the
attribution window plus the allowed lateness (then it *matures* and leaves the state). An
event is too late when it was late in its own stream (spend and reviews judged here against
their source's watermark, clicks and conversions by the attribution stage, which marks their
deltas ``late``), or when its window has closed or matured; too-late events still count in
the cumulative totals. Every change re-emits the window with the next revision.

With a forecaster, each window is forecast when it *closes* (its own events are in; its
conversions are still arriving) from what is known then, and the forecaster learns the
window's realised ROI when it *matures* (its attribution window has passed and it is
dropped). The inputs seen at close are kept with the window, so learning uses them.

State: windows live in a :class:`~stream_app.state.StateStore` (in memory by default,
RocksDB in the worker when configured), because they are kept for the whole attribution
window (campaigns × 10,080 minutes for the default 7 days). Only the windows not yet closed
and those changed since the last :meth:`Aggregation.changes` stay in memory as objects; a
closed window is written to the store once per transaction and dropped from memory, and
read back when a late conversion lands in it. Cumulative totals per campaign, the
forecaster and the sources stay in memory (bounded by campaigns, not by time); a copy of
their last changelog records in the store rebuilds them when a reused store is opened.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..learning import ForecastInputs, RoiForecaster
from ..state import MemoryStore, StateStore
from .dedup import Deduplicator
from .events import Spend
from .journal import Change, restore_model
from .outcomes import Outcome
from .records import (
    CampaignDelta,
    CampaignLatest,
    Metrics,
    Predictions,
    ScoredReview,
    WindowRoi,
)
from .roi import Totals

FORECAST_MODEL_KEY = "model|forecast"
SPEND = "spend"
REVIEWS = "reviews"


def click_source(partition: int) -> str:
    """The source name of attribution partition ``partition``'s clicks."""
    return f"click|{partition}"


def conversion_source(partition: int) -> str:
    """The source name of attribution partition ``partition``'s conversions."""
    return f"conversion|{partition}"


def window_start(ts: float, size: int) -> float:
    """Start of the tumbling window of ``size`` seconds that holds ``ts``.

    >>> window_start(125.5, 60), window_start(120.0, 60)
    (120.0, 120.0)
    """
    return (ts // size) * float(size)


@dataclass(frozen=True, slots=True)
class AggregationConfig:
    window_size_seconds: int
    allowed_lateness_seconds: float
    attribution_window_seconds: float
    dedup_horizon_seconds: float
    currency: str
    upstream_partitions: int = 0
    """Attribution partitions whose progress is expected before windows close."""
    idle_source_timeout_seconds: float = 30.0
    """Wall-clock seconds without progress after which a source stops holding windows."""


@dataclass(slots=True)
class Source:
    """One input's event-time progress as this partition knows it."""

    watermark: float | None = None
    """The largest event time it delivered; None: nothing yet."""
    last_active: float | None = None
    """Wall-clock time of the last :meth:`Aggregation.advance` that saw it advance (at
    first: the first advance after this state was created or restored)."""
    touched: bool = False
    """Advanced since the last :meth:`Aggregation.advance`."""


@dataclass(slots=True)
class WindowState:
    totals: Totals = field(default_factory=Totals)
    revision: int = 0
    closed: bool = False
    forecast: float | None = None
    inputs: ForecastInputs | None = None
    """What the forecaster saw at close, to learn from when the window matures."""

    def to_list(self) -> list[Any]:
        inputs = None if self.inputs is None else dataclasses.astuple(self.inputs)
        return [self.totals.to_list(), self.revision, self.closed, self.forecast, inputs]

    @classmethod
    def from_list(cls, value: list[Any]) -> WindowState:
        totals, revision, closed, forecast, inputs = value
        return cls(
            Totals.from_list(totals),
            revision,
            closed,
            forecast,
            None if inputs is None else ForecastInputs(*inputs),
        )


@dataclass(slots=True)
class CampaignState:
    totals: Totals = field(default_factory=Totals)
    revision: int = 0
    last_window_start: float | None = None
    too_late_events: int = 0
    last_closed_start: float | None = None
    last_matured_roi: float | None = None


WindowKey = tuple[str, float]


def _store_key(campaign_id: str, start: float) -> str:
    """A window's key in the store: its changelog key without the ``w|``."""
    return f"{campaign_id}|{start}"


def _parse_key(store_key: str) -> WindowKey:
    campaign_id, start = store_key.rsplit("|", 1)
    return campaign_id, float(start)


class Windows(Mapping[WindowKey, WindowState]):
    """Every window held, in memory or in the store: a read-only view for tests and
    diagnostics (iterating it scans the store). A window read from the store is a copy."""

    def __init__(self, aggregation: Aggregation) -> None:
        self._agg = aggregation

    def __getitem__(self, key: WindowKey) -> WindowState:
        window = self._agg.window(*key)
        if window is None:
            raise KeyError(key)
        return window

    def __iter__(self) -> Iterator[WindowKey]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def _keys(self) -> list[WindowKey]:
        return self._agg.window_keys()


class Aggregation:
    """Sums spend, reviews and attribution deltas into windows and cumulative totals.

    Windows, their expiry index and the seen event ids live in ``store``; windows not yet
    closed, and those changed since the last :meth:`changes`, also as objects in memory
    (``_cache``), so no event reads or encodes the store: see the module docstring.

    A subclass whose :meth:`_restore_record` needs its own attributes sets them before
    calling this constructor: it rebuilds the in-memory state from a reused store.
    """

    def __init__(
        self,
        config: AggregationConfig,
        forecaster: RoiForecaster | None = None,
        conversion_model_version: str | None = None,
        store: StateStore | None = None,
    ) -> None:
        store = store if store is not None else MemoryStore()
        self.config = config
        self.forecaster = forecaster
        self.conversion_model_version = conversion_model_version
        self._forecaster_changed = False  # learnt since the last snapshot
        self._to_close: list[float] = []  # min-heap of window starts not yet closed
        self._open_at: dict[float, set[str]] = {}  # campaigns per start, not yet closed
        # combined watermarks: the minimum over the active sources, never going back
        self.watermark = 0.0  # own events: spend, reviews, clicks
        self.conversion_watermark = 0.0
        self.sources: dict[str, Source] = {SPEND: Source(), REVIEWS: Source()}
        for q in range(config.upstream_partitions):
            self.sources[click_source(q)] = Source()
            self.sources[conversion_source(q)] = Source()
        self._sources_changed = False
        self._legacy_watermark = False  # restored a pre-sources "watermark" key
        self.seen = Deduplicator("seen", config.dedup_horizon_seconds, store)
        # every window held: "campaign|start" -> WindowState.to_list(), as in the changelog
        self._stored = store.table("window")
        self._by_start = store.index("window|start")  # start -> campaign, for maturity
        # keys of the stored windows not closed: a reused store puts them back in memory
        self._open_stored = store.table("window|open")
        self._marked: set[str] = set()  # the keys in _open_stored, in memory
        self._cache: dict[WindowKey, WindowState] = {}
        # The in-memory store keeps values as they are and is never reused (it has no
        # position): it holds the WindowState objects themselves, nothing leaves memory,
        # and nothing is kept for a reload — the old dicts' cost. Any other store holds
        # lists; closed windows leave memory, and reopening the store rebuilds the rest.
        self._in_memory = isinstance(store, MemoryStore)
        self.campaigns: dict[str, CampaignState] = {}
        # changed since the last emission, and emitted since the last changelog write
        self._dirty_windows: set[WindowKey] = set()
        self._dirty_campaigns: set[str] = set()
        self._unsaved_windows: set[WindowKey] = set()
        self._unsaved_campaigns: set[str] = set()
        self._retention = config.attribution_window_seconds + config.allowed_lateness_seconds
        # the last changelog record of every key held only in memory (campaigns, the
        # forecaster, watermarks, sources, a subclass's): rebuilt from here on a reuse
        self._kept = store.table("kept")
        self._reloading = False
        self._reload()

    def _reload(self) -> None:
        """Rebuild what lives only in memory from a reused store (nothing when it is new)."""
        if self._in_memory:
            return
        self._reloading = True
        try:
            for key in list(self._kept):
                self._restore_record(key, self._kept.get(key))
        finally:
            self._reloading = False
        for store_key in list(self._open_stored):
            value = self._stored.get(store_key)
            if value is None:  # matured meanwhile: a stale mark
                self._open_stored.delete(store_key)
                continue
            self._marked.add(store_key)
            window = self._unpack(value)
            if not window.closed:
                self._keep_open(*_parse_key(store_key), window)

    @property
    def windows(self) -> Windows:
        """Every window held (read-only; iterating scans the store)."""
        return Windows(self)

    def window(self, campaign_id: str, start: float) -> WindowState | None:
        """The window, from memory or else read from the store (on disk: a copy, not kept
        in memory)."""
        window = self._cache.get((campaign_id, start))
        if window is not None:
            return window
        value = self._stored.get(_store_key(campaign_id, start))
        return None if value is None else self._unpack(value)

    def _unpack(self, value: Any) -> WindowState:
        return value if self._in_memory else WindowState.from_list(value)

    def window_keys(self) -> list[WindowKey]:
        """The keys of every window held, sorted (scans the store)."""
        keys = set(self._cache) | {_parse_key(k) for k in self._stored}
        return sorted(keys)

    def cached_windows(self) -> int:
        """Windows held as objects in memory (open, or changed since the last changes())."""
        return len(self._cache)

    # -- events -------------------------------------------------------------------------
    def on_spend(self, spend: Spend, amount: float) -> Outcome:
        if not self.seen.first_time(spend.event_id, spend.ts):
            return Outcome.DUPLICATE
        totals = Totals(spend=amount, impressions=spend.impressions)
        start = window_start(spend.ts, self.config.window_size_seconds)
        late = self._late_in(SPEND, start, spend.ts)
        return self._apply(spend.campaign_id, start, totals, 1, own_event=True, late=late)

    def on_review(self, review: ScoredReview) -> Outcome:
        """Count a review, and its sentiment when it was scored."""
        if not self.seen.first_time(review.event_id, review.ts):
            return Outcome.DUPLICATE
        totals = Totals(reviews=1)
        if review.score is not None:
            totals.scored_reviews = 1
            totals.sentiment_sum = review.score
            totals.negative_reviews = int(review.score < 0)
        start = window_start(review.ts, self.config.window_size_seconds)
        late = self._late_in(REVIEWS, start, review.ts)
        return self._apply(review.campaign_id, start, totals, 1, own_event=True, late=late)

    def on_delta(self, delta: CampaignDelta) -> Outcome:
        """Apply one delta (lateness judged upstream: ``delta.late``), or a progress record."""
        if delta.kind == "progress":
            self.on_progress(delta)
            return Outcome.ACCEPTED
        totals = Totals.from_list(delta.totals)
        own_event = delta.kind == "click"
        events = totals.clicks if own_event else totals.conversions
        if delta.source is not None:  # a delta shows its source is alive
            name = (click_source if own_event else conversion_source)(delta.source)
            self._source(name).touched = True
        return self._apply(
            delta.campaign_id,
            delta.window_start,
            totals,
            events,
            own_event=own_event,
            late=delta.late,
        )

    def on_progress(self, progress: CampaignDelta) -> None:
        """An attribution partition's watermarks, sent after its deltas of the same commit."""
        if progress.source is None:
            return
        for name, watermark in (
            (click_source(progress.source), progress.click_watermark),
            (conversion_source(progress.source), progress.conversion_watermark),
        ):
            source = self._source(name)
            if watermark is None:
                continue
            if source.watermark is None or watermark > source.watermark:
                source.watermark = watermark
                source.touched = True
                self._sources_changed = True

    def _source(self, name: str) -> Source:
        source = self.sources.get(name)
        if source is None:  # an upstream partition beyond the expected count
            source = self.sources[name] = Source()
        return source

    def _late_in(self, name: str, start: float, ts: float) -> bool:
        """Whether an own event of source ``name`` comes after that source's own watermark
        passed the end of its window plus the allowed lateness; advances that watermark."""
        source = self.sources[name]
        end = start + self.config.window_size_seconds
        late = source.watermark is not None and (
            end + self.config.allowed_lateness_seconds <= source.watermark
        )
        if source.watermark is None or ts > source.watermark:
            source.watermark = ts
            self._sources_changed = True
        source.touched = True
        return late

    def _apply(
        self,
        campaign_id: str,
        start: float,
        totals: Totals,
        events: int,
        *,
        own_event: bool,
        late: bool,
    ) -> Outcome:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            campaign = self.campaigns[campaign_id] = CampaignState()
        campaign.totals.add(totals)
        self._dirty_campaigns.add(campaign_id)
        end = start + self.config.window_size_seconds
        # late in its own stream, or its window closed (own events) or matured (conversions)
        # while its source was idle
        if late or end <= (self._closed_until() if own_event else self._matured_until()):
            campaign.too_late_events += events
            return Outcome.TOO_LATE
        key = (campaign_id, start)
        window = self._cache.get(key)
        if window is None:  # new, or closed and written to the store
            window = self._load(campaign_id, start)
        window.totals.add(totals)
        self._dirty_windows.add(key)
        if campaign.last_window_start is None or start > campaign.last_window_start:
            campaign.last_window_start = start
        return Outcome.ACCEPTED

    def _load(self, campaign_id: str, start: float) -> WindowState:
        """The window from the store into memory, or a new one (open, indexed for expiry).

        With the in-memory store every window is in memory already: none is looked up.
        """
        if not self._in_memory:
            value = self._stored.get(_store_key(campaign_id, start))
            if value is not None:
                window = self._cache[(campaign_id, start)] = WindowState.from_list(value)
                return window
        window = self._cache[(campaign_id, start)] = WindowState()
        self._by_start.add(start, campaign_id)
        held = self._open_at.get(start)
        if held is None:
            held = self._open_at[start] = set()
        heapq.heappush(self._to_close, start)  # new: not in ``held``
        held.add(campaign_id)
        return window

    def _keep_open(self, campaign_id: str, start: float, window: WindowState) -> None:
        """Hold a window not yet closed in memory until it closes."""
        self._cache[(campaign_id, start)] = window
        held = self._open_at.get(start)
        if held is None:
            held = self._open_at[start] = set()
        if campaign_id not in held:  # per window: one may open after its start closed
            heapq.heappush(self._to_close, start)
            held.add(campaign_id)

    # -- event time ---------------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Move the combined watermarks at wall-clock ``now`` (each commit) and close windows.

        Sources seen advancing since the last call are active at ``now``; one that has not
        advanced for ``idle_source_timeout_seconds`` is idle and left out of the minimum. A
        source with no watermark yet holds the minimum until it reports or goes idle.
        """
        timeout = self.config.idle_source_timeout_seconds
        own: list[float | None] = []
        conversions: list[float | None] = []
        for name, source in self.sources.items():
            if source.touched or source.last_active is None:
                source.last_active = now
                source.touched = False
            if now - source.last_active > timeout:
                continue
            (conversions if name.startswith("conversion|") else own).append(source.watermark)
        if own and None not in own:
            self.watermark = max(self.watermark, min(w for w in own if w is not None))
        if not conversions:  # no conversion input active: conversions follow the rest
            self.conversion_watermark = max(self.conversion_watermark, self.watermark)
        elif None not in conversions:
            low = min(w for w in conversions if w is not None)
            self.conversion_watermark = max(self.conversion_watermark, low)
        self.close_windows()

    def _closed_until(self) -> float:
        """Windows ending at or before this are closed: their own events are all in."""
        return self.watermark - self.config.allowed_lateness_seconds

    def _matured_until(self) -> float:
        """Windows ending at or before this are final: their conversions are all in too."""
        conversions = self.conversion_watermark - self._retention
        return min(self._closed_until(), conversions)

    def idle_sources(self, now: float) -> list[str]:
        """Sources not holding windows back at ``now`` (for diagnostics and tests)."""
        timeout = self.config.idle_source_timeout_seconds
        return sorted(
            name
            for name, s in self.sources.items()
            if s.last_active is not None and not s.touched and now - s.last_active > timeout
        )

    # -- forecasting --------------------------------------------------------------------
    def close_windows(self) -> None:
        """Forecast every window whose own events are done (watermark past end + lateness)."""
        last = self._closed_until() - self.config.window_size_seconds
        while self._to_close and self._to_close[0] <= last:
            start = heapq.heappop(self._to_close)
            while self._to_close and self._to_close[0] == start:
                heapq.heappop(self._to_close)
            for campaign_id in sorted(self._open_at.pop(start, ())):
                window = self._cache.get((campaign_id, start))
                if window is not None and not window.closed:  # else matured or restored
                    self._close(campaign_id, start, window)

    def _close(self, campaign_id: str, start: float, window: WindowState) -> None:
        window.closed = True
        campaign = self.campaigns[campaign_id]
        if self.forecaster is not None:
            t = window.totals
            window.inputs = ForecastInputs(
                campaign_id=campaign_id,
                window_start=start,
                window_size_seconds=self.config.window_size_seconds,
                spend=t.spend,
                impressions=t.impressions,
                clicks=t.clicks,
                conversions=t.conversions,
                revenue=t.revenue,
                expected_revenue=t.expected_revenue,
                open_expected_revenue=t.open_expected_revenue,
                sentiment_mean=t.sentiment_mean(),
                previous_roi=campaign.last_matured_roi,
            )
            window.forecast = self.forecaster.predict(window.inputs)
        if campaign.last_closed_start is None or start > campaign.last_closed_start:
            campaign.last_closed_start = start
            self._dirty_campaigns.add(campaign_id)
        self._dirty_windows.add((campaign_id, start))

    def _mature(self, campaign_id: str, window: WindowState) -> None:
        """The window's ROI is final: score the forecast made at close, then learn."""
        realised = window.totals.roi()
        if realised is None:
            return
        campaign = self.campaigns.get(campaign_id)
        if campaign is not None:
            campaign.last_matured_roi = realised
            self._unsaved_campaigns.add(campaign_id)
        if self.forecaster is not None and window.inputs is not None:
            self.forecaster.learn(window.inputs, window.forecast, realised)
            self._forecaster_changed = True

    # -- outputs ------------------------------------------------------------------------
    def _window_record(
        self, campaign_id: str, start: float, window: WindowState, now: float
    ) -> WindowRoi:
        return WindowRoi(
            campaign_id=campaign_id,
            window_start=start,
            window_end=start + self.config.window_size_seconds,
            revision=window.revision,
            closed=window.closed,
            metrics=Metrics.of(window.totals, self.config.currency),
            predictions=self._predictions(window.totals, window.forecast),
            emitted_at=now,
        )

    def _predictions(self, totals: Totals, forecast: float | None) -> Predictions:
        scored = self.conversion_model_version is not None
        return Predictions(
            p_conversion_mean=totals.p_conversion_mean() if scored else None,
            expected_revenue=round(totals.expected_revenue, 6) if scored else None,
            open_expected_revenue=round(totals.open_expected_revenue, 6) if scored else None,
            roi_nowcast=totals.roi_nowcast() if scored else None,
            roi_forecast=forecast,
            conversion_model_version=self.conversion_model_version,
            forecast_model_version=self.forecaster.version if self.forecaster else None,
        )

    def drain_emissions(self, now: float) -> tuple[list[WindowRoi], list[CampaignLatest]]:
        """New revisions of every window and campaign changed since the last drain."""
        windows = []
        for key in sorted(self._dirty_windows):
            window = self._cache[key]  # changed: in memory until the next changes()
            window.revision += 1
            windows.append(self._window_record(*key, window, now))
        latest = []
        for campaign_id in sorted(self._dirty_campaigns):
            campaign = self.campaigns[campaign_id]
            campaign.revision += 1
            latest.append(
                CampaignLatest(
                    campaign_id=campaign_id,
                    revision=campaign.revision,
                    cumulative=Metrics.of(campaign.totals, self.config.currency),
                    predictions=self._predictions(campaign.totals, None),
                    last_window=self._held_record(campaign_id, campaign.last_window_start, now),
                    last_closed_window=self._held_record(
                        campaign_id, campaign.last_closed_start, now
                    ),
                    too_late_events=campaign.too_late_events,
                    updated_at=now,
                )
            )
        self._unsaved_windows |= self._dirty_windows
        self._unsaved_campaigns |= self._dirty_campaigns
        self._dirty_windows = set()
        self._dirty_campaigns = set()
        return windows, latest

    def _held_record(self, campaign_id: str, start: float | None, now: float) -> WindowRoi | None:
        window = None if start is None else self.window(campaign_id, start)
        if window is None or start is None:
            return None
        return self._window_record(campaign_id, start, window, now)

    # -- state --------------------------------------------------------------------------
    def changes(self) -> list[Change]:
        """Changelog records for what changed since the last call (after drain_emissions).

        Each changed window is written to the store here, once per transaction, and a
        closed one then leaves memory.
        """
        out = self._window_changes()
        out.extend(self._expire())  # matures windows: campaigns and the forecaster change
        kept: list[Change] = []
        for campaign_id in self._unsaved_campaigns:
            c = self.campaigns[campaign_id]
            kept.append(
                (
                    f"c|{campaign_id}",
                    [
                        c.totals.to_list(),
                        c.revision,
                        c.last_window_start,
                        c.too_late_events,
                        c.last_closed_start,
                        c.last_matured_roi,
                    ],
                )
            )
        self._unsaved_campaigns = set()
        if self.forecaster is not None and self._forecaster_changed:
            kept.append((FORECAST_MODEL_KEY, self.forecaster.to_state()))
            self._forecaster_changed = False
        out.extend(kept)
        out.extend(self.seen.expire(self.watermark))
        out.extend(self.seen.changes())
        marks: list[Change] = [("watermarks", [self.watermark, self.conversion_watermark])]
        if self._sources_changed:
            progress = {n: s.watermark for n, s in self.sources.items() if s.watermark is not None}
            marks.append(("sources", progress))
            self._sources_changed = False
        if self._legacy_watermark:  # replaced by the two keys above
            marks.append(("watermark", None))
            self._legacy_watermark = False
        out.extend(marks)
        self.keep(kept)
        self.keep(marks)
        return out

    def keep(self, records: Iterable[Change]) -> None:
        """Copy changelog records of state held only in memory into the store, so that
        opening a reused store rebuilds that state (:meth:`_reload`)."""
        if self._in_memory:
            return
        put, delete = self._kept.put, self._kept.delete
        for key, value in records:
            if value is None:
                delete(key)
            else:
                put(key, value)

    def _window_changes(self) -> list[Change]:
        """The emitted windows' records, each written to the store; closed ones leave memory."""
        out: list[Change] = []
        cache, dirty, put = self._cache, self._dirty_windows, self._stored.put
        in_memory, marked = self._in_memory, self._marked
        for key in self._unsaved_windows:
            window = cache[key]
            value = window.to_list()
            store_key = _store_key(*key)
            out.append(("w|" + store_key, value))
            if in_memory:
                put(store_key, window)
                continue
            put(store_key, value)
            if window.closed and key not in dirty:
                del cache[key]
            if window.closed:
                if store_key in marked:
                    self._mark(store_key, False)
            elif store_key not in marked:
                self._mark(store_key, True)
        self._unsaved_windows = set()
        return out

    def _mark(self, store_key: str, is_open: bool) -> None:
        """Keep the store's list of open windows in step (only when it changes)."""
        if self._in_memory:
            return
        if is_open:
            if store_key not in self._marked:
                self._open_stored.put(store_key, 1)
                self._marked.add(store_key)
        elif store_key in self._marked:
            self._open_stored.delete(store_key)
            self._marked.discard(store_key)

    def _expire(self) -> list[Change]:
        """Drop windows no event can change any more (the cumulative totals stay).

        Pops the expiry index; an entry whose window is gone (a tombstone restored, a
        window never written) is skipped, as with a lazy heap.
        """
        out: list[Change] = []
        last_open = self._matured_until() - self.config.window_size_seconds
        for start, campaign_id in self._by_start.pop_before(math.nextafter(last_open, math.inf)):
            key = (campaign_id, start)
            window = self._cache.pop(key, None)
            store_key = _store_key(campaign_id, start)
            if window is None:
                value = self._stored.get(store_key)
                if value is None:
                    continue
                window = self._unpack(value)
            self._mature(campaign_id, window)
            self._stored.delete(store_key)
            self._mark(store_key, False)
            self._dirty_windows.discard(key)
            out.append((f"w|{store_key}", None))
        return out

    def restore(self, key: str, value: Any) -> None:
        """Apply one changelog record, in offset order; ``value`` None is a tombstone.

        Writes what the record means into the store, so a store reused after a restart
        replays only the records after its checkpoint.
        """
        if key.startswith("w|"):
            self._restore_window(key[2:], value)
        elif self.seen.owns(key):
            self.seen.restore(key, value)
        else:
            self._restore_record(key, value)
            if not self._reloading:
                self.keep([(key, value)])

    def _restore_window(self, store_key: str, value: list[Any] | None) -> None:
        campaign_id, start = _parse_key(store_key)
        if value is None:
            self._stored.delete(store_key)
            self._cache.pop((campaign_id, start), None)
            self._mark(store_key, False)
            return
        if store_key not in self._stored:
            self._by_start.add(start, campaign_id)
        window = WindowState.from_list(value)
        self._stored.put(store_key, window if self._in_memory else value)
        if not window.closed:
            self._keep_open(campaign_id, start, window)
        elif self._in_memory:
            self._cache[(campaign_id, start)] = window
        else:
            self._cache.pop((campaign_id, start), None)
        self._mark(store_key, not window.closed)

    def _restore_record(self, key: str, value: Any) -> None:
        """Apply a record of state held only in memory (a subclass adds its own keys)."""
        if value is None:  # a tombstone: only the pre-sources "watermark" has them
            if key.startswith("c|"):
                self.campaigns.pop(key[2:], None)
            elif key == "watermark":
                self._legacy_watermark = False
            return
        if key == "watermarks":
            own, conversions = value
            self.watermark = max(self.watermark, float(own))
            self.conversion_watermark = max(self.conversion_watermark, float(conversions))
        elif key == "sources":
            for name, watermark in value.items():
                self._source(name).watermark = float(watermark)
        elif key == "watermark":
            # State written before per-source watermarks: one maximum over every input. It
            # becomes the floor of both combined watermarks, so nothing it closed or dropped
            # opens again; the sources start unknown and hold windows until they report.
            self.watermark = max(self.watermark, float(value))
            self.conversion_watermark = max(self.conversion_watermark, float(value))
            self._legacy_watermark = True
        elif key.startswith("c|"):
            totals, revision, last, too_late, last_closed, last_matured = value
            self.campaigns[key[2:]] = CampaignState(
                Totals.from_list(totals),
                revision,
                last,
                too_late,
                last_closed_start=last_closed,
                last_matured_roi=last_matured,
            )
        elif key == FORECAST_MODEL_KEY:
            if self.forecaster is not None:
                self.forecaster = restore_model(self.forecaster, value, RoiForecaster.from_state)
        else:
            raise ValueError(f"unknown aggregation state key {key!r}")
