"""One Faust worker for ``benchmarks/faust_paths.py``; the variant comes from the environment.

Run by the driver as ``python benchmarks/faust_app.py worker -l warn`` with:

* ``FB_VARIANT``  -- textbook | empty | take | take_events | noack_take | take_with_timestamp
* ``FB_APP_ID``   -- fresh per run, so the consumer group reads the topic from the start
* ``FB_TOPIC``, ``FB_BROKER``, ``FB_N`` (events to count), ``FB_OUT`` (JSON-lines result file)
* ``FB_SETTINGS`` -- optional JSON object of extra ``faust.App`` settings (the tuning runs)
* ``FB_PROFILE``  -- optional path: cProfile the event loop thread from the first event to
  the N-th and dump the stats there.

When the agent reaches N events it appends one JSON line to ``FB_OUT`` with the wall/monotonic
times of its first and N-th event, then idles until the driver kills the process.

Throughput is ``(n_end - n_first) / (t_end - t_first)``: ``n_first`` is how many events had
been consumed when ``t_first`` was taken (1 for the per-event agents, the first batch's size
for the ``take`` family), so every variant is measured over the events it processed between
its two timestamps.
"""

from __future__ import annotations

import collections
import cProfile
import json
import os
import time
from typing import Any

import faust
import orjson

VARIANT = os.environ.get("FB_VARIANT", "empty")
APP_ID = os.environ.get("FB_APP_ID", f"fb-{VARIANT}-{os.getpid()}")
TOPIC = os.environ.get("FB_TOPIC", "faust-bench-clicks")
BROKER = os.environ.get("FB_BROKER", "127.0.0.1:9092")
N = int(os.environ.get("FB_N", "200000"))
OUT = os.environ.get("FB_OUT", "/tmp/faust-bench-result.jsonl")
PROFILE = os.environ.get("FB_PROFILE")
EXTRA: dict[str, Any] = json.loads(os.environ.get("FB_SETTINGS") or "{}")
PARTITIONS = 4
BATCH = 2000

os.makedirs("/tmp/faust-bench-data", exist_ok=True)

app = faust.App(
    APP_ID,
    broker=f"kafka://{BROKER}",
    store="memory://",
    web_enabled=False,
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    datadir=f"/tmp/faust-bench-data/{APP_ID}",
    consumer_auto_offset_reset="earliest",
    **EXTRA,
)

# json: Faust decodes each value with its json codec (orjson when installed) before the
# agent sees it; raw: the agent gets bytes and decodes itself (in batches for take_events).
_raw_value = VARIANT in ("empty", "take_events", "noack_take")
topic = app.topic(
    TOPIC,
    key_type=bytes,
    value_type=bytes if _raw_value else None,
    key_serializer="raw",
    value_serializer="raw" if _raw_value else "json",
    partitions=PARTITIONS,
)

# Changelog on (the default). The batch variants write outside the per-event iteration, where
# Faust's current_event() is None, so they must let the producer's partitioner pick the
# changelog partition (use_partitioner=True); the textbook agent keeps the default.
counts = app.Table(
    "campaign_counts",
    default=int,
    partitions=PARTITIONS,
    use_partitioner=VARIANT != "textbook",
)


class _Clock:
    """First/N-th event bookkeeping shared by every variant."""

    def __init__(self) -> None:
        self.n = 0
        self.first_wall = self.first_mono = self.first_cpu = 0.0
        self.n_first = 0
        self.done = False
        self.prof: cProfile.Profile | None = None

    def add(self, k: int) -> None:
        if self.n == 0:
            self.first_wall, self.first_mono = time.time(), time.perf_counter()
            self.first_cpu = time.process_time()
            self.n_first = k
            if PROFILE:
                self.prof = cProfile.Profile()
                self.prof.enable()
        self.n += k
        if self.n >= N and not self.done:
            self.done = True
            end_mono, end_wall, end_cpu = time.perf_counter(), time.time(), time.process_time()
            if self.prof is not None:
                self.prof.disable()
                self.prof.dump_stats(PROFILE)
            line = {
                "variant": VARIANT,
                "app_id": APP_ID,
                "n": self.n,
                "n_first": self.n_first,
                "first_wall": self.first_wall,
                "end_wall": end_wall,
                "seconds": end_mono - self.first_mono,
                "events_per_s": (self.n - self.n_first) / (end_mono - self.first_mono),
                # process CPU (all threads) per event: less sensitive to a busy shared machine
                "cpu_us_per_event": (end_cpu - self.first_cpu) / (self.n - self.n_first) * 1e6,
                "settings": EXTRA,
                "table_total": sum(counts.values()) if VARIANT != "empty" else None,
            }
            with open(OUT, "a") as fh:
                fh.write(json.dumps(line) + "\n")


clock = _Clock()


def _campaign_counts(values: list[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(v["campaign_id"] for v in values)


def _write_batch(c: collections.Counter[str]) -> None:
    for campaign, k in c.items():  # one table write (one changelog record) per campaign
        counts[campaign] += k


if VARIANT == "textbook":

    @app.agent(topic)
    async def textbook(stream: faust.StreamT) -> None:
        async for event in stream:
            counts[event["campaign_id"]] += 1
            clock.add(1)

elif VARIANT == "empty":

    @app.agent(topic)
    async def empty(stream: faust.StreamT) -> None:
        async for _ in stream:
            clock.add(1)

elif VARIANT == "take":

    @app.agent(topic)
    async def take(stream: faust.StreamT) -> None:
        async for values in stream.take(BATCH, within=1):
            _write_batch(_campaign_counts(values))
            clock.add(len(values))

elif VARIANT == "take_events":

    @app.agent(topic)
    async def take_events(stream: faust.StreamT) -> None:
        loads = orjson.loads
        async for events in stream.take_events(BATCH, within=1):
            _write_batch(_campaign_counts([loads(e.value) for e in events]))
            clock.add(len(events))

elif VARIANT == "noack_take":

    @app.agent(topic)
    async def noack_take(stream: faust.StreamT) -> None:
        loads = orjson.loads
        # noack_take yields events and leaves acking to the caller (its own ack loop is
        # commented out in faust/streams.py), so ack the batch by hand after processing it.
        async for events in stream.noack_take(BATCH, within=1):
            _write_batch(_campaign_counts([loads(e.value) for e in events]))
            for e in events:
                await stream.ack(e)
            clock.add(len(events))

elif VARIANT == "take_with_timestamp":

    @app.agent(topic)
    async def take_with_timestamp(stream: faust.StreamT) -> None:
        async for values in stream.take_with_timestamp(BATCH, within=1, timestamp_field_name="kts"):
            _write_batch(_campaign_counts(values))
            clock.add(len(values))

else:
    raise SystemExit(f"unknown FB_VARIANT {VARIANT!r}")


if __name__ == "__main__":
    app.main()
