"""Bid multipliers a bidder can act on, with how sure we are of them (``bid-signals``).

Pure maths, no Kafka: the aggregation stage feeds it spend, clicks and conversions as they
arrive and asks for a decision once per ``interval_seconds`` of event time; the closed-loop
simulation (``tools/bid_simulation.py``) calls the same functions. docs/bidding.md derives
the rule; in short, per campaign:

1. **Evidence** — spend, clicks, conversions and revenue, each weighted by
   ``2 ** (-age / half_life)`` (event time), so the posterior follows a campaign that changes.
   Conversions count when they arrive, not in their click's window: no waiting a
   7-day attribution window for a window to mature.
2. **Posterior** — CVR ~ Beta(prior + conversions, prior + clicks − conversions); mean order
   value ~ Normal around (prior + revenue) / (prior + conversions) with a coefficient of
   variation ``order_value_cv / sqrt(n)``; cost per click is observed. ROAS = CVR × order
   value / CPC, matched to a log-normal by its first two moments.
3. **Multiplier** — the step that would bring ROAS to target if ROAS ∝ multiplier^−β,
   shrunk towards 1 by the credibility ``τ² / (τ² + σ²)`` of ln ROAS, then limited to
   ``max_step`` per decision and to the bounds.
4. **Pause** — when P(ROI < floor), even at the lowest multiplier, reaches
   ``pause_probability``; resume (at the lowest multiplier) once it falls to
   ``resume_probability``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

from .records import BidInputs, BidSignal, BidUncertainty
from .roi import Totals
from .slots import next_slot

TargetKind = Literal["roas", "roi"]
Advice = Literal["run", "pause", "resume", "paused"]
_NORMAL = NormalDist()
_Z90 = _NORMAL.inv_cdf(0.95)  # a central 90 % interval


@dataclass(frozen=True, slots=True)
class BiddingConfig:
    """The rule's knobs (``STREAM_APP_BID_*``, docs/configuration.md)."""

    target_kind: TargetKind = "roas"
    target: float = 1.75
    """In ``target_kind`` units; 1.75 ROAS is the profit optimum under the generator's
    auction response (docs/bidding.md)."""
    targets: Mapping[str, float] = field(default_factory=dict)
    """Per campaign, overriding ``target``."""
    min_multiplier: float = 0.3
    max_multiplier: float = 3.0
    max_step: float = 0.25
    """Largest relative change per decision: 0.25 = ×1.25 up or ÷1.25 down."""
    interval_seconds: float = 900.0
    half_life_seconds: float = 6 * 3600.0
    cpc_elasticity: float = 0.6
    """β in ROAS ∝ multiplier^−β: how much dearer clicks get as the bid rises."""
    prior_cvr: float = 0.02
    prior_clicks: float = 50.0
    order_value_cv: float = 0.5
    """Spread of single orders (sd / mean); the generator's log-normal spreads give 0.2–0.65."""
    prior_conversions: float = 1.0
    credibility_scale: float = 0.5
    """τ: how far (in ln ROAS) the evidence must be sure of before the multiplier moves."""
    floor_roi: float = 0.0
    pause_probability: float = 0.9
    resume_probability: float = 0.5

    def target_roas(self, campaign_id: str) -> float:
        """The campaign's target as ROAS (ROI + 1 when targets are ROI)."""
        target = self.targets.get(campaign_id, self.target)
        return target + 1.0 if self.target_kind == "roi" else target


@dataclass(slots=True)
class Evidence:
    """Exponentially decayed sums as of event time ``as_of`` (money in reporting currency).

    >>> e = Evidence(half_life_seconds=3600.0)
    >>> e.add(ts=0.0, clicks=100, spend=50.0)
    >>> e.add(ts=3600.0, clicks=100, spend=50.0)
    >>> e.clicks, e.spend
    (150.0, 75.0)
    """

    half_life_seconds: float
    as_of: float | None = None
    spend: float = 0.0
    clicks: float = 0.0
    conversions: float = 0.0
    revenue: float = 0.0

    def decay_to(self, ts: float) -> None:
        """Age the sums to ``ts`` (never backwards)."""
        if self.as_of is None:
            self.as_of = ts
        elif ts > self.as_of:
            f = 2.0 ** (-(ts - self.as_of) / self.half_life_seconds)
            self.spend *= f
            self.clicks *= f
            self.conversions *= f
            self.revenue *= f
            self.as_of = ts

    def add(
        self,
        ts: float,
        spend: float = 0.0,
        clicks: float = 0,
        conversions: float = 0,
        revenue: float = 0.0,
    ) -> None:
        """Count events of event time ``ts``; older ones than ``as_of`` count less."""
        self.decay_to(ts)
        assert self.as_of is not None
        w = 2.0 ** (-(self.as_of - ts) / self.half_life_seconds)
        self.spend += w * spend
        self.clicks += w * clicks
        self.conversions += w * conversions
        self.revenue += w * revenue

    def to_list(self) -> list[float | None]:
        return [self.as_of, self.spend, self.clicks, self.conversions, self.revenue]

    @classmethod
    def from_list(cls, half_life_seconds: float, value: list[Any]) -> Evidence:
        as_of, spend, clicks, conversions, revenue = value
        return cls(half_life_seconds, as_of, spend, clicks, conversions, revenue)


@dataclass(frozen=True, slots=True)
class Posterior:
    """What the evidence says about ROAS at the current multiplier."""

    cvr_mean: float
    cvr_sd: float
    order_value_mean: float
    order_value_sd: float
    cpc: float
    roas_mean: float
    log_roas_mean: float
    log_roas_sd: float

    def roas_quantile(self, q: float) -> float:
        return math.exp(self.log_roas_mean + self.log_roas_sd * _NORMAL.inv_cdf(q))

    def p_roas_below(self, roas: float, log_shift: float = 0.0) -> float:
        """P(ROAS × e^log_shift < roas)."""
        if roas <= 0:
            return 0.0
        z = (math.log(roas) - self.log_roas_mean - log_shift) / self.log_roas_sd
        return _NORMAL.cdf(z)


def posterior(
    evidence: Evidence,
    config: BiddingConfig,
    prior_cvr: float | None = None,
    prior_order_value: float | None = None,
) -> Posterior | None:
    """The ROAS posterior, or ``None`` before any spend or click (no CPC to speak of).

    The priors are the campaign's own long run (:func:`long_run_prior`): recent evidence
    is weighed against what the campaign usually does, not against a global guess. Without
    them, ``config.prior_cvr`` and the order value at which it would meet the target.

    >>> cfg = BiddingConfig()
    >>> p = posterior(Evidence(3600.0, 0.0, 100.0, 100.0, 2.0, 175.0), cfg)
    >>> round(p.cvr_mean, 4), round(p.order_value_mean, 2), round(p.roas_mean, 3)
    (0.02, 87.5, 1.75)
    """
    if evidence.clicks <= 0 or evidence.spend <= 0:
        return None
    cpc = evidence.spend / evidence.clicks
    p0 = prior_cvr if prior_cvr is not None and 0 < prior_cvr < 1 else config.prior_cvr
    a = p0 * config.prior_clicks + evidence.conversions
    b = (1 - p0) * config.prior_clicks + max(evidence.clicks - evidence.conversions, 0.0)
    p_mean = a / (a + b)
    p_var = a * b / ((a + b) ** 2 * (a + b + 1))
    if prior_order_value is None or not prior_order_value > 0:
        prior_order_value = config.target_roas("") * cpc / p0
    n = config.prior_conversions + evidence.conversions
    v_mean = (config.prior_conversions * prior_order_value + evidence.revenue) / n
    v_var = (config.order_value_cv * v_mean) ** 2 / n
    mean = p_mean * v_mean / cpc
    second = (p_var + p_mean**2) * (v_var + v_mean**2) / cpc**2
    rel_var = max(second / mean**2 - 1.0, 1e-12)
    sigma2 = math.log1p(rel_var)
    return Posterior(
        cvr_mean=p_mean,
        cvr_sd=math.sqrt(p_var),
        order_value_mean=v_mean,
        order_value_sd=math.sqrt(v_var),
        cpc=cpc,
        roas_mean=mean,
        log_roas_mean=math.log(mean) - sigma2 / 2,
        log_roas_sd=math.sqrt(sigma2),
    )


def long_run_prior(
    clicks: int, conversions: int, revenue: float, config: BiddingConfig
) -> tuple[float, float | None]:
    """(CVR, order value) of a campaign's all-time totals, the CVR smoothed by the prior.

    >>> long_run_prior(0, 0, 0.0, BiddingConfig())
    (0.02, None)
    >>> long_run_prior(950, 30, 1500.0, BiddingConfig())
    (0.031, 50.0)
    """
    k = config.prior_clicks
    cvr = (conversions + config.prior_cvr * k) / (clicks + k)
    return cvr, (revenue / conversions if conversions else None)


@dataclass(frozen=True, slots=True)
class Decision:
    multiplier: float
    paused: bool
    advice: Advice
    credibility: float
    p_below_floor: float
    """P(ROI < floor) at the lowest multiplier: what pausing is decided on."""


def credibility(post: Posterior, config: BiddingConfig) -> float:
    """τ² / (τ² + σ²): 0 with no evidence, 1 with overwhelming evidence."""
    tau2 = config.credibility_scale**2
    return tau2 / (tau2 + post.log_roas_sd**2)


def decide(
    post: Posterior, current: float, paused: bool, target_roas: float, config: BiddingConfig
) -> Decision:
    """The next multiplier and pause advice from the posterior at multiplier ``current``.

    The same observed ROAS of 1.9 (target 1.75) from 400 conversions and from 4, against a
    long run at target (CVR 0.04, order value 43.75):

    >>> cfg = BiddingConfig()
    >>> for n in (10_000, 100):
    ...     seen = Evidence(3600.0, 0.0, spend=n, clicks=n, conversions=n / 25, revenue=1.9 * n)
    ...     post = posterior(seen, cfg, 0.04, 43.75)
    ...     d = decide(post, 1.0, False, 1.75, cfg)
    ...     print(f"{post.roas_mean:.3f} {d.credibility:.2f} {d.multiplier:.3f}")
    1.900 0.99 1.145
    1.870 0.56 1.064
    """
    lo, hi = config.min_multiplier, config.max_multiplier
    beta = config.cpc_elasticity
    floor_roas = 1.0 + config.floor_roi
    # ROAS at the lowest multiplier, if ROAS ∝ m^−β: ln ROAS + β ln(current / lo)
    p_below = post.p_roas_below(floor_roas, beta * math.log(max(current, lo) / lo))
    w = credibility(post, config)
    if paused:
        if p_below <= config.resume_probability:
            return Decision(lo, False, "resume", w, p_below)
        return Decision(current, True, "paused", w, p_below)
    if p_below >= config.pause_probability:
        return Decision(current, True, "pause", w, p_below)
    wanted = math.log(current) + (math.log(post.roas_mean) - math.log(target_roas)) / beta
    step = math.log1p(config.max_step)
    log_m = min(max(w * wanted, math.log(current) - step), math.log(current) + step)
    return Decision(min(max(math.exp(log_m), lo), hi), False, "run", w, p_below)


def naive_multiplier(
    window_roas: float | None, target_roas: float, config: BiddingConfig
) -> float | None:
    """The baseline the simulation compares with: last window's ROAS / target, bounded.

    >>> naive_multiplier(3.5, 1.75, BiddingConfig()), naive_multiplier(None, 1.75, BiddingConfig())
    (2.0, None)
    """
    if window_roas is None:
        return None
    return min(max(window_roas / target_roas, config.min_multiplier), config.max_multiplier)


@dataclass(slots=True)
class CampaignBid:
    """One campaign's bidding state: its evidence and the last decision."""

    evidence: Evidence
    multiplier: float = 1.0
    paused: bool = False
    revision: int = 0

    def to_list(self) -> list[Any]:
        return [self.evidence.to_list(), self.multiplier, self.paused, self.revision]

    @classmethod
    def from_list(cls, half_life_seconds: float, value: list[Any]) -> CampaignBid:
        evidence, multiplier, paused, revision = value
        return cls(Evidence.from_list(half_life_seconds, evidence), multiplier, paused, revision)


BID_KEY_PREFIX = "b|"
BID_CLOCK_KEY = "bid|decided"
Context = Callable[[str], tuple[Totals | None, BidInputs]]
"""A campaign's all-time totals (for the priors) and the ROI figures to report with it."""


class BidBook:
    """Every campaign's bidding state in one campaign-keyed partition, and its changelog.

    Feed it events with :meth:`observe`; call :meth:`tick` with the partition's watermark at
    each commit: once the watermark enters a new ``interval_seconds`` slot it decides every
    campaign with evidence and returns their ``bid-signals`` records. A backlog that jumps
    several slots gets one decision, so one step: the step limit is per decision.
    """

    def __init__(self, config: BiddingConfig, currency: str) -> None:
        self.config = config
        self.currency = currency
        self.campaigns: dict[str, CampaignBid] = {}
        self.decided_slot: int | None = None
        self._unsaved: set[str] = set()
        self._clock_unsaved = False

    def campaign(self, campaign_id: str) -> CampaignBid:
        bid = self.campaigns.get(campaign_id)
        if bid is None:
            bid = self.campaigns[campaign_id] = CampaignBid(Evidence(self.config.half_life_seconds))
        return bid

    def observe(
        self,
        campaign_id: str,
        ts: float,
        spend: float = 0.0,
        clicks: float = 0,
        conversions: float = 0,
        revenue: float = 0.0,
    ) -> None:
        self.campaign(campaign_id).evidence.add(ts, spend, clicks, conversions, revenue)
        self._unsaved.add(campaign_id)

    def tick(self, watermark: float, now: float, context: Context) -> list[BidSignal]:
        """Decide every campaign when ``watermark`` enters a new slot; else nothing."""
        slot = next_slot(watermark, self.config.interval_seconds, self.decided_slot)
        if slot is None:
            return []
        self.decided_slot = slot
        self._clock_unsaved = True
        at = slot * self.config.interval_seconds
        out = []
        for campaign_id in sorted(self.campaigns):
            signal = self.decide(campaign_id, at, now, context)
            if signal is not None:
                out.append(signal)
        return out

    def decide(self, campaign_id: str, at: float, now: float, context: Context) -> BidSignal | None:
        """One campaign's decision at event time ``at`` (``None`` without spend or clicks)."""
        cfg = self.config
        bid = self.campaign(campaign_id)
        bid.evidence.decay_to(at)
        totals, inputs = context(campaign_id)
        if totals is None:
            prior_cvr, prior_value = long_run_prior(0, 0, 0.0, cfg)
        else:
            prior_cvr, prior_value = long_run_prior(
                totals.clicks, totals.conversions, totals.revenue, cfg
            )
        post = posterior(bid.evidence, cfg, prior_cvr, prior_value)
        if post is None:
            return None
        target_roas = cfg.target_roas(campaign_id)
        previous = bid.multiplier
        decision = decide(post, previous, bid.paused, target_roas, cfg)
        bid.multiplier, bid.paused = decision.multiplier, decision.paused
        bid.revision += 1
        self._unsaved.add(campaign_id)
        e = bid.evidence
        return BidSignal(
            campaign_id=campaign_id,
            revision=bid.revision,
            multiplier=round(decision.multiplier, 6),
            previous_multiplier=round(previous, 6),
            paused=decision.paused,
            advice=decision.advice,
            target_kind=cfg.target_kind,
            target=cfg.targets.get(campaign_id, cfg.target),
            target_roas=target_roas,
            floor_roi=cfg.floor_roi,
            currency=self.currency,
            decided_at=at,
            inputs=inputs,
            uncertainty=BidUncertainty(
                spend=round(e.spend, 6),
                clicks=round(e.clicks, 6),
                conversions=round(e.conversions, 6),
                revenue=round(e.revenue, 6),
                cvr_mean=post.cvr_mean,
                cvr_sd=post.cvr_sd,
                order_value_mean=post.order_value_mean,
                order_value_sd=post.order_value_sd,
                cpc=post.cpc,
                roas_mean=post.roas_mean,
                roas_p05=post.roas_quantile(0.05),
                roas_p95=post.roas_quantile(0.95),
                credibility=decision.credibility,
                p_roi_below_floor=decision.p_below_floor,
            ),
            emitted_at=now,
        )

    # -- state ----------------------------------------------------------------------------
    def changes(self) -> list[tuple[str, Any]]:
        """Changelog records of what changed since the last call."""
        out: list[tuple[str, Any]] = [
            (BID_KEY_PREFIX + c, self.campaigns[c].to_list()) for c in sorted(self._unsaved)
        ]
        self._unsaved = set()
        if self._clock_unsaved:
            out.append((BID_CLOCK_KEY, self.decided_slot))
            self._clock_unsaved = False
        return out

    def owns(self, key: str) -> bool:
        return key.startswith(BID_KEY_PREFIX) or key == BID_CLOCK_KEY

    def restore(self, key: str, value: Any) -> None:
        if key == BID_CLOCK_KEY:
            self.decided_slot = value
        else:
            campaign_id = key[len(BID_KEY_PREFIX) :]
            self.campaigns[campaign_id] = CampaignBid.from_list(
                self.config.half_life_seconds, value
            )
