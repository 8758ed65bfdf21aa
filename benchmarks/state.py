"""Attribution state on disk: RSS and store size per 1M open clicks, and restart-to-ready.

    python benchmarks/state.py curve              # in-process, 3M clicks, 7-day window
    python benchmarks/state.py curve --store memory --clicks 1000000   # the dict baseline
    python benchmarks/state.py restart            # real worker, own broker, 3M open clicks

``curve`` drives the domain (:class:`stream_app.domain.attribution.Attribution`) over a
RocksDB store opened as the worker opens it (default sizes from ``Settings``), with the
engine's commit played in-process: every 5,000 clicks the state's changes are taken (and
serialised as the changelog would be, then dropped), the store sealed and persisted with
an offset. Clicks are scored (the 6 one-hot features of ``click_features`` and a
prediction), one in 30 gets a conversion, event time advances 0.1 s per click, so with the
default 7-day attribution window nothing expires: every click stays open. RSS is this
process's VmRSS (the domain, the store's caches and memtables, Python); disk is the size
of the store's directory. Reported every ``--step`` clicks.

``restart`` starts a private broker (free ports, a temporary directory), produces
``--clicks`` clicks (same shape) to ``clicks``, runs ``stream-app worker`` with
``state_store=rocksdb`` (models off; ``--models``: on, so every click is scored and stays
open for the 7-day label window) until every click is committed, reports the worker's
RSS, stops it (SIGTERM), then times three restarts from process start to ``/healthz`` 200
(partitions assigned and restored): with the current local store, after a ``kill -9``
(store up to 1 s behind), and with the store deleted (a full restore from the changelog).
Prints the worker's own "restored …" lines (records read per partition).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import orjson

from stream_app.domain.attribution import Attribution, AttributionConfig, Scored
from stream_app.domain.events import Click, Conversion
from stream_app.learning import click_features
from stream_app.runner import rocks_config
from stream_app.settings import Settings
from stream_app.state import DurableStore
from stream_app.state.opener import StoreOpener

T0 = 1_767_225_600.0
DEVICES, GEOS, CHANNELS = (
    ("mobile", "desktop", "tablet"),
    ("US", "DE", "GB", "FR"),
    ("search", "social", "display"),
)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


TS_STEP = [0.1]  # event seconds between clicks (restart --ts-step)


def click(i: int) -> Click:
    campaign = f"cmp-{i % 40:03d}"
    return Click(
        1,
        f"ev-{i}",
        f"click-{i:09d}",
        campaign,
        CHANNELS[i % 3],
        f"user-{i % 100_000}",
        T0 + i * TS_STEP[0],
        DEVICES[i % 3],
        GEOS[i % 4],
        "top" if i % 2 else "side",
        f"{campaign}-cr{i % 4}",
    )


def rocks_usage(store: DurableStore) -> tuple[float, float]:
    """Block cache and memtable bytes (MB) of a RocksDB store; zeros for another."""
    db = getattr(store, "_db", None)
    if db is None:
        return 0.0, 0.0
    cache = int(db.property_int_value("rocksdb.block-cache-usage") or 0)
    memtables = int(db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0)
    return cache / 2**20, memtables / 2**20


def curve(args: argparse.Namespace) -> None:
    settings = Settings()
    config = AttributionConfig(
        window_size_seconds=settings.window_size_seconds,
        attribution_window_seconds=settings.attribution_window_seconds,
        conversion_grace_seconds=settings.conversion_grace_seconds,
        dedup_horizon_seconds=settings.dedup_horizon_seconds,
        currency="USD",
        label_lateness_seconds=settings.allowed_lateness_seconds,
        allowed_lateness_seconds=settings.allowed_lateness_seconds,
    )
    root = Path(tempfile.mkdtemp(prefix="state-bench-"))
    try:
        opener = StoreOpener(
            args.store,
            root,
            rocks_config(settings),
        )
        store: DurableStore = opener.open("bench-attribution-changelog", 0, 0, 0).store
        state = Attribution(config, store=store)
        print(
            f"store={args.store} window={config.attribution_window_seconds / 86400:g} d "
            f"block_cache={settings.state_block_cache_bytes >> 20} MiB "
            f"write_buffer={settings.state_write_buffer_bytes >> 20} MiB x "
            f"{settings.state_max_write_buffers}; start RSS {rss_mb():.0f} MB"
        )
        print("clicks     open      RSS MB   disk MB   cache MB  memtables MB   s")
        offset, started, changelog_bytes = 0, time.perf_counter(), 0
        gc.freeze()
        for i in range(args.clicks):
            c = click(i)
            features = click_features(c)
            p = 0.02 + (i % 7) / 100
            state.on_click(c, Scored(features, p, p * 50.0))
            if i % 30 == 7:
                state.on_conversion(
                    Conversion(1, f"cv-{i}", c.click_id, 40.0, "USD", c.ts + 5), 40.0
                )
            if (i + 1) % args.batch == 0:
                state.expire_pending()
                state.expire_labels()
                state.drain_deltas()
                state.drain_unattributed()
                state.drain_labels()
                changes = state.changes()
                changelog_bytes += sum(len(orjson.dumps(v)) for _, v in changes)
                offset += len(changes)
                store.commit(store.seal(), offset)
            if (i + 1) % args.step == 0:
                gc.collect()
                disk = du_mb(root) if args.store == "rocksdb" else 0.0
                cache, memtables = rocks_usage(store)
                print(
                    f"{i + 1:>9,} {len(state.open) if args.count_open else -1:>9} "
                    f"{rss_mb():>8.0f} {disk:>9.0f} {cache:>9.0f} {memtables:>13.0f} "
                    f"{time.perf_counter() - started:>6.0f}",
                    flush=True,
                )
        print(f"changelog written: {changelog_bytes / 2**20:.0f} MB in {offset:,} records")
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- restart ------------------------------------------------------------------------------
def produce_clicks(bootstrap: str, topic: str, n: int) -> None:
    from confluent_kafka import Producer

    from stream_app.engine.clients import producer_config

    producer = Producer(producer_config(bootstrap, {"linger.ms": 50, "batch.size": 1 << 20}))
    for i in range(n):
        c = click(i)
        value = orjson.dumps({f: getattr(c, f) for f in c.__struct_fields__})
        while True:
            try:
                producer.produce(topic, value, c.click_id.encode())
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def restart(args: argparse.Namespace) -> None:
    import asyncio

    from stream_app.kafka_local import LocalKafkaConfig, start, stop
    from stream_app.topics import create_topics

    work = Path(tempfile.mkdtemp(prefix="state-restart-"))
    kafka = replace(
        LocalKafkaConfig.from_env(),
        port=free_port(),
        controller_port=free_port(),
        data_dir=work / "kafka",
    )
    info = start(kafka)
    metrics_port = free_port()
    env = {
        **os.environ,
        "STREAM_APP_BOOTSTRAP_SERVERS": info.bootstrap,
        "STREAM_APP_APP_ID": f"bench-{uuid.uuid4().hex[:6]}",
        "STREAM_APP_STATE_STORE": "rocksdb",
        "STREAM_APP_STATE_DIR": str(work / "state"),
        "STREAM_APP_MODELS_ENABLED": "true" if args.models else "false",
        "STREAM_APP_METRICS_PORT": str(metrics_port),
        "STREAM_APP_PARTITIONS": str(args.partitions),
    }
    settings = Settings(
        bootstrap_servers=info.bootstrap,
        app_id=env["STREAM_APP_APP_ID"],
        partitions=args.partitions,
    )
    log = (work / "worker.log").open("ab")

    def launch() -> tuple[subprocess.Popen[bytes], float]:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker", "--log-level", "INFO"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return proc, started

    def ready_after(proc: subprocess.Popen[bytes], started: float) -> float:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited: see {work / 'worker.log'}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{metrics_port}/healthz", timeout=1
                ) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.05)

    def restored_lines(since: int) -> list[str]:
        text = (work / "worker.log").read_text(errors="replace")[since:]
        return [
            ln.split("restored ", 1)[1] for ln in text.splitlines() if "restored attribution[" in ln
        ]

    try:
        asyncio.run(create_topics(settings))
        t = time.perf_counter()
        produce_clicks(info.bootstrap, settings.topics.clicks, args.clicks)
        print(f"produced {args.clicks:,} clicks in {time.perf_counter() - t:.0f} s")
        proc, started = launch()
        print(f"first start (empty changelog): ready in {ready_after(proc, started):.1f} s")
        t = time.perf_counter()
        wait_until_consumed(info.bootstrap, settings, args.clicks, proc.pid)
        print(f"processed {args.clicks:,} clicks in {time.perf_counter() - t:.0f} s")
        memory = worker_memory(proc.pid)
        print(f"worker RSS after {args.clicks:,} clicks: {memory['VmRSS']:.0f} MB")
        if args.no_restarts:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
            return
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        store_dir = work / "state" / "stores"
        print(f"store on disk: {du_mb(store_dir):.0f} MB")
        for case in (
            "current local store",
            "after kill -9 (store <= 1 s behind)",
            "store deleted: full restore",
        ):
            if case.startswith("store deleted"):
                shutil.rmtree(store_dir)
            mark = (work / "worker.log").stat().st_size
            proc, started = launch()
            seconds = ready_after(proc, started)
            print(f"restart, {case}: ready in {seconds:.1f} s")
            for line in restored_lines(mark):
                print("   ", line)
            if case.startswith("current"):
                time.sleep(2.0)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            else:
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
    finally:
        stop(kafka)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work)


def worker_memory(pid: int) -> dict[str, float]:
    """VmRSS, and its anonymous (heap) and file-backed parts, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def wait_until_consumed(bootstrap: str, settings: Settings, n: int, pid: int | None = None) -> None:
    """Until ``n`` clicks are committed; with ``pid``, the worker's RSS sampled every 0.25 s
    and reported per 500k committed clicks (median and max of the samples in between: a
    worker catching up a backlog swings by ~100 MB from one transaction to the next)."""
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as KafkaPartition

    probe = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": settings.consumer_group,
            "isolation.level": "read_committed",
        }
    )
    tps = [KafkaPartition(settings.topics.clicks, p) for p in range(settings.partitions)]
    reported, samples, checked = 0, [], 0.0
    try:
        while True:
            if pid is not None:
                samples.append(worker_memory(pid)["VmRSS"])
            if time.monotonic() - checked < 1.0:
                time.sleep(0.25)
                continue
            checked = time.monotonic()
            done = sum(max(0, tp.offset) for tp in probe.committed(tps, timeout=10))
            if pid is not None and (done // 500_000 > reported // 500_000 or done >= n):
                print(
                    f"  {done:>9,} committed: RSS median {statistics.median(samples):.0f} MB,"
                    f" max {max(samples):.0f} MB ({len(samples)} samples)",
                    flush=True,
                )
                reported, samples = done, []
            if done >= n:
                return
    finally:
        probe.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("curve")
    c.add_argument("--store", choices=["rocksdb", "memory"], default="rocksdb")
    c.add_argument("--clicks", type=int, default=3_000_000)
    c.add_argument("--step", type=int, default=500_000)
    c.add_argument("--batch", type=int, default=5_000)
    c.add_argument("--count-open", action="store_true", help="count open clicks (a scan)")
    r = sub.add_parser("restart")
    r.add_argument("--clicks", type=int, default=3_000_000)
    r.add_argument("--partitions", type=int, default=4)
    r.add_argument("--keep", action="store_true")
    r.add_argument("--no-restarts", action="store_true", help="stop after the worker RSS")
    r.add_argument(
        "--ts-step",
        type=float,
        default=0.1,
        help="event seconds between clicks (0.1: 3M clicks span 3.5 days of windows)",
    )
    r.add_argument(
        "--models", action="store_true", help="models on: every click is scored and stays open"
    )
    args = parser.parse_args()
    if args.command == "restart":
        TS_STEP[0] = args.ts_step
    curve(args) if args.command == "curve" else restart(args)


if __name__ == "__main__":
    main()
