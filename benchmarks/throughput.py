"""Events/s of one worker against plain aiokafka consuming the same topics, side by side.

    python benchmarks/throughput.py --clicks 200000

Fills fresh topics on the local broker (``stream-app kafka start``) with seeded clicks,
conversions (10 %) and spend, then measures in one run, ``--repeat`` times each:

* baseline: plain aiokafka ``getmany`` + orjson decode + per-campaign sums, no state,
  no outputs, no commits (an upper bound for any Python consumer on this machine);
* worker: the full pipeline (validation, dedup, attribution, windows, outputs,
  changelogs, one transaction per commit interval), from first to last record, with the
  online models (every click scored, every label learned, model snapshots in the
  changelog) and again with ``models_enabled=False``.

The attribution window is 300 s of event time (the traffic spans 0.01 s per click), so
negative labels flow as well as positive ones. Prints medians and the ratios. Results are
noisy on 2 shared cores: compare ratios from the same run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_app.runner import build_worker
from stream_app.settings import Settings, Topics
from stream_app.topics import create_topics

T0 = 1_767_225_600.0


def traffic(clicks: int, campaigns: int, seed: int) -> list[tuple[str, bytes, bytes]]:
    rng = random.Random(seed)
    out: list[tuple[str, bytes, bytes]] = []
    for n in range(clicks):
        ts = T0 + n * 0.01
        campaign = f"cmp-{rng.randrange(campaigns):03d}"
        key = f"k{n}".encode()
        out.append(
            (
                "clicks",
                key,
                orjson.dumps(
                    {
                        "schema_version": 1,
                        "event_id": f"c{n}",
                        "click_id": f"k{n}",
                        "campaign_id": campaign,
                        "channel": "search",
                        "user_id": f"u{rng.randrange(10**6)}",
                        "ts": ts,
                        "device": rng.choice(["mobile", "desktop"]),
                        "geo": "DE",
                        "placement": "feed",
                        "creative": f"cr-{rng.randrange(5)}",
                    }
                ),
            )
        )
        if rng.random() < 0.1:
            out.append(
                (
                    "conversions",
                    key,
                    orjson.dumps(
                        {
                            "schema_version": 1,
                            "event_id": f"v{n}",
                            "click_id": f"k{n}",
                            "revenue": round(rng.uniform(5, 80), 2),
                            "currency": "USD",
                            "ts": ts + 30,
                        }
                    ),
                )
            )
        if n % 50 == 0:
            out.append(
                (
                    "spend",
                    campaign.encode(),
                    orjson.dumps(
                        {
                            "schema_version": 1,
                            "event_id": f"s{n}",
                            "campaign_id": campaign,
                            "channel": "search",
                            "amount": 12.5,
                            "currency": "USD",
                            "impressions": 2000,
                            "ts": ts,
                        }
                    ),
                )
            )
    return out


async def fill(settings: Settings, records: list[tuple[str, bytes, bytes]]) -> None:
    names = {
        "clicks": settings.topics.clicks,
        "conversions": settings.topics.conversions,
        "spend": settings.topics.spend,
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        for kind, key, value in records:
            await producer.send(names[kind], value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def baseline(settings: Settings, total: int) -> float:
    t = settings.topics
    consumer = AIOKafkaConsumer(
        t.clicks,
        t.conversions,
        t.spend,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"baseline-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    sums: Counter[str] = Counter()
    seen = 0
    started = 0.0
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            if batch and not started:
                started = time.perf_counter()
            for records in batch.values():
                for record in records:
                    event = orjson.loads(record.value)
                    sums[event.get("campaign_id") or event["click_id"][:2]] += 1
                seen += len(records)
    finally:
        await consumer.stop()
    return total / (time.perf_counter() - started)


async def worker_rate(settings: Settings, total: int) -> float:
    """From the end of the group join and state restore to the last commit."""
    run_settings = settings.model_copy(update={"app_id": f"bench-{uuid.uuid4().hex[:6]}"})
    await create_topics(run_settings)  # its own state changelogs
    worker = build_worker(run_settings)
    task = asyncio.create_task(worker.run())
    await worker.ready.wait()
    started = time.perf_counter()
    while worker.processed_records < total:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    worker.stop()
    await task  # commits the last transaction
    return total / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=200_000)
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    settings = Settings(
        topics=Topics(prefix=f"bench-{uuid.uuid4().hex[:6]}-"),
        metrics_port=0,
        attribution_window_seconds=300.0,
    )
    await create_topics(settings)
    records = traffic(args.clicks, args.campaigns, args.seed)
    t0 = time.perf_counter()
    await fill(settings, records)
    print(
        f"filled {len(records):,} records in {time.perf_counter() - t0:.1f}s "
        f"({settings.partitions} partitions per topic)"
    )

    no_models = settings.model_copy(update={"models_enabled": False})
    rates: dict[str, list[float]] = {"baseline": [], "worker": [], "no-models": []}
    for _ in range(args.repeat):
        rates["baseline"].append(await baseline(settings, len(records)))
        rates["worker"].append(await worker_rate(settings, len(records)))
        rates["no-models"].append(await worker_rate(no_models, len(records)))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, values in rates.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name:9s} median {medians[name]:>10,.0f} events/s   runs: {runs}")
    print(f"ratio worker/baseline:           {medians['worker'] / medians['baseline']:.2f}")
    print(f"ratio no-models/baseline:        {medians['no-models'] / medians['baseline']:.2f}")
    print(f"ratio worker/no-models (models): {medians['worker'] / medians['no-models']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
