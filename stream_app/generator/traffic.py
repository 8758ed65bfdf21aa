"""Deterministic synthetic traffic: emitted records in emission order, plus exact truth.

Event time is simulated in fixed steps of ``spend_interval_seconds``. Every record gets an
*emission instant* on the same clock (its event time, later for late events, duplicates
and clicks overtaken by their conversion); a heap releases records in emission order as
soon as no later step can produce anything earlier. All randomness comes from one
``random.Random(seed)``, so a scenario always yields byte-identical records.

Lateness is bounded by the scenario so that the processor's own bookkeeping (conversion
grace period, click memory, de-duplication horizon) can always reach the ground truth.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from bisect import bisect
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import msgspec
import orjson

from ..domain.events import Click, Conversion, EventKind, Review, Spend
from ..domain.money import CurrencyTable
from ..settings import DEFAULT_RATES
from .market import Market
from .profiles import BadReason, CampaignProfile, Scenario
from .shocks import COMPLAINT_THEME, Shocks
from .truth import CampaignTruth, GroundTruth


class Emitted(NamedTuple):
    """One record to write: topic kind, key, exact value bytes and event time."""

    topic_kind: EventKind
    key: bytes
    value: bytes
    ts: float
    """Event time of the (intended) event; the Kafka timestamp of valid records."""
    emit_at: float = 0.0
    """Instant on the event-time clock the record is sent at; defines emission order."""
    bad: BadReason | None = None
    """Dead-letter reason the processor must give, for deliberately bad records."""
    duplicate: bool = False

    @property
    def timestamp_ms(self) -> int | None:
        """Kafka message timestamp: the event time for valid events, else the broker's."""
        if self.bad is not None or not (math.isfinite(self.ts) and self.ts >= 0):
            return None
        return round(self.ts * 1000)


class ClickTruth(NamedTuple):
    """Side output per click, never in the event: what an online model should learn."""

    click_id: str
    campaign_id: str
    ts: float
    p_true: float
    expected_value: float
    """p_true × mean order value, in the reporting currency."""
    converted: bool
    """Whether a conversion attributable to this click was emitted."""


TruthHook = Callable[[ClickTruth], None]

# (name, weight, p(conversion) multiplier); weighted means are ≈ 1
_DEVICES = (("mobile", 0.6, 0.85), ("desktop", 0.32, 1.3), ("tablet", 0.08, 1.0))
_GEOS = (
    ("US", 0.45, 1.1),
    ("GB", 0.15, 1.0),
    ("DE", 0.12, 0.95),
    ("FR", 0.10, 0.9),
    ("CA", 0.10, 1.0),
    ("AU", 0.08, 0.9),
)
_PLACEMENTS = {
    "search": (("top", 0.7, 1.15), ("side", 0.3, 0.65)),
    "social": (("feed", 0.65, 1.1), ("stories", 0.35, 0.8)),
    "display": (("banner", 0.5, 0.9), ("sidebar", 0.3, 0.8), ("native", 0.2, 1.5)),
    "video": (("preroll", 0.6, 1.1), ("midroll", 0.4, 0.85)),
}
_USER_POOL = 50_000
_P_MAX = 0.9
_UNKNOWN_CURRENCIES = ("XTS", "XXX", "ZZZ", "QQQ")
_MONEY_ONLY: frozenset[BadReason] = frozenset(
    {"unknown_currency", "negative_amount", "non_finite_amount"}
)
_NON_FINITE = (b"NaN", b"Infinity", b"-Infinity", b"1e999")

_encode = msgspec.json.Encoder().encode


class _Table(NamedTuple):
    names: tuple[str, ...]
    mults: tuple[float, ...]
    cum: tuple[float, ...]

    @classmethod
    def of(cls, rows: tuple[tuple[str, float, float], ...]) -> _Table:
        return cls(
            tuple(r[0] for r in rows),
            tuple(r[2] for r in rows),
            tuple(itertools.accumulate(r[1] for r in rows)),
        )

    def pick(self, u: float) -> int:
        """Index for a uniform draw ``u`` in [0, 1)."""
        return min(bisect(self.cum, u * self.cum[-1]), len(self.names) - 1)


_DEVICE_T = _Table.of(_DEVICES)
_GEO_T = _Table.of(_GEOS)
_PLACEMENT_T = {channel: _Table.of(rows) for channel, rows in _PLACEMENTS.items()}


class TrafficGenerator:
    """Iterate to get :class:`Emitted` records; ``truth`` is complete when exhausted.

    Each iteration starts over from the seed and rebuilds ``truth``. ``on_click`` receives
    a :class:`ClickTruth` per click (in generation order, not emission order). With
    ``window_size_seconds``, ``windows`` holds the same truth per campaign and tumbling
    event-time window (a conversion in its click's window), as ``campaign-roi`` should show
    it when no event is late. With a ``market``, bids move each campaign's clicks and cost
    per click (``market.py``); without one the output is the same as before markets existed.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        on_click: TruthHook | None = None,
        currencies: CurrencyTable | None = None,
        window_size_seconds: int | None = None,
        market: Market | None = None,
        shocks: Shocks | None = None,
    ) -> None:
        self.scenario = scenario
        self.market = market
        self.shocks = shocks
        self.profiles = scenario.profiles()
        self.currencies = currencies or CurrencyTable(DEFAULT_RATES, "USD")
        missing = {p.currency for p in self.profiles if p.currency not in self.currencies}
        if missing:
            raise ValueError(f"currency table has no rate for {sorted(missing)}")
        self.on_click = on_click
        self.truth = self.fresh_truth()
        self.window_size_seconds = window_size_seconds
        self.windows: dict[tuple[str, float], CampaignTruth] = {}
        """(campaign_id, window_start) -> totals; filled with ``window_size_seconds``."""

    def fresh_truth(self) -> GroundTruth:
        """An empty ground truth for this scenario, every campaign present."""
        truth = GroundTruth(
            currency=self.currencies.reporting,
            attribution_window_seconds=self.scenario.attribution_window_seconds,
            scenario=self.scenario,
            profiles=list(self.profiles),
        )
        for p in self.profiles:
            truth.campaign(p.campaign_id)
        return truth

    def __iter__(self) -> Iterator[Emitted]:
        return _Run(self).records()


class _Run:
    """One pass over the scenario; holds the mutable state of the simulation."""

    def __init__(self, gen: TrafficGenerator) -> None:
        s = self.s = gen.scenario
        self.rng = random.Random(s.seed)
        self.table = gen.currencies
        self.on_click = gen.on_click
        self.truth = gen.truth = gen.fresh_truth()
        gen.windows = {}
        self.window_size = gen.window_size_seconds
        self.windows = gen.windows
        self.scratch = CampaignTruth()  # what window() gives without window sizes
        self.profiles = gen.profiles
        self.market = gen.market
        self.shocks = gen.shocks
        self.cpc_factor: dict[str, float] = {}
        self.run = format(s.seed % 2**32, "x")
        self.heap: list[tuple[float, int, Emitted]] = []
        self.seq = itertools.count()
        self.n = itertools.count(1)
        window = s.attribution_window_seconds
        self.delay_cap = min(s.conversion_delay_cap_seconds, window)
        self.horizon_end = s.end_ts + s.conversion_delay_cap_seconds + 1.0
        self.overshoot_max = s.outside_window_overshoot_max
        unknown = [c for c in _UNKNOWN_CURRENCIES if c not in self.table]
        self.unknown_currencies = unknown
        self.bad_for: dict[str, tuple[BadReason, ...]] = {
            kind: tuple(
                r
                for r in s.bad_reasons
                if (kind in ("conversion", "spend") or r not in _MONEY_ONLY)
                and (r != "unknown_currency" or unknown)
            )
            for kind in ("click", "conversion", "spend", "review")
        }

    def window(self, campaign_id: str, ts: float) -> CampaignTruth:
        """The truth of the window holding ``ts``; a scratch one without window sizes."""
        if self.window_size is None:
            return self.scratch
        start = (ts // self.window_size) * float(self.window_size)
        found = self.windows.get((campaign_id, start))
        if found is None:
            found = self.windows[(campaign_id, start)] = CampaignTruth()
        return found

    # -- emission -----------------------------------------------------------------------
    def push(self, record: Emitted) -> None:
        heapq.heappush(self.heap, (record.emit_at, next(self.seq), record))
        self.truth.add_emitted(record.topic_kind)

    def emit(
        self,
        kind: EventKind,
        key: bytes,
        event: msgspec.Struct,
        ts: float,
        emit_at: float | None = None,
    ) -> None:
        """Schedule a valid event, maybe late, maybe duplicated, maybe with a bad sibling."""
        s, rng = self.s, self.rng
        value = _encode(event)
        if emit_at is None:
            late = s.late_share > 0 and rng.random() < s.late_share
            emit_at = ts + rng.uniform(1.0, s.late_max_seconds) if late else ts
        self.push(Emitted(kind, key, value, ts, emit_at))
        if s.duplicate_share > 0 and rng.random() < s.duplicate_share:
            later = emit_at + rng.uniform(0.1, s.duplicate_max_delay_seconds)
            self.push(Emitted(kind, key, value, ts, later, duplicate=True))
            self.truth.add_duplicate(kind)
        if s.bad_share > 0 and rng.random() < s.bad_share and self.bad_for[kind]:
            reason = rng.choice(self.bad_for[kind])
            bad = self.corrupt(kind, event, reason)
            self.push(Emitted(kind, key, bad, ts, ts, bad=reason))
            self.truth.add_bad(reason)

    def corrupt(self, kind: EventKind, event: msgspec.Struct, reason: BadReason) -> bytes:
        """Bytes of a sibling of ``event`` the processor must reject for ``reason``."""
        rng = self.rng
        obj: dict[str, Any] = msgspec.to_builtins(event)
        obj["event_id"] = f"bad{self.run}-{next(self.n)}"
        money = "revenue" if kind == "conversion" else "amount"
        if reason == "bad_json":
            data = orjson.dumps(obj)
            variant = rng.randrange(3)
            if variant == 0:
                return data[: rng.randrange(1, len(data) - 1)]
            return data[:-1] + b",}" if variant == 1 else b"\xff" + data
        if reason == "schema_violation":
            field, value = rng.choice(_VIOLATIONS[kind])
            if value is _DROP:
                del obj[field]
            else:
                obj[field] = value
            return orjson.dumps(obj)
        if reason == "unknown_currency":
            obj["currency"] = rng.choice(self.unknown_currencies)
        elif reason == "negative_amount":
            obj[money] = -round(rng.uniform(0.01, 100.0), 2)
        else:  # non_finite_amount: tokens only a lenient JSON parser accepts
            obj[money] = "__NF__"
            return orjson.dumps(obj).replace(b'"__NF__"', rng.choice(_NON_FINITE))
        return orjson.dumps(obj)

    def release(self, before: float) -> Iterator[Emitted]:
        heap = self.heap
        while heap and heap[0][0] < before:
            yield heapq.heappop(heap)[2]

    # -- simulation ---------------------------------------------------------------------
    def records(self) -> Iterator[Emitted]:
        if self.market is not None:
            yield from self.market_records(self.market)
            return
        s, rng = self.s, self.rng
        step = s.spend_interval_seconds
        review_rate = s.reviews_per_minute / 60.0
        total_weight = sum(p.traffic_weight for p in self.profiles)
        rates = [s.clicks_per_second * p.traffic_weight / total_weight for p in self.profiles]
        next_click = [s.start_ts + _gap(rng, r) for r in rates]
        next_review = [s.start_ts + _gap(rng, review_rate) for _ in self.profiles]
        t = s.start_ts
        while t < s.end_ts:
            t1 = min(t + step, s.end_ts)
            for i, profile in enumerate(self.profiles):
                clicks = 0
                rate = rates[i]
                if self.shocks is not None:  # docs/alerts.md; without: as before, exactly
                    rate *= self.shocks.click_factor(profile.campaign_id, t)
                while next_click[i] < t1:
                    self.click(profile, round(next_click[i], 3))
                    clicks += 1
                    next_click[i] += _gap(rng, rate)
                while next_review[i] < t1:
                    self.review(profile, round(next_review[i], 3))
                    next_review[i] += _gap(rng, review_rate)
                self.spend(profile, clicks, max(t, round(t1 - 0.001, 3)))
            # later steps only produce records at or after t1 (less ms rounding)
            yield from self.release(t1 - 0.001)
            t = t1
        yield from self.release(math.inf)

    def market_records(self, market: Market) -> Iterator[Emitted]:
        """As :meth:`records`, with each campaign's click rate and cost per click set by its
        bid at the start of every spend interval (a Poisson process is memoryless, so
        drawing afresh from each interval's start keeps it one)."""
        s, rng = self.s, self.rng
        step = s.spend_interval_seconds
        review_rate = s.reviews_per_minute / 60.0
        total_weight = sum(p.traffic_weight for p in self.profiles)
        rates = [s.clicks_per_second * p.traffic_weight / total_weight for p in self.profiles]
        next_review = [s.start_ts + _gap(rng, review_rate) for _ in self.profiles]
        t = s.start_ts
        while t < s.end_ts:
            t1 = min(t + step, s.end_ts)
            for i, profile in enumerate(self.profiles):
                bid = market.bids(profile.campaign_id, t)
                self.cpc_factor[profile.campaign_id] = market.response.cpc(bid)
                rate = rates[i] * market.response.clicks(bid)
                clicks = 0
                next_click = t + _gap(rng, rate)
                while next_click < t1:
                    self.click(profile, round(next_click, 3))
                    clicks += 1
                    next_click += _gap(rng, rate)
                while next_review[i] < t1:
                    self.review(profile, round(next_review[i], 3))
                    next_review[i] += _gap(rng, review_rate)
                if clicks or bid > 0:
                    self.spend(profile, clicks, max(t, round(t1 - 0.001, 3)))
            yield from self.release(t1 - 0.001)
            t = t1
        yield from self.release(math.inf)

    def click(self, p: CampaignProfile, ts: float) -> None:
        s, rng, run = self.s, self.rng, self.run
        n = next(self.n)
        click_id = f"clk{run}-{n}"
        key = click_id.encode()
        placements = _PLACEMENT_T[p.channel]
        d = _DEVICE_T.pick(rng.random())
        g = _GEO_T.pick(rng.random())
        pl = placements.pick(rng.random())
        cr = rng.randrange(len(p.creatives))
        prob = p.cvr * _DEVICE_T.mults[d] * _GEO_T.mults[g] * placements.mults[pl]
        prob *= p.creatives[cr]
        collapse_ts = s.collapse_ts
        if collapse_ts is not None and p.campaign_id == s.collapse_campaign and ts >= collapse_ts:
            prob *= s.collapse_factor
        if self.market is not None:
            prob *= self.market.cvr_factor(p.campaign_id, ts)
        if self.shocks is not None:
            prob *= self.shocks.cvr_factor(p.campaign_id, ts)
        prob = min(prob, _P_MAX)
        click = Click(
            schema_version=1,
            event_id=f"ev{run}-{n}",
            click_id=click_id,
            campaign_id=p.campaign_id,
            channel=p.channel,
            user_id=f"u{run}-{rng.randrange(_USER_POOL)}",
            ts=ts,
            device=_DEVICE_T.names[d],
            geo=_GEO_T.names[g],
            placement=placements.names[pl],
            creative=f"{p.campaign_id}-cr{cr + 1}",
        )
        self.truth.campaign(p.campaign_id).clicks += 1
        self.window(p.campaign_id, ts).clicks += 1
        click_emit_at = None
        attributed = False
        if rng.random() < prob:
            attributed, click_emit_at = self.conversion(p, click_id, ts)
        self.emit("click", key, click, ts, click_emit_at)
        if self.on_click is not None:
            aov = self.table.to_reporting(p.aov, p.currency)
            self.on_click(ClickTruth(click_id, p.campaign_id, ts, prob, prob * aov, attributed))

    def conversion(
        self, p: CampaignProfile, click_id: str, click_ts: float
    ) -> tuple[bool, float | None]:
        """Convert a click; returns (attributed, emission instant forced on the click)."""
        s, rng = self.s, self.rng
        window = s.attribution_window_seconds
        r = rng.random()
        early = False
        if r < s.outside_window_share:
            delay = window + rng.uniform(1.0, self.overshoot_max)
        elif r < s.outside_window_share + s.early_conversion_share:
            delay, early = rng.uniform(0.2, 3.0), True
        else:
            delay = min(rng.expovariate(1.0 / s.conversion_delay_mean_seconds), self.delay_cap)
        ts = round(click_ts + delay, 3)
        if s.orphan_share > 0 and rng.random() < s.orphan_share:
            self.orphan(p, round(click_ts + rng.uniform(1.0, 120.0), 3))
        if ts > self.horizon_end:  # beyond what this run observes
            return False, None
        revenue = self.revenue(p, click_ts)
        money = self.table.to_reporting(revenue, p.currency)
        event = Conversion(
            schema_version=1,
            event_id=f"cv{self.run}-{next(self.n)}",
            click_id=click_id,
            revenue=revenue,
            currency=p.currency,
            ts=ts,
        )
        # exactly the processor's test, on the same floats
        attributed = not ts - click_ts > window
        if attributed:
            for c in (self.truth.campaign(p.campaign_id), self.window(p.campaign_id, click_ts)):
                c.conversions += 1
                c.revenue += money
        else:
            self.truth.add_unattributed("outside_window", money)
        if early:  # sent on time, its click a moment later: it must wait for the click
            self.emit("conversion", click_id.encode(), event, ts, emit_at=ts)
            return attributed, ts + rng.uniform(0.05, 2.0)
        self.emit("conversion", click_id.encode(), event, ts)
        return attributed, None

    def orphan(self, p: CampaignProfile, ts: float) -> None:
        """A conversion whose click never exists (a broken postback, another advertiser)."""
        n = next(self.n)
        click_id = f"clk{self.run}-o{n}"
        revenue = self.revenue(p)
        event = Conversion(
            schema_version=1,
            event_id=f"cv{self.run}-{n}",
            click_id=click_id,
            revenue=revenue,
            currency=p.currency,
            ts=ts,
        )
        self.truth.add_unattributed("unknown_click", self.table.to_reporting(revenue, p.currency))
        self.emit("conversion", click_id.encode(), event, ts)

    def revenue(self, p: CampaignProfile, click_ts: float | None = None) -> float:
        """Log-normal order value with mean ``aov``, in the campaign's currency."""
        sigma = p.aov_spread
        factor = math.exp(self.rng.gauss(0.0, sigma) - sigma * sigma / 2)
        if self.shocks is not None and click_ts is not None:
            factor *= self.shocks.order_value_factor(p.campaign_id, click_ts)
        return max(0.01, round(p.aov * factor, 2))

    def spend(self, p: CampaignProfile, clicks: int, ts: float) -> None:
        rng = self.rng
        cpc = p.cpc * self.cpc_factor.get(p.campaign_id, 1.0)  # exactly p.cpc without bids
        if self.shocks is not None:
            cpc *= self.shocks.cpc_factor(p.campaign_id, ts)
        amount = round(clicks * cpc * rng.uniform(0.9, 1.1), 2)
        impressions = max(clicks, round((clicks + rng.uniform(-0.5, 0.5)) / p.ctr))
        event = Spend(
            schema_version=1,
            event_id=f"sp{self.run}-{next(self.n)}",
            campaign_id=p.campaign_id,
            channel=p.channel,
            amount=amount,
            currency=p.currency,
            impressions=impressions,
            ts=ts,
        )
        for c in (self.truth.campaign(p.campaign_id), self.window(p.campaign_id, ts)):
            c.spend += self.table.to_reporting(amount, p.currency)
            c.impressions += impressions
        self.emit("spend", p.campaign_id.encode(), event, ts)

    def review(self, p: CampaignProfile, ts: float) -> None:
        rng = self.rng
        mood = p.review_tone + rng.gauss(0.0, 0.45)
        theme = False
        if self.shocks is not None:
            mood += self.shocks.tone(p.campaign_id, ts)
            theme = self.shocks.theme(p.campaign_id, ts)
        tone = "positive" if mood > 0.3 else "negative" if mood < -0.3 else "neutral"
        rating: int | None = _rating(rng, tone)
        if rng.random() < 0.1:
            rating = None  # the field is optional; some sources do not send it
        event = Review(
            schema_version=1,
            event_id=f"rv{self.run}-{next(self.n)}",
            campaign_id=p.campaign_id,
            text=review_text(rng, tone, p.product, theme),
            ts=ts,
            rating=rating,
        )
        self.truth.campaign(p.campaign_id).reviews += 1
        self.window(p.campaign_id, ts).reviews += 1
        self.emit("review", p.campaign_id.encode(), event, ts)


def _gap(rng: random.Random, rate: float) -> float:
    """Waiting time to the next event of a Poisson process (never, at rate 0)."""
    return rng.expovariate(rate) if rate > 0 else math.inf


# -- bad events -------------------------------------------------------------------------
_DROP = object()
_COMMON_VIOLATIONS: tuple[tuple[str, object], ...] = (
    ("ts", _DROP),
    ("ts", "yesterday"),
    ("ts", -1.0),
    ("event_id", ""),
    ("event_id", _DROP),
)
_VIOLATIONS: dict[str, tuple[tuple[str, object], ...]] = {
    "click": (*_COMMON_VIOLATIONS, ("click_id", _DROP), ("user_id", None), ("channel", 42)),
    "conversion": (
        *_COMMON_VIOLATIONS,
        ("click_id", _DROP),
        ("revenue", "12.50"),
        ("currency", "usd"),
        ("currency", _DROP),
    ),
    "spend": (
        *_COMMON_VIOLATIONS,
        ("impressions", -3),
        ("impressions", 1.5),
        ("amount", _DROP),
        ("currency", "dollars"),
    ),
    "review": (*_COMMON_VIOLATIONS, ("rating", 7), ("rating", 0), ("text", None)),
}


# -- reviews ----------------------------------------------------------------------------
_TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "positive": (
        (
            "Absolutely love this {product}.",
            "Really happy with my new {product}.",
            "Great {product}, it exceeded my expectations.",
            "Five stars for this {product}!",
            "Best {product} I have bought in years.",
        ),
        (
            "Shipping was fast and the packaging was neat.",
            "The quality feels premium for the price.",
            "Setup took two minutes and it just works.",
            "Customer support answered within an hour.",
            "It looks even better than in the ad.",
        ),
        (
            "Would definitely recommend it.",
            "Already ordered a second one as a gift.",
            "Worth every penny.",
            "I will buy from this brand again.",
            "",
        ),
    ),
    "negative": (
        (
            "Very disappointed with this {product}.",
            "The {product} broke after a week.",
            "Do not buy this {product}.",
            "Terrible {product}, nothing like the ad.",
            "I regret ordering this {product}.",
        ),
        (
            "Delivery took three weeks and the box was damaged.",
            "The material feels cheap and flimsy.",
            "Customer service never replied to my emails.",
            "It stopped working after a few uses.",
            "The colours are completely different from the photos.",
        ),
        ("Waste of money.", "I am sending it back.", "Avoid.", "Would not recommend.", ""),
    ),
    "neutral": (
        (
            "The {product} is okay.",
            "Decent {product} for the price.",
            "This {product} does what it says.",
            "An average {product}, nothing special.",
            "The {product} arrived on time.",
        ),
        (
            "Some parts feel solid, others less so.",
            "Delivery was on schedule.",
            "It took a while to get used to it.",
            "The instructions could be clearer.",
            "It is similar to the one I had before.",
        ),
        (
            "Might buy again if it is on sale.",
            "Fine for everyday use.",
            "Three stars seems fair.",
            "",
        ),
    ),
}


def review_text(rng: random.Random, tone: str, product: str, theme: bool = False) -> str:
    """An English review of ``product`` in ``tone`` (positive, negative or neutral).

    >>> review_text(random.Random(1), "negative", "blender").split(". ")[0]
    'The blender broke after a week'
    """
    openers, details, closers = _TEMPLATES[tone]
    if theme and tone == "negative":  # the shocks' new complaint, in place of the usual ones
        details = COMPLAINT_THEME
    parts = [rng.choice(openers).format(product=product), rng.choice(details), rng.choice(closers)]
    return " ".join(part for part in parts if part)


def _rating(rng: random.Random, tone: str) -> int:
    if tone == "positive":
        return 5 if rng.random() < 0.6 else 4
    if tone == "negative":
        return 1 if rng.random() < 0.6 else 2
    return 3 if rng.random() < 0.7 else rng.choice((2, 4))


def live_rate(scenario: Scenario) -> float:
    """Records per wall-clock second that keep event time moving with the wall clock.

    Start the scenario at ``time.time()`` and send at this rate, and its events look live
    (the demo and ``stream-app generate --live``).
    """
    return estimate_records(scenario) / scenario.duration_seconds


def estimate_records(scenario: Scenario) -> int:
    """Roughly how many records a scenario emits (for progress bars, not for checks)."""
    s = scenario
    profiles = s.profiles()
    weight = sum(p.traffic_weight for p in profiles)
    cvr = sum(p.cvr * p.traffic_weight for p in profiles) / weight
    clicks = s.clicks_per_second * s.duration_seconds
    steps = math.ceil(s.duration_seconds / s.spend_interval_seconds)
    reviews = s.n_campaigns * s.reviews_per_minute / 60.0 * s.duration_seconds
    valid = clicks * (1 + cvr * (1 + s.orphan_share)) + s.n_campaigns * steps + reviews
    return round(valid * (1 + s.duplicate_share + s.bad_share))
