"""ROI-drop alerts that say why (``campaign-alerts``): detection and an exact explanation.

Pure maths, no Kafka: the aggregation stage feeds it spend, the attribution deltas and
scored reviews as they arrive and calls :meth:`AlertBook.tick` at each commit; the
evaluation (``tools/evaluate_alerts.py``) drives the same class in event time. Per
campaign (docs/alerts.md):

1. **Cohorts, not cash flow.** Events are summed into ``bucket_seconds`` buckets of the
   *click's* event time (spend and reviews: their own), so a conversion lands with its
   click, like ``campaign-roi``. A fresh bucket has only part of its conversions; each
   bucket's clicks are weighted by F(age), the share of conversions that arrive within that
   age, from the conversion delays this partition has observed. CVR = conversions / Σ clicks
   × F(age) is then unbiased at any age: the ROI "nowcast" of a window whose clicks have not
   converted yet, without asking the conversion model (which learns a collapse only hours
   later, docs/online-models.md).
2. **Test.** Every ``interval_seconds`` of event time, the recent span (``recent_seconds``)
   is compared with the baseline before it (``baseline_seconds``): z = Δ log ROAS over its
   Poisson standard error, the conversion count the recent spend buys at the baseline
   ROAS (:func:`at_par`) in the denominator. It fires when z ≤ −``z_fire``, ROI fell by at
   least ``min_roi_drop`` (or ROAS by the share ``min_roas_fall``: a losing campaign has
   little ROI left to lose), the recent span spent ``min_spend`` and expected
   ``min_expected_conversions`` conversions, and the baseline had
   ``min_baseline_conversions``. Tiny campaigns never have the evidence.
3. **Explanation.** log ROAS = log CTR + log CVR + log order value − log CPM, exactly
   (ROAS = revenue / spend; every factor from the same sums), each term before and now with
   its share of the change; plus sentiment before/now and the review topics whose share
   among negative reviews grew.
4. **Resolution.** While firing, the baseline is frozen; the alert resolves once the recent
   span is no longer below it (z ≥ ``z_resolve``) for ``resolve_ticks`` ticks.

All of it is changelog state (keys ``al|…``), written when it changes, so alerts are
exactly-once and survive restarts like the windows they come from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from .records import (
    AlertDriver,
    AlertSentiment,
    AlertTopic,
    CampaignAlert,
    ReviewTopics,
    ScoredReview,
)
from .slots import next_slot

ALERT_PREFIX = "al|"
_BUCKET = "al|b|"
_CAMPAIGN = "al|c|"
_CLOCK = "al|clock"
_DELAYS = "al|delays"
_TERMS = "al|terms"


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """The detector's knobs (``STREAM_APP_ALERT_*``, docs/configuration.md)."""

    interval_seconds: float = 60.0
    bucket_seconds: float = 60.0
    recent_seconds: float = 900.0
    baseline_seconds: float = 6 * 3600.0
    review_span_seconds: float = 3600.0
    """Sentiment and topics compare this much recent time with the baseline before it
    (reviews are rarer than conversions)."""
    min_spend: float = 10.0
    min_expected_conversions: float = 10.0
    min_baseline_conversions: float = 30.0
    min_roi_drop: float = 0.25
    min_roas_fall: float = 0.25
    """Or ROAS fell by this share: a campaign at ROAS 0.4 can lose at most 0.4 of ROI."""
    z_fire: float = 3.5
    z_resolve: float = -1.0
    resolve_ticks: int = 3
    order_value_cv: float = 0.6
    """sd / mean of single orders: widens the ROAS standard error beyond the Poisson count."""
    delay_horizon_seconds: float = 3600.0
    """Conversion delays are histogrammed up to this; a bucket older is taken as complete."""
    topics_shown: int = 3


@dataclass(slots=True)
class Bucket:
    """Sums for one campaign and ``bucket_seconds`` of event time."""

    spend: float = 0.0
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    revenue: float = 0.0
    scored_reviews: int = 0
    sentiment_sum: float = 0.0
    negative_reviews: int = 0
    negative_mass: list[float] = field(default_factory=list)

    def to_list(self) -> list[Any]:
        return [
            self.spend,
            self.impressions,
            self.clicks,
            self.conversions,
            self.revenue,
            self.scored_reviews,
            self.sentiment_sum,
            self.negative_reviews,
            self.negative_mass,
        ]

    @classmethod
    def from_list(cls, value: list[Any]) -> Bucket:
        spend, impressions, clicks, conversions, revenue, scored, sentiment, negative, mass = value
        return cls(
            spend,
            impressions,
            clicks,
            conversions,
            revenue,
            scored,
            sentiment,
            negative,
            list(mass),
        )


@dataclass(slots=True)
class Span:
    """Bucket sums over a span, with the delay-weighted clicks."""

    spend: float = 0.0
    impressions: int = 0
    clicks: int = 0
    effective_clicks: float = 0.0
    conversions: int = 0
    revenue: float = 0.0

    def add(self, b: Bucket, completeness: float) -> None:
        self.spend += b.spend
        self.impressions += b.impressions
        self.clicks += b.clicks
        self.effective_clicks += b.clicks * completeness
        self.conversions += b.conversions
        self.revenue += b.revenue

    def factors(self, fallback_order_value: float | None = None) -> dict[str, float] | None:
        """CTR, CVR, order value and CPM (``None`` without spend, impressions or clicks).

        With no conversion, half a conversion at ``fallback_order_value``: log ROAS stays
        finite and the decomposition exact."""
        if self.spend <= 0 or self.impressions <= 0 or self.effective_clicks <= 0:
            return None
        conversions, revenue = float(self.conversions), self.revenue
        if conversions == 0:
            if fallback_order_value is None:
                return None
            conversions, revenue = 0.5, 0.5 * fallback_order_value
        return {
            "ctr": self.clicks / self.impressions,
            "cvr": conversions / self.effective_clicks,
            "order_value": revenue / conversions,
            "cpm": 1000.0 * self.spend / self.impressions,
        }


def roas_of(f: dict[str, float]) -> float:
    """ROAS = CTR × CVR × order value / (CPM / 1000) = revenue / (spend × completeness)."""
    return f["ctr"] * f["cvr"] * f["order_value"] * 1000.0 / f["cpm"]


def decompose(before: dict[str, float], now: dict[str, float]) -> list[AlertDriver]:
    """Each factor's part of Δ log ROAS, largest pull downwards first.

    >>> b = {"ctr": 0.01, "cvr": 0.05, "order_value": 50.0, "cpm": 10.0}
    >>> n = {"ctr": 0.01, "cvr": 0.01, "order_value": 50.0, "cpm": 12.0}
    >>> [(d.name, round(d.share, 3)) for d in decompose(b, n)]
    [('cvr', 0.898), ('cpm', 0.102), ('ctr', 0.0), ('order_value', 0.0)]
    """
    sign = {"ctr": 1.0, "cvr": 1.0, "order_value": 1.0, "cpm": -1.0}
    parts = {k: s * math.log(now[k] / before[k]) + 0.0 for k, s in sign.items()}
    total = sum(parts.values())
    drivers = [
        AlertDriver(
            name=k,  # type: ignore[arg-type]
            before=before[k],
            now=now[k],
            contribution=parts[k],
            share=(parts[k] / total if total else 0.0) + 0.0,
        )
        for k in sign
    ]
    return sorted(drivers, key=lambda d: (d.contribution, d.name))


def drop_z(expected: float, ratio: float, baseline_conversions: float, cv: float) -> float:
    """How many standard errors ROAS fell: ``ratio`` = ROAS now / before, read as the
    conversion count ``expected × ratio`` against ``expected``, on the Poisson's
    variance-stabilising square-root scale (Anscombe), widened for the spread of order
    values and the baseline's own noise. The log scale with variance 1/expected would be
    anti-conservative in the lower tail: 5 conversions against 15 expected is z −4.3
    there, −2.7 here (exact Poisson tail: 0.0028, z −2.8).

    >>> round(drop_z(15.0, 5 / 15, 1e9, 0.0), 2)
    -3.21
    """
    if expected <= 0:
        return 0.0
    seen = expected * ratio
    diff = 2 * (math.sqrt(seen + 0.375) - math.sqrt(expected + 0.375))
    return diff / math.sqrt((1 + cv * cv) * (1 + expected / baseline_conversions))


def at_par(expected: float, before: dict[str, float], now: dict[str, float]) -> float:
    """Conversions the recent spend would have bought at the baseline ROAS: the test's
    null hypothesis (ROAS unchanged) as a count. ``expected`` (the recent clicks at the
    baseline CVR) times the change in cost per click; then ``at_par × ROAS ratio`` is the
    recent revenue in baseline orders, the count whose Poisson noise the test is about.

    Counting at the clicks' scale instead (``expected``) shrinks both sides by the CPC
    change: a CPC × 2.5 with 12 expected conversions read z −2.1, here −3.4 (baseline
    noise aside).

    >>> b = {"ctr": 0.01, "cvr": 0.05, "order_value": 50.0, "cpm": 10.0}
    >>> at_par(12.0, b, {**b, "cpm": 25.0})
    30.0
    """
    cpc_ratio = (now["cpm"] / now["ctr"]) / (before["cpm"] / before["ctr"])
    return expected * cpc_ratio


class DelayDistribution:
    """Histogram of conversion delays (click to conversion), halved when it grows large
    so that it follows a change in how fast customers buy."""

    def __init__(self, bin_seconds: float, horizon_seconds: float) -> None:
        self.bin_seconds = bin_seconds
        self.bins = max(1, math.ceil(horizon_seconds / bin_seconds))
        self.counts = [0.0] * (self.bins + 1)  # the last: beyond the horizon
        self._cdf: list[float] | None = None

    def add(self, delay: float, n: float = 1.0) -> None:
        i = min(max(int(delay // self.bin_seconds), 0), self.bins)
        self.counts[i] += n
        if sum(self.counts) > 20_000:
            self.counts = [c / 2 for c in self.counts]
        self._cdf = None

    def restore(self, counts: list[float]) -> None:
        self.counts = counts
        self._cdf = None

    def completeness(self, age: float) -> float:
        """Share of conversions that have arrived ``age`` seconds after their click.

        Before 50 observed delays, a flat prior over the horizon (never 0, so a cold
        partition does not divide by nothing)."""
        if age <= 0:
            return 0.0
        i = int(age // self.bin_seconds)
        if i >= self.bins:
            return 1.0
        if self._cdf is None:
            prior = max(0.0, 50.0 - sum(self.counts)) / self.bins
            counts = [c + (prior if j < self.bins else 0.0) for j, c in enumerate(self.counts)]
            within = sum(counts[: self.bins]) or 1.0
            acc, cdf = 0.0, []
            for c in counts[: self.bins]:
                acc += c
                cdf.append(acc / within)
            self._cdf = cdf
        lo = self._cdf[i - 1] if i > 0 else 0.0
        frac = (age - i * self.bin_seconds) / self.bin_seconds
        return max(1e-3, lo + (self._cdf[i] - lo) * frac)


@dataclass(slots=True)
class Active:
    """A firing alert and the baseline it was judged against (frozen while it fires)."""

    alert: CampaignAlert
    baseline: Span
    base_order_value: float
    calm_ticks: int = 0

    def to_list(self) -> list[Any]:
        b = self.baseline
        span = [b.spend, b.impressions, b.clicks, b.effective_clicks, b.conversions, b.revenue]
        return [_to_builtins(self.alert), span, self.base_order_value, self.calm_ticks]

    @classmethod
    def from_list(cls, value: list[Any]) -> Active:
        alert, span, order_value, calm = value
        return cls(_alert_from(alert), Span(*span), order_value, calm)


@dataclass(slots=True)
class CampaignAlerts:
    buckets: dict[float, Bucket] = field(default_factory=dict)
    active: Active | None = None
    revision: int = 0


class AlertBook:
    """Every campaign's alert state in one campaign-keyed partition, and its changelog."""

    def __init__(self, config: AlertConfig, currency: str) -> None:
        self.config = config
        self.currency = currency
        self.campaigns: dict[str, CampaignAlerts] = {}
        self.delays = DelayDistribution(config.bucket_seconds, config.delay_horizon_seconds)
        self.topic_terms: dict[int, list[str]] = {}
        self.decided_slot: int | None = None
        self._dirty_buckets: set[tuple[str, float]] = set()
        self._dropped: list[tuple[str, float]] = []
        self._dirty_campaigns: set[str] = set()
        self._delays_changed = False
        self._terms_changed = False
        self._clock_changed = False

    # -- input ----------------------------------------------------------------------------
    def _bucket(self, campaign_id: str, ts: float) -> Bucket:
        start = (ts // self.config.bucket_seconds) * self.config.bucket_seconds
        state = self.campaigns.get(campaign_id)
        if state is None:
            state = self.campaigns[campaign_id] = CampaignAlerts()
        bucket = state.buckets.get(start)
        if bucket is None:
            bucket = state.buckets[start] = Bucket()
        self._dirty_buckets.add((campaign_id, start))
        return bucket

    def observe_spend(self, campaign_id: str, ts: float, amount: float, impressions: int) -> None:
        b = self._bucket(campaign_id, ts)
        b.spend += amount
        b.impressions += impressions

    def observe_clicks(self, campaign_id: str, click_ts: float, clicks: int) -> None:
        self._bucket(campaign_id, click_ts).clicks += clicks

    def observe_conversions(
        self, campaign_id: str, click_ts: float, conversions: int, revenue: float, delay: float
    ) -> None:
        """Conversions of clicks at ``click_ts``, ``delay`` seconds after them."""
        b = self._bucket(campaign_id, click_ts)
        b.conversions += conversions
        b.revenue += revenue
        if conversions > 0:
            self.delays.add(delay, conversions)
            self._delays_changed = True

    def observe_review(self, review: ScoredReview) -> None:
        if review.score is None:
            return
        b = self._bucket(review.campaign_id, review.ts)
        b.scored_reviews += 1
        b.sentiment_sum += review.score
        b.negative_reviews += int(review.score < 0)

    def observe_topics(self, record: ReviewTopics) -> None:
        b = self._bucket(record.campaign_id, record.bucket_start)
        if len(b.negative_mass) < len(record.negative_mass):
            b.negative_mass.extend([0.0] * (len(record.negative_mass) - len(b.negative_mass)))
        for k, m in enumerate(record.negative_mass):
            b.negative_mass[k] += m
        terms = {t.topic: t.terms for t in record.topics}
        if terms != self.topic_terms:
            self.topic_terms = terms
            self._terms_changed = True

    # -- decisions ------------------------------------------------------------------------
    def tick(
        self, watermark: float, conversion_watermark: float, now: float
    ) -> list[CampaignAlert]:
        """Judge every campaign when ``watermark`` enters a new interval; else nothing."""
        slot = next_slot(watermark, self.config.interval_seconds, self.decided_slot)
        if slot is None:
            return []
        self.decided_slot = slot
        self._clock_changed = True
        at = slot * self.config.interval_seconds
        out = []
        for campaign_id in sorted(self.campaigns):
            alert = self.judge(campaign_id, at, min(conversion_watermark, at), now)
            if alert is not None:
                out.append(alert)
            self._expire(campaign_id, at)
        return out

    def _spans(
        self, state: CampaignAlerts, at: float, conversion_watermark: float, recent: float
    ) -> tuple[Span, Span]:
        cfg = self.config
        half = cfg.bucket_seconds / 2
        now_span, base_span = Span(), Span()
        for start, b in state.buckets.items():
            if start + cfg.bucket_seconds > at:
                continue  # not over yet
            completeness = self.delays.completeness(conversion_watermark - start - half)
            if start >= at - recent:
                now_span.add(b, completeness)
            elif start >= at - recent - cfg.baseline_seconds:
                base_span.add(b, completeness)
        return now_span, base_span

    def judge(
        self, campaign_id: str, at: float, conversion_watermark: float, now: float
    ) -> CampaignAlert | None:
        """One campaign at event time ``at``: a firing or resolved alert, or nothing."""
        cfg = self.config
        state = self.campaigns[campaign_id]
        recent, base = self._spans(state, at, conversion_watermark, cfg.recent_seconds)
        if state.active is not None:
            base = state.active.baseline
        before = base.factors()
        if before is None or base.conversions < cfg.min_baseline_conversions:
            return None
        current = recent.factors(fallback_order_value=before["order_value"])
        if current is None:
            return None
        roas_before, roas_now = roas_of(before), roas_of(current)
        expected = recent.effective_clicks * before["cvr"]
        z = drop_z(
            at_par(expected, before, current),
            roas_now / roas_before,
            base.conversions,
            cfg.order_value_cv,
        )
        roi_before, roi_now = roas_before - 1, (roas_now - 1 if recent.conversions else -1.0)
        if state.active is None:
            if not (
                recent.spend >= cfg.min_spend
                and expected >= cfg.min_expected_conversions
                and (
                    roi_before - roi_now >= cfg.min_roi_drop
                    or roas_now <= roas_before * (1 - cfg.min_roas_fall)
                )
                and z <= -cfg.z_fire
            ):
                return None
            state.revision += 1
            alert = self._record(
                campaign_id, state, at, recent, base, before, current, z, roi_before, roi_now, now
            )
            state.active = Active(alert, base, before["order_value"])
            self._dirty_campaigns.add(campaign_id)
            return alert
        active = state.active
        active.calm_ticks = active.calm_ticks + 1 if z >= cfg.z_resolve else 0
        self._dirty_campaigns.add(campaign_id)
        if active.calm_ticks < cfg.resolve_ticks:
            return None
        state.revision += 1
        fresh = self._record(
            campaign_id,
            state,
            at,
            recent,
            base,
            before,
            current,
            z,
            roi_before,
            roi_now,
            now,
            topics_since=active.alert.window_start,
        )
        resolved = msgspec_replace(
            fresh,
            alert_id=active.alert.alert_id,
            state="resolved",
            fired_at=active.alert.fired_at,
            resolved_at=at,
            severity=active.alert.severity,
        )
        state.active = None
        return resolved

    def _record(
        self,
        campaign_id: str,
        state: CampaignAlerts,
        at: float,
        recent: Span,
        base: Span,
        before: dict[str, float],
        current: dict[str, float],
        z: float,
        roi_before: float,
        roi_now: float,
        now: float,
        topics_since: float | None = None,
    ) -> CampaignAlert:
        cfg = self.config
        drivers = decompose(before, current)
        sentiment, topics = self._reviews(state, at, topics_since)
        severity: Literal["page", "ticket"] = "page" if roi_now < 0 else "ticket"
        summary = explain(campaign_id, roi_before, roi_now, drivers, sentiment, topics)
        return CampaignAlert(
            alert_id=f"{campaign_id}@{int(at)}",
            campaign_id=campaign_id,
            state="firing",
            severity=severity,
            revision=state.revision,
            window_start=at - cfg.recent_seconds,
            window_end=at,
            baseline_start=at - cfg.recent_seconds - cfg.baseline_seconds,
            baseline_end=at - cfg.recent_seconds,
            roi_before=round(roi_before, 6),
            roi_now=round(roi_now, 6),
            z_score=round(z, 3),
            spend_now=round(recent.spend, 6),
            conversions_now=recent.conversions,
            expected_conversions_now=round(recent.effective_clicks * before["cvr"], 3),
            currency=self.currency,
            drivers=drivers,
            sentiment=sentiment,
            topics=topics,
            summary=summary,
            fired_at=at,
            emitted_at=now,
        )

    def _reviews(
        self, state: CampaignAlerts, at: float, topics_since: float | None = None
    ) -> tuple[AlertSentiment, list[AlertTopic]]:
        """Sentiment over the review span against the baseline before it, and the topics
        that grew among negative reviews (:meth:`_grown_topics`)."""
        cfg = self.config
        span = max(cfg.review_span_seconds, cfg.recent_seconds)
        sums = {"now": [0, 0.0, 0], "before": [0, 0.0, 0]}
        done = [
            (start, b) for start, b in state.buckets.items() if start + cfg.bucket_seconds <= at
        ]
        for start, b in done:
            if start >= at - span:
                side = "now"
            elif start >= at - span - cfg.baseline_seconds:
                side = "before"
            else:
                continue
            s = sums[side]
            s[0] += b.scored_reviews
            s[1] += b.sentiment_sum
            s[2] += b.negative_reviews

        def mean(s: list[Any], i: int) -> float | None:
            return round(s[i] / s[0], 4) if s[0] else None

        sentiment = AlertSentiment(
            reviews_before=int(sums["before"][0]),
            reviews_now=int(sums["now"][0]),
            mean_before=mean(sums["before"], 1),
            mean_now=mean(sums["now"], 1),
            negative_share_before=mean(sums["before"], 2),
            negative_share_now=mean(sums["now"], 2),
        )
        return sentiment, self._grown_topics(done, at, topics_since)

    def _grown_topics(
        self, done: list[tuple[float, Bucket]], at: float, since: float | None
    ) -> list[AlertTopic]:
        """Topics whose share of the negative reviews' topic mass grew by ≥ 0.05.

        Compared over the window of the evidence: the alert's recent span when it holds
        enough negative reviews (≥ 3 reviews' mass), else the review span; a resolved alert
        from when its window began (at most the review span: older buckets are gone), so
        that it names what rose while it fired. Each against the baseline before it. The
        hour-long span alone diluted a complaint that began with the drop (docs/alerts.md).
        """
        cfg = self.config
        span = max(cfg.review_span_seconds, cfg.recent_seconds)

        def mass(lo: float, hi: float) -> list[float]:
            m: list[float] = []
            for start, b in done:
                if lo <= start < hi:
                    if len(m) < len(b.negative_mass):
                        m.extend([0.0] * (len(b.negative_mass) - len(m)))
                    for k, x in enumerate(b.negative_mass):
                        m[k] += x
            return m

        starts = [at - cfg.recent_seconds, at - span] if since is None else [max(since, at - span)]
        now_m: list[float] = []
        lo = starts[0]
        for lo in starts:
            now_m = mass(lo, at)
            if sum(now_m) >= 3:
                break
        before_m = mass(lo - cfg.baseline_seconds, lo)
        n_now, n_before = sum(now_m), sum(before_m)
        grown: list[AlertTopic] = []
        if n_now >= 3:
            for k, x in enumerate(now_m):
                share_now = x / n_now
                share_before = before_m[k] / n_before if n_before and k < len(before_m) else 0.0
                if share_now - share_before >= 0.05 and x >= 2:
                    grown.append(
                        AlertTopic(
                            topic=k,
                            terms=self.topic_terms.get(k, []),
                            share_before=round(share_before, 4),
                            share_now=round(share_now, 4),
                        )
                    )
        grown.sort(key=lambda t: (t.share_before - t.share_now, t.topic))
        return grown[: cfg.topics_shown]

    def _expire(self, campaign_id: str, at: float) -> None:
        cfg = self.config
        span = max(cfg.review_span_seconds, cfg.recent_seconds) + cfg.baseline_seconds
        state = self.campaigns[campaign_id]
        old = [s for s in state.buckets if s < at - span - cfg.bucket_seconds]
        for start in old:
            del state.buckets[start]
            self._dirty_buckets.discard((campaign_id, start))
            self._dropped.append((campaign_id, start))

    def active(self) -> dict[str, CampaignAlert]:
        """The firing alert of each campaign that has one."""
        return {c: s.active.alert for c, s in self.campaigns.items() if s.active is not None}

    # -- state ----------------------------------------------------------------------------
    def changes(self) -> list[tuple[str, Any]]:
        """Changelog records of what changed since the last call."""
        out: list[tuple[str, Any]] = []
        for campaign_id, start in sorted(self._dirty_buckets):
            bucket = self.campaigns[campaign_id].buckets[start]
            out.append((f"{_BUCKET}{campaign_id}|{start}", bucket.to_list()))
        out.extend((f"{_BUCKET}{c}|{s}", None) for c, s in self._dropped)
        for campaign_id in sorted(self._dirty_campaigns):
            state = self.campaigns[campaign_id]
            active = None if state.active is None else state.active.to_list()
            out.append((f"{_CAMPAIGN}{campaign_id}", [state.revision, active]))
        if self._delays_changed:
            out.append((_DELAYS, self.delays.counts))
        if self._terms_changed:
            out.append((_TERMS, [[k, v] for k, v in sorted(self.topic_terms.items())]))
        if self._clock_changed:
            out.append((_CLOCK, self.decided_slot))
        self._dirty_buckets, self._dropped, self._dirty_campaigns = set(), [], set()
        self._delays_changed = self._terms_changed = self._clock_changed = False
        return out

    def owns(self, key: str) -> bool:
        return key.startswith(ALERT_PREFIX)

    def restore(self, key: str, value: Any) -> None:
        if key == _CLOCK:
            self.decided_slot = value
        elif key == _DELAYS:
            self.delays.restore([float(c) for c in value])
        elif key == _TERMS:
            self.topic_terms = {int(k): list(v) for k, v in value}
        elif key.startswith(_BUCKET):
            campaign_id, start_s = key[len(_BUCKET) :].rsplit("|", 1)
            state = self.campaigns.setdefault(campaign_id, CampaignAlerts())
            if value is None:
                state.buckets.pop(float(start_s), None)
            else:
                state.buckets[float(start_s)] = Bucket.from_list(value)
        elif key.startswith(_CAMPAIGN):
            state = self.campaigns.setdefault(key[len(_CAMPAIGN) :], CampaignAlerts())
            revision, active = value
            state.revision = revision
            state.active = None if active is None else Active.from_list(active)
        else:
            raise ValueError(f"unknown alert state key {key!r}")


_NAMES = {"ctr": "CTR", "cvr": "CVR", "order_value": "order value", "cpm": "cost per mille"}


def explain(
    campaign_id: str,
    roi_before: float,
    roi_now: float,
    drivers: list[AlertDriver],
    sentiment: AlertSentiment,
    topics: list[AlertTopic],
) -> str:
    """One line for people (and the Prometheus label): drivers first, then the reviews."""
    parts = []
    for d in drivers:
        if abs(d.share) < 0.05:
            continue
        change = d.now / d.before - 1
        parts.append(f"{_NAMES[d.name]} {change:+.0%} ({d.share:.0%} of the drop)")
    text = f"{campaign_id}: ROI {roi_before:+.2f} -> {roi_now:+.2f}; " + ", ".join(parts)
    if sentiment.mean_before is not None and sentiment.mean_now is not None:
        text += f"; sentiment {sentiment.mean_before:+.2f} -> {sentiment.mean_now:+.2f}"
    if topics:
        text += "; negative reviews about: " + " | ".join(
            " ".join(t.terms[:4]) or f"topic {t.topic}" for t in topics
        )
    return text


# -- serialisation helpers ----------------------------------------------------------------
def _to_builtins(alert: CampaignAlert) -> Any:
    return msgspec.to_builtins(alert)


def _alert_from(value: Any) -> CampaignAlert:
    return msgspec.convert(value, CampaignAlert)


def msgspec_replace(alert: CampaignAlert, **changes: Any) -> CampaignAlert:
    return msgspec.structs.replace(alert, **changes)
