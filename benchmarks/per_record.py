"""What one input record and one click cost in the worker's Python, each step side by side
with the form it replaced, in one process (no broker).

    python benchmarks/per_record.py              # 5 rounds, medians
    python benchmarks/per_record.py --rounds 9

Rows (docs/throughput.md, "Per record: the second pass"), µs per record or click:

* ``group 5,000 messages``: ``engine.worker._by_partition`` over librdkafka ``Message``
  objects, against the same loop building a named tuple per record (the old ``Record``);
* ``decode 5,000 clicks``: ``EventDecoder.decode_all`` (one msgspec call for a clean
  batch) against ``EventDecoder.__call__`` per record;
* ``Attribution.on_click``: the domain alone over 200,000 clicks, no model, memory store
  (now only: its calls were inlined in place);
* ``Scored``: a msgspec struct against the named tuple it was;
* ``click_features``: the shared dict of a field combination against building it.

Then the floor under the per-click path, µs per click over the same 200,000 clicks as JSON
(docs/throughput.md, "The floor in CPython"):

* ``decode only``: ``EventDecoder.decode_all`` per 5,000;
* ``decode + minimal state``: a toy de-duplicating click index, about the least Python
  can do per click (a set of event ids, a dict of clicks, a list per time bucket, a count
  per campaign and minute), with no changelog, outputs, lateness or conversions;
* ``decode + on_click``: the same decode, then the product's ``Attribution.on_click``;

and the least the models add per click, each alone:

* ``score``: ``ConversionModel.p_conversion_many`` per 5,000 clicks' features;
* ``learn``: ``ConversionModel.learn_many`` per 5,000 labels, one click in 30 converted
  (the product's negative sampling decides which negatives River learns);
* ``encode ClickScored``: each click's ``clicks-scored`` record encoded (not produced).

The collector runs with the worker's thresholds (``runner.configure_gc``) and the inputs
are frozen out of its way, as in a worker process.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import msgspec
import orjson
from confluent_kafka import Message

from stream_app.domain.attribution import Attribution, AttributionConfig, Scored
from stream_app.domain.events import Click
from stream_app.domain.money import CurrencyTable
from stream_app.domain.records import ClickScored
from stream_app.domain.validation import EventDecoder
from stream_app.engine.worker import _by_partition
from stream_app.learning import ConversionModel
from stream_app.learning.features import _build, click_features
from stream_app.runner import configure_gc

N = 5_000
T0 = 1_767_225_600.0


class TupleRecord(NamedTuple):
    """The engine's ``Record`` before it became a struct."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None


class TupleScored(NamedTuple):
    """``Scored`` before it became a struct."""

    features: dict[str, float]
    p_conversion: float
    expected_value: float


def group_as_tuples(messages: list[Message]) -> dict[tuple[str, int], list[TupleRecord]]:
    """The old ``_by_partition``: one named tuple per message, appended as read."""
    batches: dict[tuple[str, int], list[TupleRecord]] = {}
    for m in messages:
        if m.error() is not None:
            continue
        topic, partition = m.topic() or "", m.partition() or 0
        batch = batches.get((topic, partition))
        if batch is None:
            batch = batches[(topic, partition)] = []
        kind, timestamp = m.timestamp()
        when = timestamp if kind != 0 else None
        batch.append(TupleRecord(topic, partition, m.offset() or 0, when, m.key(), m.value()))
    return batches


def click(i: int) -> Click:
    return Click(
        schema_version=1,
        event_id=f"e-{i:012d}",
        click_id=f"k-{i:012d}",
        campaign_id=f"cmp-{i % 20:03d}",
        channel="search",
        user_id=f"u-{i % 5000}",
        ts=T0 + i * 0.005,
        device=("mobile", "desktop", "tablet")[i % 3],
        geo=("US", "DE", "FR", "GB")[i % 4],
        placement="top" if i % 2 else "side",
        creative=f"cmp-{i % 20:03d}-cr{i % 4}",
    )


def per_item(fn: Callable[[], object], items: int, rounds: int) -> float:
    """Median µs per item of ``fn()`` over ``rounds`` calls (CPU time)."""
    times = []
    for _ in range(rounds):
        started = time.process_time()
        fn()
        times.append((time.process_time() - started) / items * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    configure_gc()
    clicks = [click(i) for i in range(200_000)]
    values = [orjson.dumps({f: getattr(c, f) for f in c.__struct_fields__}) for c in clicks[:N]]
    messages = [
        Message(topic="clicks", partition=i % 4, offset=i, key=b"k", value=v, timestamp=(1, 5))
        for i, v in enumerate(values)
    ]
    decode = EventDecoder("click", CurrencyTable({"USD": 1.0}, "USD"))
    config = AttributionConfig(
        window_size_seconds=60,
        attribution_window_seconds=7 * 86400,
        conversion_grace_seconds=600,
        dedup_horizon_seconds=86400,
        currency="USD",
        allowed_lateness_seconds=120,
    )
    features = {"campaign_id=cmp-001": 1.0}
    n = len(clicks)
    fields = [(c.campaign_id, c.channel, c.device, c.geo, c.placement, c.creative) for c in clicks]
    gc.freeze()

    def on_clicks() -> None:
        state = Attribution(config)
        for c in clicks:
            state.on_click(c)

    rows = [
        (
            "group 5,000 messages",
            per_item(lambda: group_as_tuples(messages), N, rounds),
            per_item(lambda: _by_partition(messages), N, rounds),
        ),
        (
            "decode 5,000 clicks",
            per_item(lambda: [decode(v) for v in values], N, rounds),
            per_item(lambda: decode.decode_all(values), N, rounds),
        ),
        ("Attribution.on_click", float("nan"), per_item(on_clicks, n, rounds)),
        (
            "Scored",
            per_item(lambda: [TupleScored(features, 0.1, 0.2) for _ in clicks], n, rounds),
            per_item(lambda: [Scored(features, 0.1, 0.2) for _ in clicks], n, rounds),
        ),
        (
            "click_features",
            per_item(lambda: [_build(f) for f in fields], n, rounds),
            per_item(lambda: [click_features(c) for c in clicks], n, rounds),
        ),
    ]
    print(f"µs per record or click, CPU time, median of {rounds} rounds")
    print(f"{'step':24s} {'before':>8s} {'now':>8s} {'now/before':>11s}")
    for name, before, now in rows:
        print(f"{name:24s} {before:8.2f} {now:8.2f} {now / before:11.2f}")
    floor(clicks, decode, config, rounds)


def minimal_state(events: list[Click]) -> None:
    """A toy de-duplicating click index: about the least Python does per click (the floor)."""
    seen: set[str] = set()
    index: dict[str, tuple[str, float]] = {}
    buckets: dict[int, list[str]] = {}
    counts: dict[tuple[str, float], int] = {}
    for c in events:
        if c.event_id in seen:
            continue
        seen.add(c.event_id)
        index[c.click_id] = (c.campaign_id, c.ts)
        bucket = int(c.ts // 3600)
        log = buckets.get(bucket)
        if log is None:
            log = buckets[bucket] = []
        log.append(c.click_id)
        key = (c.campaign_id, c.ts // 60 * 60)
        counts[key] = counts.get(key, 0) + 1


def floor(
    clicks: list[Click], decode: EventDecoder, config: AttributionConfig, rounds: int
) -> None:
    """µs per click: decoding alone, decoding plus the minimal state, decoding plus the
    product's ``on_click``, over the same JSON clicks."""
    encode = msgspec.json.Encoder().encode
    values = [encode(c) for c in clicks]
    batches = [values[i : i + N] for i in range(0, len(values), N)]
    gc.freeze()
    n = len(values)

    def decoded() -> list[Click]:
        out: list[Click] = []
        for batch in batches:
            events = decode.decode_all(batch)
            assert events is not None  # clean JSON: one call per batch
            out.extend(events)  # type: ignore[arg-type]  # a click decoder's events are clicks
        return out

    def with_on_click() -> None:
        state = Attribution(config)
        for c in decoded():
            state.on_click(c)

    features = [click_features(c) for c in clicks]
    feature_batches = [features[i : i + N] for i in range(0, n, N)]
    converted = [i % 30 == 0 for i in range(n)]

    def score() -> None:
        model = ConversionModel()
        for batch in feature_batches:
            model.p_conversion_many(batch)

    def learn() -> None:
        model = ConversionModel()
        for i, batch in enumerate(feature_batches):
            model.learn_many(batch, [0.03] * len(batch), converted[i * N : (i + 1) * N])

    def encode_scored() -> None:
        for c in clicks:
            record = ClickScored(
                click_id=c.click_id,
                campaign_id=c.campaign_id,
                ts=c.ts,
                p_conversion=0.03,
                expected_value=1.2,
                currency="USD",
                model_version="v1",
                scored_at=c.ts,
            )
            encode(record)

    rows = [
        ("decode only", per_item(decoded, n, rounds)),
        ("decode + minimal state", per_item(lambda: minimal_state(decoded()), n, rounds)),
        ("decode + on_click", per_item(with_on_click, n, rounds)),
        ("score", per_item(score, n, rounds)),
        ("learn", per_item(learn, n, rounds)),
        ("encode ClickScored", per_item(encode_scored, n, rounds)),
    ]
    least = rows[1][1]
    print(f"\nthe floor, µs per click of {n:,} JSON clicks, CPU time, median of {rounds} rounds")
    print(f"{'step':24s} {'µs':>8s} {'/ minimal':>11s}")
    for name, us in rows:
        print(f"{name:24s} {us:8.2f} {us / least:11.2f}")


if __name__ == "__main__":
    main()
