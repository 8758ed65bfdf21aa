"""The generator is deterministic, its records are what it says they are, and the pure
domain fed with them in emission order reproduces its ground truth exactly."""

from __future__ import annotations

import asyncio
import base64
import math
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from stream_app.domain.attribution import Attribution, AttributionConfig
from stream_app.domain.events import Click, Conversion, Review, Spend
from stream_app.domain.money import CurrencyTable
from stream_app.domain.outcomes import Outcome
from stream_app.domain.records import ScoredReview, UnattributedConversion
from stream_app.domain.validation import EventDecoder, Rejection, Validated
from stream_app.domain.windows import Aggregation, AggregationConfig
from stream_app.generator import (
    ClickTruth,
    Emitted,
    GroundTruth,
    KafkaSink,
    Scenario,
    TrafficGenerator,
    draw_profiles,
    generate_to_file,
    generate_to_kafka,
    load_records,
)
from stream_app.generator.cli import generator_app
from stream_app.settings import DEFAULT_RATES, Settings

TABLE = CurrencyTable(DEFAULT_RATES, "USD")
DECODERS = {kind: EventDecoder(kind, TABLE) for kind in ("click", "conversion", "spend", "review")}
SCENARIO = Scenario(
    seed=11,
    n_campaigns=6,
    duration_seconds=600.0,
    clicks_per_second=25.0,
    attribution_window_seconds=600.0,
    collapse_campaign="cmp-002",
    collapse_at=300.0,
    bad_share=0.02,
    duplicate_share=0.02,
    late_share=0.05,
    orphan_share=0.05,
    outside_window_share=0.05,
    early_conversion_share=0.05,
)


@dataclass
class Generated:
    records: list[Emitted]
    truth: GroundTruth
    clicks: list[ClickTruth]


def generate(scenario: Scenario) -> Generated:
    clicks: list[ClickTruth] = []
    traffic = TrafficGenerator(scenario, on_click=clicks.append)
    records = list(traffic)
    return Generated(records, traffic.truth, clicks)


@pytest.fixture(scope="module")
def generated() -> Generated:
    return generate(SCENARIO)


# -- the pure domain, fed like the worker feeds it ---------------------------------------
@dataclass
class DomainRun:
    aggregations: list[Aggregation]
    outcomes: Counter[tuple[str, Outcome]] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    unattributed: list[UnattributedConversion] = field(default_factory=list)

    def totals(self, campaign_id: str) -> Any:
        owners = [g for g in self.aggregations if campaign_id in g.campaigns]
        assert len(owners) == 1, campaign_id
        return owners[0].campaigns[campaign_id].totals


def run_domain(
    records: Iterable[Emitted], scenario: Scenario, partitions: int = 1, flush_every: int = 500
) -> DomainRun:
    """Attribution → deltas → aggregation per partition, flushed like the agents flush."""
    attribution_config = AttributionConfig(
        window_size_seconds=60,
        attribution_window_seconds=scenario.attribution_window_seconds,
        conversion_grace_seconds=scenario.conversion_grace_seconds,
        dedup_horizon_seconds=scenario.dedup_horizon_seconds,
        currency="USD",
    )
    aggregation_config = AggregationConfig(
        window_size_seconds=60,
        allowed_lateness_seconds=120.0,
        attribution_window_seconds=scenario.attribution_window_seconds,
        dedup_horizon_seconds=scenario.dedup_horizon_seconds,
        currency="USD",
    )
    attributions = [Attribution(attribution_config) for _ in range(partitions)]
    run = DomainRun([Aggregation(aggregation_config) for _ in range(partitions)])

    def part(key: bytes) -> int:
        return zlib.crc32(key) % partitions

    def flush() -> None:
        for a in attributions:
            a.expire_pending()
            for delta in a.drain_deltas():
                run.aggregations[part(delta.campaign_id.encode())].on_delta(delta)
            run.unattributed.extend(a.drain_unattributed())
            a.changes()  # expires clicks and seen ids, as the worker does every commit
        for g in run.aggregations:
            g.drain_emissions(now=0.0)
            g.changes()

    for n, record in enumerate(records, 1):
        result = DECODERS[record.topic_kind](record.value)
        if isinstance(result, Rejection):
            run.rejections[result.reason] += 1
            continue
        event, p = result.event, part(record.key)
        if isinstance(event, Click):
            outcome = attributions[p].on_click(event)
        elif isinstance(event, Conversion):
            outcome = attributions[p].on_conversion(event, result.money)
        elif isinstance(event, Spend):
            outcome = run.aggregations[p].on_spend(event, result.money)
        else:
            assert isinstance(event, Review)
            outcome = run.aggregations[p].on_review(unscored(event))
        run.outcomes[(record.topic_kind, outcome)] += 1
        if n % flush_every == 0:
            flush()
    flush()
    # end of stream: let the watermark pass the grace period so orphans are given up on
    end = max(max(a.click_watermark, a.conversion_watermark) for a in attributions)
    end += scenario.conversion_grace_seconds + 1
    for a in attributions:
        a.click_watermark = a.conversion_watermark = end
    flush()
    return run


def unscored(review: Review) -> ScoredReview:
    """The review as the sentiment stage forwards it (scores do not matter here)."""
    return ScoredReview(
        event_id=review.event_id,
        campaign_id=review.campaign_id,
        ts=review.ts,
        rating=review.rating,
        score=None,
        label=None,
        unscored_reason="empty_text",
        truncated=False,
        model_version="none",
        scored_at=0.0,
    )


def assert_matches_truth(run: DomainRun, truth: GroundTruth) -> None:
    for campaign_id, expected in truth.campaigns.items():
        if not (expected.clicks or expected.impressions or expected.reviews):
            continue
        got = run.totals(campaign_id)
        assert (got.clicks, got.conversions, got.impressions, got.reviews) == (
            expected.clicks,
            expected.conversions,
            expected.impressions,
            expected.reviews,
        ), campaign_id
        assert got.spend == pytest.approx(expected.spend, abs=1e-6), campaign_id
        assert got.revenue == pytest.approx(expected.revenue, abs=1e-6), campaign_id
    for reason, expected_u in truth.unattributed.items():
        got_u = [u for u in run.unattributed if u.reason == reason]
        assert len(got_u) == expected_u.count, reason
        assert sum(u.revenue for u in got_u) == pytest.approx(expected_u.revenue, abs=1e-6)
    assert dict(run.rejections) == truth.bad_events
    duplicates = {k: n for (k, o), n in run.outcomes.items() if o is Outcome.DUPLICATE}
    assert duplicates == truth.duplicates


@pytest.mark.parametrize(("partitions", "flush_every"), [(1, 500), (4, 97)])
def test_domain_reproduces_ground_truth(
    generated: Generated, partitions: int, flush_every: int
) -> None:
    run = run_domain(generated.records, SCENARIO, partitions, flush_every)
    assert_matches_truth(run, generated.truth)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    window=st.sampled_from([60.0, 600.0, 7 * 86400.0]),
    late=st.floats(0.0, 0.5),
    shares=st.floats(0.0, 0.3),
    partitions=st.integers(1, 3),
)
def test_domain_matches_truth_for_any_scenario(
    seed: int, window: float, late: float, shares: float, partitions: int
) -> None:
    scenario = Scenario(
        seed=seed,
        n_campaigns=3,
        duration_seconds=120.0,
        clicks_per_second=15.0,
        attribution_window_seconds=window,
        conversion_delay_mean_seconds=40.0,
        late_share=late,
        duplicate_share=shares,
        bad_share=shares,
        orphan_share=shares,
        outside_window_share=shares,
        early_conversion_share=shares,
        collapse_campaign="cmp-001",
        collapse_at=60.0,
    )
    out = generate(scenario)
    assert_matches_truth(run_domain(out.records, scenario, partitions, 50), out.truth)


# -- determinism ------------------------------------------------------------------------
def test_same_seed_same_bytes(generated: Generated) -> None:
    again = generate(SCENARIO)
    assert again.records == generated.records
    assert again.truth.to_json() == generated.truth.to_json()
    assert again.clicks == generated.clicks


def test_iterating_again_starts_over() -> None:
    traffic = TrafficGenerator(Scenario(seed=3, duration_seconds=30.0))
    first, truth = list(traffic), traffic.truth.to_json()
    assert list(traffic) == first
    assert traffic.truth.to_json() == truth


def test_different_seed_different_bytes(generated: Generated) -> None:
    other = generate(Scenario(**{**_fields(SCENARIO), "seed": 12}))
    assert [r.value for r in other.records[:50]] != [r.value for r in generated.records[:50]]
    assert other.truth.to_json() != generated.truth.to_json()


def _fields(scenario: Scenario) -> dict[str, Any]:
    return {name: getattr(scenario, name) for name in scenario.__struct_fields__}


# -- records are what they claim --------------------------------------------------------
def test_valid_records_decode_with_matching_keys(generated: Generated) -> None:
    valid = [r for r in generated.records if r.bad is None]
    assert {r.topic_kind for r in valid} == {"click", "conversion", "spend", "review"}
    for record in valid:
        result = DECODERS[record.topic_kind](record.value)
        assert isinstance(result, Validated), (record, result)
        event = result.event
        assert event.ts == record.ts
        assert record.timestamp_ms == round(event.ts * 1000)
        expected_key = event.campaign_id if isinstance(event, Spend | Review) else event.click_id
        assert record.key == expected_key.encode()


def test_bad_records_fail_for_the_intended_reason(generated: Generated) -> None:
    bad = [r for r in generated.records if r.bad is not None]
    assert {r.bad for r in bad} == set(SCENARIO.bad_reasons)
    for record in bad:
        result = DECODERS[record.topic_kind](record.value)
        assert isinstance(result, Rejection), record
        assert result.reason == record.bad, (record, result)
        assert record.timestamp_ms is None
    non_finite = [r.value for r in bad if r.bad == "non_finite_amount"]
    assert all(any(t in v for t in (b"NaN", b"Infinity", b"1e999")) for v in non_finite)


def test_duplicates_are_identical_later_copies(generated: Generated) -> None:
    seen: set[bytes] = set()
    counted: Counter[str] = Counter()
    for record in generated.records:
        if record.duplicate:
            assert record.value in seen
            counted[record.topic_kind] += 1
        elif record.bad is None:
            assert record.value not in seen
            seen.add(record.value)
    assert dict(counted) == generated.truth.duplicates
    assert set(counted) == {"click", "conversion", "spend", "review"} - _rare(generated)


def _rare(generated: Generated) -> set[str]:
    """Kinds with too few events for a 2 % duplicate share to show up for sure."""
    return {k for k, n in generated.truth.emitted.items() if n < 200}


def test_emission_order_has_the_awkward_cases(generated: Generated) -> None:
    records, truth = generated.records, generated.truth
    assert [r.emit_at for r in records] == sorted(r.emit_at for r in records)
    high, late = 0.0, 0
    clicks_seen: set[bytes] = set()
    early = 0
    for record in records:
        if record.bad is not None or record.duplicate:
            continue
        late += record.ts < high - 1.0
        high = max(high, record.ts)
        if record.topic_kind == "click":
            clicks_seen.add(record.key)
        elif record.topic_kind == "conversion" and b"-o" not in record.key:
            early += record.key not in clicks_seen
    assert late > 100
    assert early > 5  # conversions sent before their click
    assert truth.unattributed["unknown_click"].count > 5
    assert truth.unattributed["outside_window"].count > 5
    assert sum(truth.emitted.values()) == len(records)
    assert Counter(r.topic_kind for r in records) == Counter(truth.emitted)


# -- truth ------------------------------------------------------------------------------
def test_click_truth_side_output(generated: Generated) -> None:
    clicks, truth = generated.clicks, generated.truth
    assert len(clicks) == sum(c.clicks for c in truth.campaigns.values())
    assert sum(c.converted for c in clicks) == sum(c.conversions for c in truth.campaigns.values())
    assert all(0 <= c.p_true <= 0.9 and c.expected_value >= 0 for c in clicks)
    collapse = SCENARIO.start_ts + SCENARIO.collapse_at
    cmp2 = [c for c in clicks if c.campaign_id == "cmp-002"]
    before = [c.p_true for c in cmp2 if c.ts < collapse]
    after = [c.p_true for c in cmp2 if c.ts >= collapse]
    mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
    assert mean_after == pytest.approx(mean_before * SCENARIO.collapse_factor, rel=0.15)
    assert not any(b"p_true" in r.value for r in generated.records[:1000])


def test_truth_json_round_trip(generated: Generated) -> None:
    data = generated.truth.to_json()
    back = GroundTruth.from_json(data)
    assert back.to_json() == data
    assert back.scenario == SCENARIO
    for campaign_id, c in generated.truth.campaigns.items():
        assert back.campaigns[campaign_id].revenue == round(c.revenue, 6)
        assert back.campaigns[campaign_id].clicks == c.clicks
    assert set(orjson.loads(data)["unattributed"]) == {"unknown_click", "outside_window"}


def test_profiles_differ_and_mix_profit_and_loss() -> None:
    profiles = draw_profiles(5, 8)
    assert len({p.channel for p in profiles}) == 4
    assert any(p.expected_roas > 1.5 for p in profiles)
    assert any(p.expected_roas < 0.8 for p in profiles)
    assert {p.currency for p in profiles} == {"USD", "EUR", "GBP"}
    assert len({(p.cpc, p.ctr, p.cvr, p.aov) for p in profiles}) == 8
    assert min(p.review_tone for p in profiles) < 0 < max(p.review_tone for p in profiles)
    assert draw_profiles(5, 8) == profiles


def test_scenario_rejects_unreachable_exactness() -> None:
    with pytest.raises(ValueError, match="conversion_grace_seconds"):
        Scenario(late_max_seconds=4000.0)
    with pytest.raises(ValueError, match="collapse_campaign"):
        Scenario(n_campaigns=2, collapse_campaign="cmp-003")
    with pytest.raises(ValueError, match="bad_share"):
        Scenario(bad_share=1.5)


# -- sinks ------------------------------------------------------------------------------
def test_jsonl_round_trip(tmp_path: Path) -> None:
    scenario = Scenario(seed=4, duration_seconds=60.0, bad_share=0.1, duplicate_share=0.05)
    path = tmp_path / "traffic.jsonl"
    truth = generate_to_file(scenario, path)
    original = list(TrafficGenerator(scenario))
    assert truth.to_json() == generate(scenario).truth.to_json()
    loaded = list(load_records(path))
    assert [(r.topic_kind, r.key, r.value, r.bad) for r in loaded] == [
        (r.topic_kind, r.key, r.value, r.bad) for r in original
    ]
    assert [r.timestamp_ms for r in loaded] == [r.timestamp_ms for r in original]
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    for line, record in zip(lines, original, strict=True):
        assert base64.b64decode(line["value_b64"]) == record.value
        if record.bad is None:
            assert line["value"] == orjson.loads(record.value)
        if record.bad in ("bad_json", "non_finite_amount"):
            assert "value" not in line


def test_csv_replay_input(tmp_path: Path) -> None:
    path = tmp_path / "hand.csv"
    click = (
        '{"schema_version":1,"event_id":"e1","click_id":"k1","campaign_id":"cmp-001",'
        '"channel":"search","user_id":"u1","ts":1700000000.5}'
    )
    spend = (
        '{"schema_version":1,"event_id":"e2","campaign_id":"cmp-001","channel":"search",'
        '"amount":1.5,"currency":"USD","impressions":10,"ts":1700000001}'
    )
    rows = [("clicks", "", click), ("spend", "cmp-001", spend), ("conversion", "k1", "{oops")]
    text = "topic,key,value\n" + "".join(
        f'{t},{k},"{v.replace(chr(34), chr(34) * 2)}"\n' for t, k, v in rows
    )
    path.write_text(text)
    records = list(load_records(path))
    assert [(r.topic_kind, r.key) for r in records] == [
        ("click", b"k1"),
        ("spend", b"cmp-001"),
        ("conversion", b"k1"),
    ]
    assert records[0].value == click.encode()
    assert [r.timestamp_ms for r in records] == [1700000000500, 1700000001000, None]


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    async def flush(self) -> None:
        self.events.append("flush")

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value, timestamp_ms))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def test_generate_to_kafka_sends_everything_in_order() -> None:
    scenario = Scenario(seed=9, duration_seconds=60.0, bad_share=0.05)
    producer = FakeProducer()
    truth = asyncio.run(generate_to_kafka(scenario, Settings(), producer=producer))
    expected = list(TrafficGenerator(scenario))
    names = {"click": "clicks", "conversion": "conversions", "spend": "spend", "review": "reviews"}
    assert producer.sent == [
        (names[r.topic_kind], r.key, r.value, r.timestamp_ms) for r in expected
    ]
    assert producer.events == ["start", "flush", "stop"]
    assert truth.total_emitted == len(expected)


def test_kafka_sink_paces_to_rate() -> None:
    records = list(TrafficGenerator(Scenario(seed=1, duration_seconds=10.0)))[:200]

    async def send() -> float:
        started = time.monotonic()
        async with KafkaSink(Settings(), rate=2000.0, producer=FakeProducer()) as sink:
            await sink.send_all(records)
        return time.monotonic() - started

    assert asyncio.run(send()) >= 0.09  # 200 records at 2000/s


def test_cli_generate_to_file(tmp_path: Path) -> None:
    out, truth_path = tmp_path / "t.jsonl", tmp_path / "truth.json"
    result = CliRunner().invoke(
        generator_app,
        [
            "generate",
            "--duration", "30",
            "--seed", "5",
            "--attribution-window", "600",
            "--collapse-campaign", "cmp-001",
            "--out", str(out),
            "--truth", str(truth_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    truth = GroundTruth.from_json(truth_path.read_bytes())
    assert truth.scenario is not None
    assert truth.scenario.attribution_window_seconds == 600.0
    assert truth.total_emitted == len(out.read_bytes().splitlines())
    assert not math.isnan(truth.campaigns["cmp-001"].spend)
