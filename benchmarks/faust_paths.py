"""Faust per-event paths vs. a plain aiokafka batch loop, on one pre-filled topic.

    nice -n 10 python benchmarks/faust_paths.py --events 200000

Fills one 4-partition topic with ~200-byte JSON click events (aiokafka, linger_ms), then in
the same run measures events/s for:

* ``baseline``      -- aiokafka ``getmany(max_records=5000)`` + ``orjson.loads`` + dict counts,
                       in this process;
* Faust variants    -- each a separate ``python benchmarks/faust_app.py worker`` process with a
                       fresh app id (consumer group, changelog topics), timed by the agent
                       itself from its first event to its N-th (see faust_app.py); the driver
                       waits for the agent's JSON line, then kills the worker.

Each run also records process CPU-us per event (``time.process_time``), which is steadier
than events/s on a shared 2-core machine. Results and their reading: docs/faust-batching.md.

Prints a markdown table of medians and the ratio to the baseline's median; with
``--profile`` also cProfiles a few Faust workers and prints the hottest functions.
The broker is ``--bootstrap`` (default ``127.0.0.1:$STREAM_APP_KAFKA_PORT`` or 9092);
start one with ``stream-app kafka start``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
FAUST_APP = ROOT / "benchmarks" / "faust_app.py"
PARTITIONS = 4
CAMPAIGNS = [f"cmp-{i:03d}" for i in range(20)]

TUNED = {
    "broker_max_poll_records": 5000,  # default None (aiokafka: no cap per poll)
    "stream_buffer_maxsize": 32768,  # default 4096
    "consumer_max_fetch_size": 4 * 1024 * 1024,  # default 1 MiB per partition
}

# `faust worker -l warn` (Faust's default level) keeps the root logger at DEBUG so its
# terminal spinner sees every record: each aiokafka/faust ``log.debug`` on the hot path then
# builds a LogRecord. ``-l info`` disables the spinner and with it that cost.
LOGLEVEL = {"faust_empty_info": "info", "faust_textbook_info": "info", "faust_take_info": "info"}

# name -> (faust_app variant, extra settings, which --runs option applies)
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "faust_textbook": ("textbook", {}, "runs"),
    "faust_empty": ("empty", {}, "runs"),
    "faust_take": ("take", {}, "runs"),
    "faust_take_events": ("take_events", {}, "extra_runs"),
    "faust_noack_take": ("noack_take", {}, "extra_runs"),
    "faust_take_with_timestamp": ("take_with_timestamp", {}, "extra_runs"),
    "faust_empty_tuned": ("empty", TUNED, "runs"),
    "faust_take_tuned": ("take", TUNED, "runs"),
    "faust_textbook_tuned": ("textbook", TUNED, "extra_runs"),
    # changelog writes are sent one small produce request at a time with linger 0
    "faust_textbook_linger": ("textbook", {"producer_linger": 0.05}, "extra_runs"),
    "faust_empty_info": ("empty", {}, "runs"),
    "faust_take_info": ("take", {}, "extra_runs"),
    "faust_textbook_info": ("textbook", {}, "runs"),
}


def make_event(i: int, rnd: random.Random) -> tuple[bytes, bytes]:
    campaign = rnd.choice(CAMPAIGNS)
    value = {
        "schema_version": 1,
        "event_id": f"e{i}",
        "click_id": f"k{i}",
        "campaign_id": campaign,
        "channel": rnd.choice(("search", "social", "display", "email")),
        "user_id": f"u{rnd.randrange(100_000)}",
        "ts": 1767225600.0 + i * 0.01,
        "device": rnd.choice(("mobile", "desktop", "tablet")),
        "geo": rnd.choice(("DE", "FR", "US", "GB", "ES")),
        "placement": rnd.choice(("feed", "sidebar", "top")),
        "creative": f"cr-{rnd.randrange(5)}",
    }
    return campaign.encode(), orjson.dumps(value)


async def fill(bootstrap: str, topic: str, n: int) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks=1
    )
    await producer.start()
    rnd = random.Random(42)
    sizes = 0
    t0 = time.perf_counter()
    try:
        pending = []
        for i in range(n):
            key, value = make_event(i, rnd)
            sizes += len(value)
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    dt = time.perf_counter() - t0
    return {"events": n, "avg_value_bytes": sizes / n, "seconds": dt, "events_per_s": n / dt}


async def baseline(bootstrap: str, topic: str, n: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"fb-baseline-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    counts: dict[str, int] = {}
    loads = orjson.loads
    seen = n_first = 0
    t_first = cpu_first = 0.0
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                for r in records:
                    c = loads(r.value)["campaign_id"]
                    counts[c] = counts.get(c, 0) + 1
                if seen == 0 and records:
                    t_first, n_first = time.perf_counter(), len(records)
                    cpu_first = time.process_time()
                seen += len(records)
        t_end, cpu_end = time.perf_counter(), time.process_time()
        await consumer.commit()
    finally:
        await consumer.stop()
    assert sum(counts.values()) == seen
    return {
        "n": seen,
        "n_first": n_first,
        "seconds": t_end - t_first,
        "events_per_s": (seen - n_first) / (t_end - t_first),
        "cpu_us_per_event": (cpu_end - cpu_first) / (seen - n_first) * 1e6,
    }


def run_faust(
    name: str, bootstrap: str, topic: str, n: int, timeout: float, profile: str | None = None
) -> dict[str, Any] | None:
    variant, settings, _ = VARIANTS[name]
    app_id = f"fb-{name.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    out = Path(f"/tmp/faust-bench-out/{app_id}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "FB_VARIANT": variant,
        "FB_APP_ID": app_id,
        "FB_TOPIC": topic,
        "FB_BROKER": bootstrap,
        "FB_N": str(n),
        "FB_OUT": str(out),
        "FB_SETTINGS": json.dumps(settings),
    }
    if profile:
        env["FB_PROFILE"] = profile
    log = open(f"/tmp/faust-bench-out/{app_id}.log", "w")  # noqa: SIM115 -- closed in finally
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(FAUST_APP), "worker", "-l", LOGLEVEL.get(name, "warn")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    result = None
    try:
        while time.monotonic() - t0 < timeout:
            if out.exists() and out.read_text().strip():
                result = json.loads(out.read_text().splitlines()[0])
                break
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        log.close()
    if result is None:
        print(f"  !! {name} produced no result (see /tmp/faust-bench-out/{app_id}.log)")
    else:
        result["wall_incl_startup"] = time.monotonic() - t0
    return result


def summarize_profile(path: str, top: int) -> None:
    st = pstats.Stats(path)
    st.sort_stats("tottime").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default_bootstrap = f"127.0.0.1:{os.environ.get('STREAM_APP_KAFKA_PORT', '9092')}"
    ap.add_argument("--bootstrap", default=default_bootstrap)
    ap.add_argument("--events", type=int, default=200_000, help="topic size and baseline N")
    ap.add_argument(
        "--faust-events",
        type=int,
        default=50_000,
        help="N for each Faust worker (all Faust paths are >20x slower; their "
        "rate is steady after the first few hundred events)",
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--extra-runs", type=int, default=1, help="runs of source-identical variants")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma list of Faust variants")
    ap.add_argument("--timeout", type=float, default=240.0, help="per Faust run, seconds")
    ap.add_argument("--profile", action="store_true", help="also cProfile textbook/empty/take")
    ap.add_argument("--profile-events", type=int, default=30_000)
    ap.add_argument("--json", default="/tmp/faust-bench-out/results.json")
    args = ap.parse_args()

    topic = f"faust-bench-clicks-{uuid.uuid4().hex[:6]}"
    print(f"broker {args.bootstrap}, topic {topic}, nice={os.nice(0)}, cpus={os.cpu_count()}")
    info = asyncio.run(fill(args.bootstrap, topic, args.events))
    print(
        f"filled {info['events']} events, avg value {info['avg_value_bytes']:.0f} B, "
        f"{info['events_per_s']:.0f} ev/s"
    )

    results: dict[str, list[dict[str, Any]]] = {"baseline": []}
    ns: dict[str, int] = {"baseline": args.events}
    names = [v for v in args.variants.split(",") if v]
    # Interleave: round r runs baseline then every variant once, so drift in the shared
    # machine's load hits all variants alike.
    rounds = max(args.runs, args.extra_runs)
    for r in range(rounds):
        if r < args.runs:
            res = asyncio.run(baseline(args.bootstrap, topic, args.events))
            results["baseline"].append(res)
            print(
                f"[{r + 1}] baseline: {res['events_per_s']:,.0f} ev/s, "
                f"{res['cpu_us_per_event']:.1f} CPU-us/event"
            )
        for name in names:
            runs_key = VARIANTS[name][2]
            if r >= getattr(args, runs_key):
                continue
            n = min(args.faust_events, args.events)
            ns[name] = n
            res = run_faust(name, args.bootstrap, topic, n, args.timeout)
            results.setdefault(name, [])
            if res:
                results[name].append(res)
                print(
                    f"[{r + 1}] {name} (N={n}): {res['events_per_s']:,.0f} ev/s, "
                    f"{res['cpu_us_per_event']:.1f} CPU-us/event "
                    f"(wall incl. start-up {res['wall_incl_startup']:.1f}s)"
                )

    base = statistics.median(x["events_per_s"] for x in results["baseline"])
    base_cpu = statistics.median(x["cpu_us_per_event"] for x in results["baseline"])
    print(
        "\n| path | N | runs | events/s (median) | min-max | vs baseline "
        "| CPU-us/event (median) | CPU vs baseline |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rs in results.items():
        if not rs:
            print(f"| {name} | {ns.get(name)} | 0 | failed | | | | |")
            continue
        eps = [x["events_per_s"] for x in rs]
        med = statistics.median(eps)
        cpu = statistics.median(x["cpu_us_per_event"] for x in rs)
        print(
            f"| {name} | {ns[name]:,} | {len(rs)} | {med:,.0f} | "
            f"{min(eps):,.0f}-{max(eps):,.0f} | {med / base:.3f}x | {cpu:.1f} | "
            f"{cpu / base_cpu:.1f}x |"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"fill": info, "ns": ns, "results": results}, indent=1))
    print(f"\nraw results: {args.json}")

    if args.profile:
        for name in ("faust_empty", "faust_textbook", "faust_take"):
            path = f"/tmp/faust-bench-out/{name}.prof"
            res = run_faust(name, args.bootstrap, topic, args.profile_events, args.timeout, path)
            if res:
                print(
                    f"\n### cProfile {name} (N={args.profile_events}, "
                    f"{res['events_per_s']:,.0f} ev/s under the profiler)"
                )
                summarize_profile(path, 25)


if __name__ == "__main__":
    main()
