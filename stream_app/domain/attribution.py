"""Click → conversion attribution for one click_id-keyed partition.

Clicks and conversions are both keyed by ``click_id`` so a conversion always meets its
click in the same partition (docs/semantics.md). A conversion counts for its click's
campaign, in the click's window, when it happened within the attribution window of the
click. One that arrives before its click waits up to the grace period of event time;
unknown or out-of-window conversions are reported as unattributed, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .dedup import Deduplicator
from .events import Click, Conversion
from .journal import BucketedLog, Change
from .outcomes import Outcome
from .records import CampaignDelta, DeltaKind, UnattributedConversion
from .roi import Totals
from .windows import window_start

CLICK_BUCKET_SECONDS = 3600
PendingConversion = tuple[str, float, float]  # event_id, revenue (reporting currency), ts


@dataclass(frozen=True, slots=True)
class AttributionConfig:
    window_size_seconds: int
    attribution_window_seconds: float
    conversion_grace_seconds: float
    dedup_horizon_seconds: float
    currency: str


class Attribution:
    """Joins conversions to clicks and sums both per campaign window for the next stage."""

    def __init__(self, config: AttributionConfig) -> None:
        self.config = config
        # One watermark per input: each side waits for the *other* stream's event time, so
        # a backlog read faster on one topic never gives up on the other too early.
        self.click_watermark = 0.0
        self.conversion_watermark = 0.0
        self.seen_clicks = Deduplicator("seen-click", config.dedup_horizon_seconds)
        self.seen_conversions = Deduplicator("seen-conversion", config.dedup_horizon_seconds)
        self.clicks: dict[str, tuple[str, float]] = {}  # click_id -> (campaign_id, ts)
        self._click_log: BucketedLog[tuple[str, str, float]] = BucketedLog("click")
        self._clicks_in_bucket: dict[int, list[str]] = {}
        self.pending: dict[str, list[PendingConversion]] = {}
        self._pending_dirty: set[str] = set()
        self._deltas: dict[tuple[str, float, DeltaKind], tuple[Totals, float]] = {}
        self._unattributed: list[UnattributedConversion] = []

    # -- events -------------------------------------------------------------------------
    def on_click(self, click: Click) -> Outcome:
        if (
            not self.seen_clicks.first_time(click.event_id, click.ts)
            or click.click_id in self.clicks
        ):
            return Outcome.DUPLICATE
        if click.ts > self.click_watermark:
            self.click_watermark = click.ts
        self._index_click(click.click_id, click.campaign_id, click.ts)
        self._delta(click.campaign_id, click.ts, "click", click.ts).clicks += 1
        for event_id, revenue, ts in self.pending.pop(click.click_id, ()):
            self._pending_dirty.add(click.click_id)
            self._attribute(event_id, click.click_id, revenue, ts)
        return Outcome.ACCEPTED

    def on_conversion(self, conversion: Conversion, revenue: float) -> Outcome:
        if not self.seen_conversions.first_time(conversion.event_id, conversion.ts):
            return Outcome.DUPLICATE
        if conversion.ts > self.conversion_watermark:
            self.conversion_watermark = conversion.ts
        if conversion.click_id in self.clicks:
            return self._attribute(conversion.event_id, conversion.click_id, revenue, conversion.ts)
        waiting = self.pending.setdefault(conversion.click_id, [])
        waiting.append((conversion.event_id, revenue, conversion.ts))
        self._pending_dirty.add(conversion.click_id)
        return Outcome.PENDING

    def _attribute(self, event_id: str, click_id: str, revenue: float, ts: float) -> Outcome:
        campaign_id, click_ts = self.clicks[click_id]
        if ts - click_ts > self.config.attribution_window_seconds:
            self._unattributed_conversion(event_id, click_id, revenue, ts, "outside_window")
            return Outcome.UNATTRIBUTED
        totals = self._delta(campaign_id, click_ts, "conversion", ts)
        totals.conversions += 1
        totals.revenue += revenue
        return Outcome.ATTRIBUTED

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

    def _index_click(self, click_id: str, campaign_id: str, ts: float) -> None:
        self.clicks[click_id] = (campaign_id, ts)
        bucket = int(ts // CLICK_BUCKET_SECONDS)
        self._clicks_in_bucket.setdefault(bucket, []).append(click_id)
        self._click_log.append(bucket, (click_id, campaign_id, ts))

    def _delta(self, campaign_id: str, click_ts: float, kind: DeltaKind, ts: float) -> Totals:
        key = (campaign_id, window_start(click_ts, self.config.window_size_seconds), kind)
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
        out = [
            CampaignDelta(campaign_id, start, kind, totals.to_list(), max_ts)
            for (campaign_id, start, kind), (totals, max_ts) in self._deltas.items()
        ]
        self._deltas = {}
        return out

    def drain_unattributed(self) -> list[UnattributedConversion]:
        out, self._unattributed = self._unattributed, []
        return out

    # -- state --------------------------------------------------------------------------
    def expire_pending(self) -> None:
        """Give up on conversions that waited past the grace period for their click."""
        overdue = self.click_watermark - self.config.conversion_grace_seconds
        for click_id in [c for c, w in self.pending.items() if any(p[2] < overdue for p in w)]:
            still: list[PendingConversion] = []
            for event_id, revenue, ts in self.pending[click_id]:
                if ts < overdue:
                    self._unattributed_conversion(event_id, click_id, revenue, ts, "unknown_click")
                else:
                    still.append((event_id, revenue, ts))
            if still:
                self.pending[click_id] = still
            else:
                del self.pending[click_id]
            self._pending_dirty.add(click_id)

    def _expire_clicks(self) -> list[Change]:
        """Forget clicks no conversion can be attributed to any more."""
        horizon = (
            self.conversion_watermark
            - self.config.attribution_window_seconds
            - self.config.conversion_grace_seconds
        )
        buckets, tombstones = self._click_log.expire_before(int(horizon // CLICK_BUCKET_SECONDS))
        for bucket in buckets:
            for click_id in self._clicks_in_bucket.pop(bucket, []):
                self.clicks.pop(click_id, None)
        return tombstones

    def changes(self) -> list[Change]:
        """Everything that changed since the last call, as changelog records.

        Call after :meth:`expire_pending` and the drains, in the same transaction.
        """
        out = self._expire_clicks()
        out.extend(self.seen_clicks.expire(self.click_watermark))
        out.extend(self.seen_conversions.expire(self.conversion_watermark))
        out.extend(self.seen_clicks.changes())
        out.extend(self.seen_conversions.changes())
        out.extend(self._click_log.changes())
        for click_id in self._pending_dirty:
            waiting = self.pending.get(click_id)
            out.append((f"pending|{click_id}", waiting or None))
        self._pending_dirty = set()
        out.append(("watermarks", [self.click_watermark, self.conversion_watermark]))
        return out

    def restore(self, key: str, value: Any) -> None:
        if key == "watermarks":
            self.click_watermark, self.conversion_watermark = value
        elif self.seen_clicks.owns(key):
            self.seen_clicks.restore(key, value)
        elif self.seen_conversions.owns(key):
            self.seen_conversions.restore(key, value)
        elif self._click_log.owns(key):
            bucket, items = self._click_log.restore(key, value)
            for click_id, campaign_id, ts in items:
                self.clicks[click_id] = (campaign_id, ts)
                self._clicks_in_bucket.setdefault(bucket, []).append(click_id)
        elif key.startswith("pending|"):
            self.pending[key.removeprefix("pending|")] = [
                (event_id, revenue, ts) for event_id, revenue, ts in value
            ]
        else:
            raise ValueError(f"unknown attribution state key {key!r}")
