"""Closed-loop bidding: does ``bid-signals`` make money? (docs/bidding.md)

Each run generates seeded multi-day traffic with the generator's auction response
(``stream_app.generator.market``): every campaign's clicks and cost per click follow the
multiplier its simulated bidder sets. Three bidders see the same scenario and seed:

* ``fixed`` — multiplier 1 throughout;
* ``naive`` — every interval, multiplier = last interval's ROAS / target (revenue of the
  conversions that arrived in it over its spend), within the same bounds, no step limit;
* ``bayes`` — the product's rule: the records ``bid-signals`` would carry, from the very
  functions the aggregation stage calls (``stream_app.domain.bidding.BidBook``), applied
  as they come; a paused campaign bids only 1 interval in 20 (at the lowest multiplier), so
  the posterior can see it recover.

It runs in-process and in event time (no Kafka): the domain core is what decides, and the
aggregation stage's Kafka path is tested on its own (tests/integration/test_bid_signals.py).
Profit and ROI come from the generator's ground truth.

    python tools/bid_simulation.py                     # the table in docs/bidding.md
    python tools/bid_simulation.py --plot docs/bidding.png --seeds 3 --days 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from stream_app.domain.bidding import BidBook, BiddingConfig, naive_multiplier
from stream_app.domain.events import Click, Conversion, Spend
from stream_app.domain.records import BidInputs
from stream_app.domain.roi import Totals
from stream_app.generator import Scenario, TrafficGenerator
from stream_app.generator.market import AuctionResponse, Market, Shock
from stream_app.generator.profiles import CampaignProfile

POLICIES = ("fixed", "naive", "bayes")
DAY = 86400.0
PROBE_EVERY = 20
_click = msgspec.json.Decoder(Click).decode
_conversion = msgspec.json.Decoder(Conversion).decode
_spend = msgspec.json.Decoder(Spend).decode


@dataclass(frozen=True)
class Case:
    """One scenario of the table: traffic knobs and conversion shocks."""

    name: str
    what: str
    campaigns: int
    clicks_per_second: float
    shock: Callable[[Scenario, list[CampaignProfile]], tuple[Shock, ...]] = lambda s, p: ()


def _best(profiles: list[CampaignProfile]) -> str:
    """The campaign that earns most at multiplier 1: the one whose loss hurts most."""
    return max(profiles, key=lambda p: p.traffic_weight * (p.expected_roas - 1)).campaign_id


def _collapse(s: Scenario, p: list[CampaignProfile]) -> tuple[Shock, ...]:
    return (Shock(_best(p), s.start_ts + DAY, None, 0.2),)


def _collapse_and_recover(s: Scenario, p: list[CampaignProfile]) -> tuple[Shock, ...]:
    return (Shock(_best(p), s.start_ts + DAY, s.start_ts + 2 * DAY, 0.2),)


CASES = (
    Case("steady", "8 campaigns, ROAS at ×1 from 0.45 to 3.0", 8, 2.0),
    Case("collapse", "the best campaign's CVR ×0.2 from day 1 on", 8, 2.0, _collapse),
    Case("recovery", "the same collapse, over at day 2", 8, 2.0, _collapse_and_recover),
    Case("noisy-small", "24 campaigns at ~0.4 conversions per hour each", 24, 0.4),
)


@dataclass
class Bidder:
    """Applies one policy's multipliers to the market as its decisions come."""

    policy: str
    config: BiddingConfig
    currency_to_reporting: Callable[[float, str], float]
    applied: dict[str, float] = field(default_factory=dict)
    paused: dict[str, bool] = field(default_factory=dict)
    slot: int = -1
    book: BidBook = field(init=False)
    totals: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    interval: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    click_campaign: dict[str, str] = field(default_factory=dict)
    trace: list[tuple[float, str, float]] = field(default_factory=list)
    """(event time, campaign, applied multiplier) at each decision, for the plot."""

    def __post_init__(self) -> None:
        self.book = BidBook(self.config, "USD")

    def bid(self, campaign_id: str, ts: float) -> float:
        if self.paused.get(campaign_id):
            slot = math.floor(ts / self.config.interval_seconds)
            return self.config.min_multiplier if slot % PROBE_EVERY == 0 else 0.0
        return self.applied.get(campaign_id, 1.0)

    def observe(self, kind: str, value: bytes) -> None:
        if kind == "click":
            click = _click(value)
            self.click_campaign[click.click_id] = click.campaign_id
            self.book.observe(click.campaign_id, click.ts, clicks=1)
            self.totals[click.campaign_id].clicks += 1
        elif kind == "conversion":
            conversion = _conversion(value)
            campaign_id = self.click_campaign.get(conversion.click_id)
            if campaign_id is None:
                return
            money = self.currency_to_reporting(conversion.revenue, conversion.currency)
            self.book.observe(campaign_id, conversion.ts, conversions=1, revenue=money)
            totals = self.totals[campaign_id]
            totals.conversions += 1
            totals.revenue += money
            self.interval[campaign_id][1] += money
        elif kind == "spend":
            spend = _spend(value)
            money = self.currency_to_reporting(spend.amount, spend.currency)
            self.book.observe(spend.campaign_id, spend.ts, spend=money)
            self.interval[spend.campaign_id][0] += money

    def tick(self, ts: float) -> None:
        slot = math.floor(ts / self.config.interval_seconds)
        if slot <= self.slot:
            return
        self.slot = slot
        if self.policy == "naive":
            for campaign_id, (spend, revenue) in self.interval.items():
                roas = revenue / spend if spend > 0 else None
                m = naive_multiplier(roas, self.config.target_roas(campaign_id), self.config)
                if m is not None:
                    self.applied[campaign_id] = m
            self.interval.clear()
        elif self.policy == "bayes":
            for signal in self.book.tick(ts, ts, self._context):
                self.applied[signal.campaign_id] = signal.multiplier
                self.paused[signal.campaign_id] = signal.paused
        for campaign_id in sorted(self.totals):
            self.trace.append((ts, campaign_id, self.bid(campaign_id, ts)))

    def _context(self, campaign_id: str) -> tuple[Totals | None, BidInputs]:
        return self.totals.get(campaign_id), BidInputs()


@dataclass(frozen=True)
class Result:
    case: str
    policy: str
    seed: int
    spend: float
    revenue: float
    trace: list[tuple[float, str, float]]
    shocked: str | None
    hourly_profit: list[float]

    @property
    def profit(self) -> float:
        return self.revenue - self.spend

    @property
    def roi(self) -> float:
        return self.profit / self.spend if self.spend else math.nan


def simulate(case: Case, policy: str, seed: int, days: float, config: BiddingConfig) -> Result:
    scenario = Scenario(
        seed=seed,
        n_campaigns=case.campaigns,
        duration_seconds=days * DAY,
        clicks_per_second=case.clicks_per_second,
        spend_interval_seconds=60.0,
        reviews_per_minute=0.0,
        outside_window_share=0.0,
        early_conversion_share=0.0,
        orphan_share=0.0,
        late_share=0.0,
        duplicate_share=0.0,
        bad_share=0.0,
    )
    shocks = case.shock(scenario, scenario.profiles())
    holder: list[Bidder] = []
    market = Market(bids=lambda c, ts: holder[0].bid(c, ts), shocks=shocks)
    gen = TrafficGenerator(scenario, market=market)
    bidder = Bidder(policy, config, gen.currencies.to_reporting)
    holder.append(bidder)
    hours = math.ceil(days * 24) + 1
    hourly = [0.0] * hours
    for record in gen:
        bidder.tick(record.emit_at)
        bidder.observe(record.topic_kind, record.value)
        hour = min(int((record.ts - scenario.start_ts) // 3600), hours - 1)
        if record.topic_kind == "spend":
            s = _spend(record.value)
            hourly[hour] -= gen.currencies.to_reporting(s.amount, s.currency)
        elif record.topic_kind == "conversion":
            c = _conversion(record.value)
            hourly[hour] += gen.currencies.to_reporting(c.revenue, c.currency)
    spend = sum(c.spend for c in gen.truth.campaigns.values())
    revenue = sum(c.revenue for c in gen.truth.campaigns.values())
    shocked = shocks[0].campaign_id if shocks else None
    return Result(case.name, policy, seed, spend, revenue, bidder.trace, shocked, hourly)


def table(results: list[Result]) -> str:
    """Markdown: per scenario and bidder, mean over seeds of spend, revenue, profit, ROI."""
    lines = [
        "| scenario | bidder | spend | revenue | profit | ROI | profit vs fixed | seeds won |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for r in results:
        by[(r.case, r.policy)].append(r)
    for case in dict.fromkeys(r.case for r in results):
        fixed = by[(case, "fixed")]
        for policy in POLICIES:
            rs = by[(case, policy)]
            if not rs:
                continue
            spend = statistics.fmean(r.spend for r in rs)
            revenue = statistics.fmean(r.revenue for r in rs)
            profit = revenue - spend
            base = statistics.fmean(r.profit for r in fixed) if fixed else math.nan
            vs = f"{profit - base:+,.0f}" if policy != "fixed" else ""
            won = (
                f"{sum(r.profit > f.profit for r, f in zip(rs, fixed, strict=True))}/{len(rs)}"
                if policy != "fixed"
                else ""
            )
            lines.append(
                f"| {case} | {policy} | {spend:,.0f} | {revenue:,.0f} | {profit:,.0f} |"
                f" {profit / spend:.3f} | {vs} | {won} |"
            )
    return "\n".join(lines)


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    cases = list(dict.fromkeys(r.case for r in results))
    seed = min(r.seed for r in results)
    colours = {"fixed": "tab:gray", "naive": "tab:orange", "bayes": "tab:blue"}
    # 1: profit per scenario and bidder (mean over seeds)
    ax = axes[0]
    width = 0.27
    for i, policy in enumerate(POLICIES):
        values = [
            statistics.fmean(r.profit for r in results if r.case == c and r.policy == policy)
            for c in cases
        ]
        ax.bar(
            [x + (i - 1) * width for x in range(len(cases))],
            values,
            width,
            label=policy,
            color=colours[policy],
        )
    ax.set_xticks(range(len(cases)), cases)
    ax.set_ylabel("profit over the run (USD, mean over seeds)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.legend()
    ax.set_title("Total profit")
    # 2: the shocked campaign's multiplier in the recovery scenario
    ax = axes[1]
    for r in results:
        if r.case == "recovery" and r.seed == seed and r.shocked is not None:
            t0 = r.trace[0][0] if r.trace else 0.0
            points = [(ts - t0, m) for ts, c, m in r.trace if c == r.shocked]
            ax.step(
                [p[0] / 3600 for p in points],
                [p[1] for p in points],
                where="post",
                label=r.policy,
                color=colours[r.policy],
                linewidth=1,
            )
            ax.axvspan(24, 48, color="red", alpha=0.08)
            ax.set_title(f"recovery, seed {seed}: {r.shocked}'s applied multiplier")
    ax.set_xlabel("hours (shaded: CVR ×0.2)")
    ax.set_ylabel("multiplier (0 = paused)")
    ax.legend()
    # 3: cumulative profit in the recovery scenario
    ax = axes[2]
    for r in results:
        if r.case == "recovery" and r.seed == seed:
            total, cum = 0.0, []
            for h in r.hourly_profit:
                total += h
                cum.append(total)
            ax.plot(range(len(cum)), cum, label=r.policy, color=colours[r.policy])
    ax.axvspan(24, 48, color="red", alpha=0.08)
    ax.set_xlabel("hours")
    ax.set_ylabel("cumulative profit, all campaigns (USD)")
    ax.set_title(f"recovery, seed {seed}: profit as it accrues")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="seeds 1..N per scenario")
    ap.add_argument("--days", type=float, default=3.0)
    ap.add_argument("--cases", nargs="*", default=[c.name for c in CASES])
    ap.add_argument("--plot", type=Path, help="write the PNG here")
    args = ap.parse_args()
    config = BiddingConfig(target=AuctionResponse().profit_optimal_roas)
    results = []
    started = time.perf_counter()
    for case in CASES:
        if case.name not in args.cases:
            continue
        for seed in range(1, args.seeds + 1):
            for policy in POLICIES:
                results.append(simulate(case, policy, seed, args.days, config))
                print(
                    f"  {case.name} seed {seed} {policy}: profit {results[-1].profit:,.0f}",
                    file=sys.stderr,
                )
    print(
        f"{len(results)} runs of {args.days:g} days in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    print(table(results))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
