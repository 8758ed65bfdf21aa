"""``bid-signals`` end to end: generator traffic through real worker processes, one killed
with SIGKILL three times mid-stream, and every committed signal checked against the rule.

Three kinds of check, so that a wrong signal has nowhere to hide:

* **the record** — valid against ``schemas/bid-signal.schema.json``; multiplier within the
  bounds and at most one step from the previous one; pause/resume advice consistent with
  the previous decision;
* **the chain** (exactly once) — each campaign's revisions are 1, 2, …, n, each once, in
  offset order (so the newest record is the one compaction keeps); revision r's
  ``previous_multiplier`` is revision r−1's ``multiplier``; the evidence never shrinks. A
  restart that lost the bidding state, or whose aborted transaction leaked, breaks these;
* **the rule** — :func:`stream_app.domain.bidding.decide` replayed on each record's own
  posterior and the previous record gives its multiplier, pause and probabilities; and
  once the traffic is in, the last decision's evidence equals the generator's ground truth
  (decay is switched off with a half-life of 10⁹ s, so evidence is plain sums): nothing
  the kills interrupted was counted twice or lost.

Bit-for-bit equality with an uninterrupted run is not a property of the rule: a decision
is taken when a partition's watermark enters a new interval at a commit, so which events
it has seen depends on batching, with or without kills.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import signal
import time
from collections import defaultdict
from pathlib import Path

import jsonschema
import msgspec
import orjson
import pytest

from stream_app.agents.aggregation import bidding_config
from stream_app.domain.bidding import BiddingConfig, Posterior, decide
from stream_app.domain.records import BidSignal
from stream_app.engine.stage import Record
from stream_app.generator import GroundTruth, estimate_records, generate_to_kafka
from stream_app.outputs import read_all
from stream_app.settings import Settings
from stream_app.topics import create_topics

from .probes import advance_click_time, to_every_partition
from .test_recovery import GRACE, merge, outputs_match, scenario
from .workers import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

T0 = 1_767_225_600.0
INTERVAL = 10.0
SCHEMA = orjson.loads((Path(__file__).parents[2] / "schemas/bid-signal.schema.json").read_bytes())
EVIDENCE = ("spend", "clicks", "conversions", "revenue")
# ground truth field of each evidence sum
TRUTH_INDEX = {"clicks": 0, "conversions": 1, "spend": 4, "revenue": 5}


def posterior_of(s: BidSignal) -> Posterior:
    """The posterior a signal reports, completed as ``bidding.posterior`` completes it
    (ROAS = CVR × order value / CPC, matched to a log-normal by two moments)."""
    u = s.uncertainty
    mean = u.cvr_mean * u.order_value_mean / u.cpc
    second = (u.cvr_sd**2 + u.cvr_mean**2) * (u.order_value_sd**2 + u.order_value_mean**2)
    sigma2 = math.log1p(max(second / u.cpc**2 / mean**2 - 1.0, 1e-12))
    return Posterior(
        cvr_mean=u.cvr_mean,
        cvr_sd=u.cvr_sd,
        order_value_mean=u.order_value_mean,
        order_value_sd=u.order_value_sd,
        cpc=u.cpc,
        roas_mean=mean,
        log_roas_mean=math.log(mean) - sigma2 / 2,
        log_roas_sd=math.sqrt(sigma2),
    )


def check_record(s: BidSignal, previous: BidSignal | None, cfg: BiddingConfig) -> list[str]:
    """What is wrong with one signal, given the campaign's previous one."""
    problems: list[str] = []
    where = f"{s.campaign_id} r{s.revision}"
    was_paused = previous is not None and previous.paused
    before = previous.multiplier if previous is not None else 1.0
    if s.previous_multiplier != before:
        problems.append(f"{where}: previous_multiplier {s.previous_multiplier} != {before}")
    if not cfg.min_multiplier - 1e-9 <= s.multiplier <= cfg.max_multiplier + 1e-9:
        problems.append(f"{where}: multiplier {s.multiplier} out of bounds")
    if previous is not None and s.decided_at <= previous.decided_at:
        problems.append(f"{where}: decided_at {s.decided_at} not after {previous.decided_at}")
    if s.decided_at % INTERVAL:
        problems.append(f"{where}: decided_at {s.decided_at} is not on an interval")
    expected_advice = {
        "run": (False, False),
        "pause": (False, True),
        "paused": (True, True),
        "resume": (True, False),
    }[s.advice]
    if (was_paused, s.paused) != expected_advice:
        problems.append(f"{where}: advice {s.advice} after paused={was_paused}, now {s.paused}")
    # multipliers are rounded to 6 decimals in the record: allow that much in the ratio
    step = math.log1p(cfg.max_step) + 0.5e-6 * (1 / before + 1 / s.multiplier)
    if s.advice == "run" and abs(math.log(s.multiplier / before)) > step:
        problems.append(f"{where}: step {before} -> {s.multiplier} beyond ×{1 + cfg.max_step}")
    if s.advice in ("pause", "paused") and s.multiplier != before:
        problems.append(f"{where}: multiplier moved while pausing: {before} -> {s.multiplier}")
    if s.advice == "resume" and s.multiplier != cfg.min_multiplier:
        problems.append(f"{where}: resumed at {s.multiplier}, not {cfg.min_multiplier}")
    # the rule, replayed on the record's own posterior and the previous decision
    u = s.uncertainty
    post = posterior_of(s)
    if not math.isclose(u.cpc, u.spend / u.clicks, rel_tol=1e-5):
        problems.append(f"{where}: cpc {u.cpc} != spend / clicks {u.spend / u.clicks}")
    for name, got, want in (
        ("roas_mean", u.roas_mean, post.roas_mean),
        ("roas_p05", u.roas_p05, post.roas_quantile(0.05)),
        ("roas_p95", u.roas_p95, post.roas_quantile(0.95)),
    ):
        if not math.isclose(got, want, rel_tol=1e-9):
            problems.append(f"{where}: {name} {got} != {want} from the posterior")
    d = decide(post, before, was_paused, s.target_roas, cfg)
    if (d.paused, d.advice) != (s.paused, s.advice) or not math.isclose(
        d.multiplier, s.multiplier, rel_tol=1e-5
    ):
        problems.append(
            f"{where}: the rule says {d.advice} ×{d.multiplier:.6f}, "
            f"the record {s.advice} ×{s.multiplier}"
        )
    for name, got, want in (
        ("credibility", u.credibility, d.credibility),
        ("p_roi_below_floor", u.p_roi_below_floor, d.p_below_floor),
    ):
        if not math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-9):
            problems.append(f"{where}: {name} {got} != {want} by the rule")
    return problems


def check_chains(
    records: list[Record], cfg: BiddingConfig
) -> tuple[dict[str, list[BidSignal]], list[str]]:
    """Signals per campaign in offset order, and every problem found in them."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    decoder = msgspec.json.Decoder(BidSignal)
    problems: list[str] = []
    chains: dict[str, list[BidSignal]] = defaultdict(list)
    partition_of: dict[str, int] = {}
    for r in records:  # read_all: partition by partition, each in offset order
        assert r.value is not None
        for error in validator.iter_errors(orjson.loads(r.value)):
            problems.append(f"p{r.partition}@{r.offset}: schema: {error.message}")
        s = decoder.decode(r.value)
        if r.key != s.campaign_id.encode():
            problems.append(f"p{r.partition}@{r.offset}: key {r.key!r} for {s.campaign_id}")
        if partition_of.setdefault(s.campaign_id, r.partition) != r.partition:
            problems.append(
                f"{s.campaign_id}: in partitions {partition_of[s.campaign_id]}, {r.partition}"
            )
        chain = chains[s.campaign_id]
        problems += check_record(s, chain[-1] if chain else None, cfg)
        if chain:
            for name in EVIDENCE:
                now, then = getattr(s.uncertainty, name), getattr(chain[-1].uncertainty, name)
                if now < then * (1 - 1e-6):
                    problems.append(f"{s.campaign_id} r{s.revision}: {name} fell {then} -> {now}")
        chain.append(s)
    for campaign, chain in chains.items():
        revisions = [s.revision for s in chain]
        if revisions != list(range(1, len(chain) + 1)):
            problems.append(f"{campaign}: revisions in offset order {revisions}")
    return dict(chains), problems


async def test_bid_signals_follow_the_rule_and_the_truth_across_kills(
    make_settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(
        attribution_window_seconds=90.0,
        conversion_grace_seconds=GRACE,
        commit_interval_seconds=0.3,
        bid_interval_seconds=INTERVAL,
        bid_half_life_seconds=1e9,
        idle_source_timeout_seconds=10.0,
    )
    fleet = Fleet(
        settings,
        tmp_path,
        STREAM_APP_BID_INTERVAL_SECONDS=str(INTERVAL),
        STREAM_APP_BID_HALF_LIFE_SECONDS="1e9",
        STREAM_APP_IDLE_SOURCE_TIMEOUT_SECONDS="10",
    )
    cfg = bidding_config(settings)  # as the aggregation stage builds it
    try:
        await create_topics(settings)
        proc = fleet.start("w1")
        # paced (240 s of event time in about 64 s), so the watermark enters new intervals
        # while the worker runs and is killed, not all at once from a backlog. Kills 16 s
        # apart: a restarted worker waits out its dead predecessor's session (6 s) and
        # the inputs without news since the takeover (10 s idle) before it decides again
        runs = [scenario(1, T0, 120.0), scenario(2, T0 + 120.0, 120.0)]
        rate = sum(estimate_records(s) for s in runs) / 64.0

        async def traffic() -> list[GroundTruth]:
            return [await generate_to_kafka(s, settings, rate=rate) for s in runs]

        generating = asyncio.create_task(traffic())
        kills: list[float] = []
        for pause in (16.0, 16.0, 16.0):  # kill -9 mid-stream, three times, then restart
            await asyncio.sleep(pause)
            assert proc.poll() is None, fleet.log_tail("w1")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append(time.time())
            proc = fleet.start("w1")
        first, second = await generating
        expected, _, _ = merge(first, second)
        # every event aggregated (campaign-roi-latest equals the truth) ...
        await advance_click_time(settings, T0 + 240.0 + 10 * GRACE)
        latest = await outputs_match(settings, expected, limit=120)
        assert {c: latest[c].cumulative.clicks for c in expected} == {
            c: row[0] for c, row in expected.items()
        }
        # ... then a later interval, so the last decision has seen all of them. A decision
        # is taken at a commit, and the other inputs (spend, conversions) hold the watermark
        # until they have been idle for idle_source_timeout_seconds at a commit: so first
        # let them go idle, then send clicks (new ids: advance_click_time's again would be
        # dropped as duplicates) for a commit that finds them idle.
        await asyncio.sleep(settings.idle_source_timeout_seconds + 2.0)
        await to_every_partition(
            settings,
            settings.topics.clicks,
            {
                "schema_version": 1,
                "event_id": "tick-{p}",
                "click_id": "tick-{p}",
                "campaign_id": "sentinel",
                "channel": "none",
                "user_id": "none",
                "ts": T0 + 240.0 + 20 * GRACE,
            },
        )

        async def newest() -> dict[str, BidSignal]:
            records = await read_all(settings.bootstrap_servers, settings.topics.bid_signals)
            signals = (msgspec.json.decode(r.value or b"", type=BidSignal) for r in records)
            return {s.campaign_id: s for s in signals}  # offset order: the newest wins

        def complete(signals: dict[str, BidSignal]) -> bool:
            return all(
                c in signals and signals[c].uncertainty.clicks >= row[0] * (1 - 1e-4)
                for c, row in expected.items()
            )

        for _ in range(90):
            if complete(await newest()):
                break
            await asyncio.sleep(1.0)
        assert proc.poll() is None, fleet.log_tail("w1")
        proc.terminate()  # stops after committing: no transaction left open
        await asyncio.to_thread(proc.wait, 60)
    finally:
        fleet.close()

    records = await read_all(settings.bootstrap_servers, settings.topics.bid_signals)
    chains, problems = check_chains(records, cfg)
    print(
        f"bid-signals: {len(records)} records, kills at {[round(k - kills[0], 1) for k in kills]}"
        f" s, decisions' emitted_at - first kill: "
        f"{sorted({round(s.emitted_at - kills[0], 1) for ch in chains.values() for s in ch})}; "
        f"per campaign (decided_at - T0, advice, multiplier): "
        + "; ".join(
            f"{c}: "
            + " ".join(f"{s.decided_at - T0:.0f}/{s.advice}/{s.multiplier:.3f}" for s in ch)
            for c, ch in sorted(chains.items())
        )
    )
    assert not problems, "\n".join(problems[:40])
    assert set(chains) == set(expected)  # the sentinel has clicks but no spend: no signal
    # the last decision of each campaign saw exactly the generator's events
    evidence = {
        (c, name): (getattr(chains[c][-1].uncertainty, name), row[i])
        for c, row in expected.items()
        for name, i in TRUTH_INDEX.items()
    }
    wrong = {k: v for k, v in evidence.items() if not math.isclose(*v, rel_tol=1e-4)}
    last_at = {c: (chains[c][-1].revision, chains[c][-1].decided_at - T0) for c in chains}
    assert not wrong, f"(evidence, truth): {wrong}; last (revision, decided_at): {last_at}"
    # not vacuous: decisions taken by several of the killed workers, and not just one per
    # interval of a backlog, and the rule moved the multipliers
    slots = {s.decided_at for chain in chains.values() for s in chain}
    by_worker = {bisect.bisect(kills, s.emitted_at) for ch in chains.values() for s in ch}
    moved = [c for c, chain in chains.items() if any(s.multiplier != 1.0 for s in chain)]
    assert len(slots) >= 4, sorted(slots)
    assert len(by_worker) >= 3, (by_worker, kills)
    assert len(moved) >= len(chains) // 2, moved
