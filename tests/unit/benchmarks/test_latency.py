"""The exact matching of ``benchmarks/latency.py``: send times against visible outputs."""

from __future__ import annotations

import doctest
import math
import random
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
import latency as lat  # noqa: E402

from stream_app.domain.money import CurrencyTable  # noqa: E402
from stream_app.generator.traffic import TrafficGenerator  # noqa: E402
from stream_app.settings import DEFAULT_RATES  # noqa: E402

K = ("cmp-001", 0.0)


def test_an_output_is_matched_to_the_newest_click_it_reflects() -> None:
    sent = {K: [1.0, 2.0, 3.0, 4.0]}
    seen = [lat.Seen(K, 2, 2.5, 2.4), lat.Seen(K, 4, 4.75, 4.5)]
    samples = lat.match_outputs(sent, seen)
    got = [(s.clicks, s.latency, s.to_flush) for s in samples]
    assert got == [(2, 0.5, pytest.approx(0.4)), (4, 0.75, 0.5)]


def test_re_emits_are_not_samples() -> None:
    """A revision for spend, a conversion or closing repeats a count already visible."""
    sent = {K: [1.0, 2.0]}
    seen = [lat.Seen(K, 1, 1.5), lat.Seen(K, 1, 2.5), lat.Seen(K, 0, 2.6), lat.Seen(K, 2, 3.0)]
    assert [s.clicks for s in lat.match_outputs(sent, seen)] == [1, 2]
    assert lat.first_visible(sent, seen) == {K: [1.5, 3.0]}


def test_a_count_above_the_clicks_sent_is_refused() -> None:
    with pytest.raises(ValueError, match="3 clicks, 2 were sent"):
        lat.match_outputs({K: [1.0, 2.0]}, [lat.Seen(K, 3, 5.0)])
    with pytest.raises(ValueError, match="1 clicks, 0 were sent"):
        lat.first_visible({}, [lat.Seen(K, 1, 5.0)])


def test_clicks_before_the_warm_up_and_clicks_never_shown() -> None:
    sent = {K: [1.0, 2.0, 3.0], ("cmp-002", 60.0): [2.5]}
    visible = lat.first_visible(sent, [lat.Seen(K, 2, 2.25), lat.Seen(("cmp-002", 60.0), 1, 4.0)])
    latencies, missing = lat.event_latencies(sent, visible, since=2.0)
    assert sorted(latencies) == [0.25, 1.5]
    assert missing == 1  # K's third click


def test_matching_recovers_the_true_latency_of_every_click() -> None:
    """A simulated worker: clicks of several campaigns, each campaign's in send order,
    processed after a random delay, made visible at the first commit after that; the
    counts it publishes must give back each click's true latency exactly."""
    rng = random.Random(7)
    sent: dict[tuple[str, float], list[float]] = defaultdict(list)
    processed: list[tuple[float, tuple[str, float], float]] = []
    ready = {c: 0.0 for c in "abc"}  # one ordered stream per campaign
    t = 0.0
    for _ in range(2000):
        t += rng.expovariate(500)
        key = (rng.choice("abc"), lat.window_start(t, 1.0))
        sent[key].append(t)
        ready[key[0]] = max(ready[key[0]], t + rng.uniform(0.001, 0.2))
        processed.append((ready[key[0]], key, t))
    commits = [0.05 * k + rng.uniform(0, 0.01) for k in range(200)]
    truth: dict[float, float] = {}
    seen = []
    counts: dict[tuple[str, float], int] = defaultdict(int)
    pending = sorted(processed)
    i = 0
    for c in commits:
        changed = set()
        while i < len(pending) and pending[i][0] <= c:
            _, key, sent_at = pending[i]
            counts[key] += 1
            changed.add(key)
            truth[sent_at] = c + 0.003 - sent_at
            i += 1
        seen += [lat.Seen(key, counts[key], c + 0.003, c) for key in sorted(changed)]
        seen += [lat.Seen(key, counts[key], c + 0.004, c) for key in list(counts)[:2]]  # re-emits
    visible = lat.first_visible(sent, seen)
    latencies, missing = lat.event_latencies(sent, visible, since=0.0)
    assert missing == len(pending) - i
    want = sorted(truth.values())
    assert sorted(latencies) == pytest.approx(want, abs=1e-9)
    # per output: the newest click a record reflects is the N-th sent of its (campaign, window)
    for s in lat.match_outputs(sent, seen):
        newest = sent[s.key][s.clicks - 1]
        assert s.latency == pytest.approx(truth[newest])


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [lat.percentile(values, q) for q in (50, 90, 99, 100)] == [50.0, 90.0, 99.0, 100.0]
    assert math.isnan(lat.percentile([], 50))


def test_the_plan_keeps_each_campaign_on_one_partition() -> None:
    scenario = lat.live_scenario(200.0, 30.0, seed=3)
    records = list(TrafficGenerator(scenario, currencies=CurrencyTable(DEFAULT_RATES, "USD")))
    plan = lat.plan(records, scenario, partitions=4, window=60.0)
    due = [r for r in records if r.emit_at - scenario.start_ts <= scenario.duration_seconds]
    assert len(plan.sends) == len(due) < len(records)  # conversions trail by up to 300 s
    click_ids = set()
    partition_of_campaign: dict[str, int] = {}
    campaign_of_click: dict[str, str] = {}
    for send in plan.sends:
        if send.topic_kind != "click":
            continue
        event = orjson.loads(send.value)
        campaign_of_click[event["click_id"]] = event["campaign_id"]
        assert (
            partition_of_campaign.setdefault(event["campaign_id"], send.partition) == send.partition
        )
        if send.click is not None:
            assert event["click_id"] not in click_ids  # the first send of a click only
            click_ids.add(event["click_id"])
            assert send.click == (event["campaign_id"], lat.window_start(event["ts"], 60.0))
    assert plan.clicks == len(click_ids) == len(campaign_of_click)
    assert plan.counts["click"] > plan.clicks  # duplicates were sent, and not counted
    for send in plan.sends:
        if send.topic_kind == "conversion":
            campaign = campaign_of_click.get(orjson.loads(send.value)["click_id"])
            assert send.partition == (-1 if campaign is None else partition_of_campaign[campaign])
        elif send.topic_kind == "spend":
            assert send.partition == -1  # murmur2 by campaign, as aggregation expects
    assert [s.at for s in plan.sends] == sorted(s.at for s in plan.sends)


def test_the_examples_in_the_docstrings() -> None:
    assert doctest.testmod(lat).failed == 0
