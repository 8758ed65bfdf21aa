"""ROI-drop alerts against the ``CampaignRoiDrop`` rule, per generator scenario (docs/alerts.md).

Each run generates seeded multi-hour traffic with one named change
(``stream_app.generator.shocks``) and feeds it, in event time and in emission order, to:

* ``alerts`` — the very :class:`~stream_app.domain.alerts.AlertBook` the aggregation stage
  runs (buckets by click time, conversion delays, ticks every 60 s of event time), with
  review topics from :class:`~stream_app.learning.topics.ReviewTopicModel`;
* ``rule`` — ``CampaignRoiDrop`` of ``prometheus/rules/campaigns.yml`` re-implemented on the
  gauges the worker exports (cumulative spend and revenue, conversions counted on arrival),
  scraped every 15 s and evaluated every 30 s with Prometheus's ``delta()`` extrapolation,
  ``offset`` and ``for``. ``tests/unit/tools/test_evaluate_alerts.py`` feeds the same
  scraped series to ``promtool test rules`` with the real rule file and requires the same
  campaigns firing at every evaluation (``--promtool`` does it for every run here).

Reviews are scored (rating − 3) / 2 here instead of by the ONNX model (speed; the stage
uses the model). Reported per scenario: detection delay (event time from the change to the
first alert on the changed campaign), false alerts per campaign-day (alerts on campaigns
without a change, or before it, after a 1 h warm-up), whether the first alert names the
true driver first, and, for the sentiment crash, whether a topic that grew carries the new
complaint's words.

    python tools/evaluate_alerts.py                    # the table in docs/alerts.md
    python tools/evaluate_alerts.py --scenarios cvr-collapse --seeds 1 --hours 6 --show
    python tools/evaluate_alerts.py --promtool         # and the rule column checked by promtool
"""

from __future__ import annotations

import argparse
import bisect
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml

from stream_app.domain.alerts import AlertBook, AlertConfig
from stream_app.domain.events import Click, Conversion, Review, Spend
from stream_app.domain.money import CurrencyTable
from stream_app.domain.records import CampaignAlert, ReviewTopics, ScoredReview, TopicTerms
from stream_app.generator import Scenario, TrafficGenerator
from stream_app.generator.shocks import COMPLAINT_THEME, scenarios, target_campaign
from stream_app.learning.topics import ReviewTopicModel, tokens
from stream_app.settings import DEFAULT_RATES

_click = msgspec.json.Decoder(Click).decode
_conversion = msgspec.json.Decoder(Conversion).decode
_spend = msgspec.json.Decoder(Spend).decode
_review = msgspec.json.Decoder(Review).decode
THEME_WORDS = frozenset(w for s in COMPLAINT_THEME for w in tokens(s))
WARM_UP = 3600.0


# -- CampaignRoiDrop, as Prometheus evaluates it --------------------------------------------
def prom_delta(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """Prometheus 2.42 ``delta()`` of a gauge over the range [start, end] (extrapolated)."""
    lo = bisect.bisect_left(samples, (start, -float("inf")))
    hi = bisect.bisect_right(samples, (end, float("inf")))
    window = samples[lo:hi]
    if len(window) < 2:
        return None
    (t0, v0), (t1, v1) = window[0], window[-1]
    sampled = t1 - t0
    average = sampled / (len(window) - 1)
    threshold = average * 1.1
    to_start, to_end = t0 - start, end - t1
    extrapolate = sampled
    extrapolate += to_start if to_start < threshold else average / 2
    extrapolate += to_end if to_end < threshold else average / 2
    return (v1 - v0) * extrapolate / sampled


@dataclass
class RuleState:
    """``CampaignRoiDrop`` for one campaign: samples, and when its condition became true."""

    spend: list[tuple[float, float]] = field(default_factory=list)
    revenue: list[tuple[float, float]] = field(default_factory=list)
    pending_since: float | None = None
    firing: bool = False


def roi(state: RuleState, end: float, span: float) -> float | None:
    spend = prom_delta(state.spend, end - span, end)
    revenue = prom_delta(state.revenue, end - span, end)
    if spend is None or revenue is None or not spend > 0:
        return None
    return (revenue - spend) / spend


def rule_step(state: RuleState, t: float, for_seconds: float = 600.0) -> bool:
    """Evaluate at ``t``; True when the alert starts firing now."""
    now15 = roi(state, t, 900.0)
    before = roi(state, t - 900.0, 6 * 3600.0)
    spend15 = prom_delta(state.spend, t - 900.0, t)
    cond = (
        now15 is not None
        and before is not None
        and spend15 is not None
        and now15 < before - 0.5
        and spend15 >= 10
    )
    if not cond:
        state.pending_since, state.firing = None, False
        return False
    if state.pending_since is None:
        state.pending_since = t
    if not state.firing and t - state.pending_since >= for_seconds:
        state.firing = True
        return True
    return False


# -- one run ----------------------------------------------------------------------------
@dataclass
class Outcome:
    scenario: str
    seed: int
    campaigns: int
    days: float
    change_ts: float | None
    target: str
    ours: list[CampaignAlert] = field(default_factory=list)
    rule: list[tuple[str, float]] = field(default_factory=list)
    rule_states: dict[str, RuleState] = field(default_factory=dict)
    """Per campaign, the gauges as scraped (for ``promtool``, :func:`promtool_series`)."""
    rule_firing: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    """Every evaluation: its time and the campaigns whose rule fired then."""
    start_ts: float = 0.0
    book: AlertBook | None = None
    topic_model: ReviewTopicModel | None = None
    events: int = 0
    seconds: float = 0.0


def run(name: str, seed: int, hours: float, change_hour: float, cps: float) -> Outcome:
    base = Scenario(
        seed=seed,
        duration_seconds=hours * 3600.0,
        clicks_per_second=cps,
        reviews_per_minute=2.0,
        bad_share=0.0,
        duplicate_share=0.0,
    )
    profiles = base.profiles()
    target = target_campaign(profiles)
    named = scenarios(target, base.start_ts, change_hour * 3600.0)[name]
    currencies = CurrencyTable(DEFAULT_RATES, "USD")
    book = AlertBook(AlertConfig(), "USD")
    products = frozenset(w for p in profiles for w in tokens(p.product))
    topics = ReviewTopicModel(exclude=products)
    window = base.attribution_window_seconds
    out = Outcome(
        name,
        seed,
        len(profiles),
        (hours * 3600.0 - WARM_UP) / 86400.0,
        None if named.true_driver is None else base.start_ts + change_hour * 3600.0,
        target,
    )
    clicks: dict[str, tuple[str, float]] = {}
    waiting: dict[str, list[Conversion]] = defaultdict(list)
    spend_total: dict[str, float] = defaultdict(float)
    revenue_total: dict[str, float] = defaultdict(float)
    rules = {p.campaign_id: RuleState() for p in profiles}
    out.rule_states, out.start_ts = rules, base.start_ts
    out.book, out.topic_model = book, topics
    review_mass: dict[tuple[str, float], list[float]] = {}
    review_counts: dict[tuple[str, float], list[int]] = defaultdict(lambda: [0, 0])
    pending_topics: deque[tuple[str, float]] = deque()
    watermark = conversion_watermark = 0.0
    next_scrape = base.start_ts + 15.0
    next_eval = base.start_ts + 30.0
    started = time.perf_counter()

    def convert(c: Conversion, click_ts: float, campaign: str) -> None:
        if c.ts - click_ts > window:
            return
        money = currencies.to_reporting(c.revenue, c.currency)
        revenue_total[campaign] += money
        book.observe_conversions(campaign, click_ts, 1, money, c.ts - click_ts)

    for rec in TrafficGenerator(base, shocks=named.shocks):
        out.events += 1
        ts = rec.ts
        if rec.topic_kind == "click":
            click = _click(rec.value)
            if click.click_id in clicks:
                continue
            clicks[click.click_id] = (click.campaign_id, click.ts)
            book.observe_clicks(click.campaign_id, click.ts, 1)
            for c in waiting.pop(click.click_id, []):
                convert(c, click.ts, click.campaign_id)
        elif rec.topic_kind == "conversion":
            conv = _conversion(rec.value)
            conversion_watermark = max(conversion_watermark, conv.ts)
            found = clicks.get(conv.click_id)
            if found is None:
                waiting[conv.click_id].append(conv)
            else:
                convert(conv, found[1], found[0])
        elif rec.topic_kind == "spend":
            spend = _spend(rec.value)
            money = currencies.to_reporting(spend.amount, spend.currency)
            spend_total[spend.campaign_id] += money
            book.observe_spend(spend.campaign_id, spend.ts, money, spend.impressions)
        else:
            review = _review(rec.value)
            score = None if review.rating is None else (review.rating - 3) / 2
            book.observe_review(
                ScoredReview(
                    event_id=review.event_id,
                    campaign_id=review.campaign_id,
                    ts=review.ts,
                    rating=review.rating,
                    score=score,
                    label=None,
                    unscored_reason=None,
                    truncated=False,
                    model_version="rating",
                    scored_at=0.0,
                )
            )
            shares = topics.learn_transform(review.text)
            key = (review.campaign_id, (review.ts // 60) * 60.0)
            if key not in review_mass:
                review_mass[key] = [0.0] * topics.n_topics
                pending_topics.append(key)
            counts = review_counts[key]
            counts[0] += 1
            if score is not None and score < 0:
                counts[1] += 1
                for k, x in enumerate(shares):
                    review_mass[key][k] += x
        watermark = max(watermark, ts)
        while next_scrape <= watermark:  # the worker's gauges as Prometheus scrapes them
            for campaign, state in rules.items():
                state.spend.append((next_scrape, spend_total[campaign]))
                state.revenue.append((next_scrape, revenue_total[campaign]))
            next_scrape += 15.0
        while next_eval <= watermark - 15.0:
            for campaign, state in rules.items():
                if rule_step(state, next_eval):
                    out.rule.append((campaign, next_eval))
            firing = tuple(c for c, state in sorted(rules.items()) if state.firing)
            out.rule_firing.append((next_eval, firing))
            next_eval += 30.0
        if book.decided_slot is None or watermark // 60 > book.decided_slot:
            terms = [TopicTerms(topic=k, terms=t) for k, t in enumerate(topics.top_terms())]
            while pending_topics and pending_topics[0][1] < (watermark // 60) * 60:
                key = pending_topics.popleft()
                book.observe_topics(
                    ReviewTopics(
                        campaign_id=key[0],
                        bucket_start=key[1],
                        reviews=review_counts[key][0],
                        negative_reviews=review_counts[key][1],
                        mass=[],
                        negative_mass=review_mass.pop(key),
                        topics=terms,
                        model_version=topics.version,
                        emitted_at=0.0,
                    )
                )
            out.ours.extend(book.tick(watermark, conversion_watermark, 0.0))
    out.seconds = time.perf_counter() - started
    return out


# -- the re-implementation against promtool ------------------------------------------------
RULES = Path(__file__).resolve().parents[1] / "prometheus" / "rules" / "campaigns.yml"
FIRING = 'ALERTS{alertname="CampaignRoiDrop",alertstate="firing"}'


def promtool_tests(o: Outcome, currency: str = "USD") -> dict[str, Any]:
    """A ``promtool test rules`` file for one run: the gauges as the re-implementation
    scraped them (every 15 s, time 0 = the run's start) as input series, and at every 30 s
    evaluation the campaigns the re-implementation had firing, as the ``ALERTS`` series
    Prometheus must then hold (``promql_expr_test``: annotations play no part)."""
    series = []
    for campaign, state in sorted(o.rule_states.items()):
        for metric, samples in (("spend", state.spend), ("revenue", state.revenue)):
            values = ["_"] * (round((samples[-1][0] - o.start_ts) / 15.0) + 1)
            for t, v in samples:
                values[round((t - o.start_ts) / 15.0)] = repr(v)
            series.append(
                {
                    "series": f'stream_app_campaign_{metric}{{job="stream-app",'
                    f'instance="w1",campaign="{campaign}",currency="{currency}"}}',
                    "values": " ".join(values),
                }
            )
    checks = [
        {
            "expr": FIRING,
            "eval_time": f"{round(t - o.start_ts)}s",
            "exp_samples": [
                {
                    "labels": f'ALERTS{{alertname="CampaignRoiDrop",alertstate="firing",'
                    f'campaign="{c}",currency="{currency}",severity="page"}}',
                    "value": 1,
                }
                for c in firing
            ],
        }
        for t, firing in o.rule_firing
    ]
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": "30s",
        "tests": [{"interval": "15s", "input_series": series, "promql_expr_test": checks}],
    }


def promtool_check(o: Outcome, promtool: str = "promtool") -> tuple[bool, str]:
    """Run ``promtool test rules`` on :func:`promtool_tests`: (agrees, promtool's output)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evaluation.test.yml"
        path.write_text(yaml.safe_dump(promtool_tests(o), width=1 << 30))
        done = subprocess.run(
            [promtool, "test", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    return done.returncode == 0, done.stdout + done.stderr


# -- scoring ----------------------------------------------------------------------------
@dataclass
class Score:
    detected: bool | None
    delay: float | None
    false_alerts: int
    driver_first: bool | None = None
    theme: bool | None = None


def score_ours(o: Outcome, true_driver: str | None, start_ts: float) -> Score:
    fired = [a for a in o.ours if a.state == "firing" and a.fired_at >= start_ts + WARM_UP]
    return _score(
        o, [(a.campaign_id, a.fired_at, a) for a in fired], true_driver, start_ts, with_driver=True
    )


def score_rule(o: Outcome, start_ts: float) -> Score:
    fired = [(c, t, None) for c, t in o.rule if t >= start_ts + WARM_UP]
    return _score(o, fired, None, start_ts, with_driver=False)


def _score(
    o: Outcome,
    fired: list[tuple[str, float, CampaignAlert | None]],
    true_driver: str | None,
    start_ts: float,
    *,
    with_driver: bool,
) -> Score:
    change = o.change_ts
    true = [f for f in fired if change is not None and f[0] == o.target and f[1] >= change]
    false = len(fired) - len(true)
    if change is None:
        return Score(None, None, false)
    if not true:
        return Score(False, None, false)
    first = min(true, key=lambda f: f[1])
    s = Score(True, first[1] - change, false)
    alert = first[2]
    if with_driver and alert is not None:
        s.driver_first = alert.drivers[0].name == true_driver
        s.theme = any(THEME_WORDS & set(t.terms) for t in alert.topics)
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--change-hour", type=float, default=5.0)
    parser.add_argument("--clicks-per-second", type=float, default=10.0)
    parser.add_argument("--scenarios", nargs="*", default=None)
    parser.add_argument("--show", action="store_true", help="print every alert's summary")
    parser.add_argument(
        "--promtool",
        action="store_true",
        help="check every run's rule column with `promtool test rules` (fails on a difference)",
    )
    args = parser.parse_args(argv)
    names = args.scenarios or list(scenarios("x", 0.0, 0.0))
    print(
        f"{args.seeds} seeds × {args.hours:g} h at {args.clicks_per_second:g} clicks/s, "
        f"8 campaigns, change at hour {args.change_hour:g}; warm-up {WARM_UP / 3600:g} h",
        file=sys.stderr,
    )
    rows = []
    for name in names:
        ours, rule, runs = [], [], []
        for seed in range(1, args.seeds + 1):
            o = run(name, seed, args.hours, args.change_hour, args.clicks_per_second)
            start = Scenario(seed=seed).start_ts
            true_driver = scenarios(o.target, start, 0.0)[name].true_driver
            ours.append(score_ours(o, true_driver, start))
            rule.append(score_rule(o, start))
            runs.append(o)
            print(
                f"{name} seed {seed}: {o.events:,} events in {o.seconds:.1f} s; "
                f"ours {len(o.ours)} records, rule {len(o.rule)} firings",
                file=sys.stderr,
            )
            if args.promtool:
                agrees, report = promtool_check(o)
                print(f"  promtool: {'agrees' if agrees else 'DIFFERS'}", file=sys.stderr)
                if not agrees:
                    print(report, file=sys.stderr)
                    return 1
            if args.show:
                for a in o.ours:
                    print(f"  {a.state} {a.fired_at - start:>7.0f} s {a.summary}", file=sys.stderr)
                for c, t in o.rule:
                    print(f"  rule {t - start:>7.0f} s {c}", file=sys.stderr)
        rows.append((name, runs, ours, rule))
    print(
        "| scenario | change | detected (alerts / rule) | delay, min (alerts / rule) "
        "| false alerts per campaign-day (alerts / rule) | true driver first "
        "| new theme in topics |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, runs, ours, rule in rows:
        days = sum(o.campaigns * o.days for o in runs)
        what = scenarios("x", 0.0, 0.0)[name].description

        def detected(scores: list[Score]) -> str:
            if scores[0].detected is None:
                return "n/a"
            return f"{sum(bool(s.detected) for s in scores)}/{len(scores)}"

        def delay(scores: list[Score]) -> str:
            d = [s.delay / 60 for s in scores if s.delay is not None]
            return f"{statistics.median(d):.1f}" if d else "–"

        def rate(scores: list[Score], days: float = days) -> str:
            return f"{sum(s.false_alerts for s in scores) / days:.2f}"

        def flag(values: list[bool | None]) -> str:
            v = [x for x in values if x is not None]
            return f"{sum(v)}/{len(v)}" if v else "n/a"

        theme = flag([s.theme for s in ours]) if name == "sentiment-crash" else "n/a"
        print(
            f"| {name} | {what} | {detected(ours)} / {detected(rule)} | "
            f"{delay(ours)} / {delay(rule)} | {rate(ours)} / {rate(rule)} | "
            f"{flag([s.driver_first for s in ours])} | {theme} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
