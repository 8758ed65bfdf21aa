"""Aggregation's windows: memory per 1,000 campaign-minutes and CPU per delta, by store.

    python benchmarks/windows.py compare --baseline ../old   # old code (a checkout), this code
    PYTHONPATH=. python benchmarks/windows.py run --store rocksdb   # one variant, its curve

(``run`` measures the ``stream_app`` it imports: put the checkout first on PYTHONPATH.)

Drives the domain (:class:`stream_app.domain.windows.Aggregation`, no Kafka) as the worker
does, with the default settings (60 s windows, 7-day attribution window: nothing matures in
the run, so every window is kept; models on: each window is forecast at close). Per minute
of event time, for each campaign: one spend event, one click delta into the current window
and one conversion delta into a window on average an hour back (exponential, at most as far
back as the run goes), so most conversions land in closed windows. Every minute is one
transaction: ``advance``, ``drain_emissions``, ``changes()`` serialised as the changelog
would be (then dropped), the store sealed and persisted with an offset.

``run`` prints RSS (VmRSS, after a ``gc.collect`` and a ``malloc_trim``, as the worker
trims every 10 s) every ``--step`` minutes and the
growth per 1,000 campaign-minutes from the first report to the last; with ``--trace``,
the Python heap (tracemalloc: RocksDB's own memory is not in it) instead. Then the CPU:
``--rounds`` fresh runs of ``--cpu-minutes``, the median µs per delta (spend, click and
conversion) of the event path alone and of the commit path (flush and changes) spread over
the deltas. ``compare`` runs each variant in its own process and prints them side by
side: ``old`` is the code at ``--baseline`` (before windows moved to the store; a path
to a checkout), ``memory`` and ``rocksdb`` this code over each store.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
from state import rocks_usage, rss_mb  # benchmarks/state.py

from stream_app.domain.events import Spend
from stream_app.domain.records import CampaignDelta
from stream_app.domain.roi import Totals
from stream_app.domain.windows import Aggregation, AggregationConfig
from stream_app.learning import ConversionConfig, RoiForecaster
from stream_app.runner import release_free_memory
from stream_app.settings import Settings
from stream_app.state.opener import StoreOpener

T0 = 1_767_225_600.0
_encode = msgspec.json.Encoder().encode
STORED = "store" in inspect.signature(Aggregation).parameters  # False: the old code


class Bench:
    """One Aggregation over one store, fed minute by minute."""

    def __init__(self, kind: str, root: Path, campaigns: int, seed: int = 1) -> None:
        settings = Settings()
        config = AggregationConfig(
            window_size_seconds=settings.window_size_seconds,
            allowed_lateness_seconds=settings.allowed_lateness_seconds,
            attribution_window_seconds=settings.attribution_window_seconds,
            dedup_horizon_seconds=settings.dedup_horizon_seconds,
            currency="USD",
            upstream_partitions=1,
        )
        self.store: Any = None
        # the worker's default (models on): closed windows carry their forecast inputs
        models = (RoiForecaster(), ConversionConfig().version)
        if STORED:
            from stream_app.runner import rocks_config  # not in the old code (--baseline)

            opener = StoreOpener(
                kind,  # type: ignore[arg-type]
                root,
                rocks_config(settings),
            )
            self.store = opener.open("bench-aggregation-changelog", 0, 0, 0).store
            self.agg = Aggregation(config, *models, store=self.store)
        else:
            self.agg = Aggregation(config, *models)
        self.campaigns = [f"cmp-{i:04d}" for i in range(campaigns)]
        self.rng = random.Random(seed)
        self.minute = 0
        self.offset = 0
        self.events = 0
        self.event_seconds = 0.0
        self.commit_seconds = 0.0
        self.agg.advance(0.0)  # reviews never report: idle after 30 s of this clock

    def feed_minute(self) -> None:
        agg, rng, minute = self.agg, self.rng, self.minute
        start = T0 + 60.0 * minute
        click = Totals(clicks=4, expected_revenue=2.0).to_list()
        conversion = Totals(conversions=1, revenue=25.0).to_list()
        spends = [
            Spend(1, f"s{minute}-{c}", c, "search", 5.0, "USD", 100, start + 7.0)
            for c in self.campaigns
        ]
        backs = [min(minute, int(rng.expovariate(1 / 60))) for _ in self.campaigns]
        t = time.perf_counter()
        for spend, campaign, back in zip(spends, self.campaigns, backs, strict=True):
            agg.on_spend(spend, 5.0)
            agg.on_delta(CampaignDelta(campaign, start, "click", click, start + 50.0, 0))
            past = start - 60.0 * back
            agg.on_delta(CampaignDelta(campaign, past, "conversion", conversion, start + 50, 0))
        agg.on_delta(CampaignDelta.progress(0, start + 59.0, start + 59.0))
        self.event_seconds += time.perf_counter() - t
        self.events += 3 * len(self.campaigns)
        t = time.perf_counter()
        agg.advance(100.0 + minute)
        agg.drain_emissions(now=float(minute))
        changes = agg.changes()
        for _, value in changes:
            _encode(value)
        self.offset += len(changes)
        if self.store is not None:
            self.store.commit(self.store.seal(), self.offset)
        self.commit_seconds += time.perf_counter() - t
        self.minute += 1

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def variant_name(kind: str) -> str:
    return kind if STORED else "old"


def run(args: argparse.Namespace) -> None:
    name = variant_name(args.store)
    root = Path(tempfile.mkdtemp(prefix="windows-bench-"))
    result: dict[str, Any] = {"variant": name}
    try:
        if args.trace:
            tracemalloc.start()
        bench = Bench(args.store, root / "mem", args.campaigns)
        gc.freeze()
        unit = "traced MB" if args.trace else "RSS MB"
        print(f"{name}: {args.campaigns} campaigns, 7-day window")
        print(f"  minutes  campaign-minutes  {unit:>9}  cached windows  rocks cache+memtables MB")
        points: list[tuple[int, float]] = []
        for _ in range(args.minutes):
            bench.feed_minute()
            if bench.minute % args.step == 0:
                gc.collect()
                release_free_memory()  # as the worker does every 10 s
                mb = tracemalloc.get_traced_memory()[0] / 2**20 if args.trace else rss_mb()
                cm = bench.minute * args.campaigns
                points.append((cm, mb))
                cached = bench.agg.cached_windows() if STORED else len(bench.agg.windows)
                rocks = sum(rocks_usage(bench.store))
                print(
                    f"  {bench.minute:>7} {cm:>17,} {mb:>10.1f}  {cached:>14,}  {rocks:>10.1f}",
                    flush=True,
                )
        bench.close()
        (c0, m0), (c1, m1) = points[0], points[-1]
        result["mb_per_1000"] = (m1 - m0) / (c1 - c0) * 1000 if c1 > c0 else float("nan")
        result["mb_end"] = m1
        result["unit"] = unit
        print(f"  {unit} per 1,000 campaign-minutes: {result['mb_per_1000']:.3f}")
        if args.trace:
            tracemalloc.stop()
        event_us, commit_us = [], []
        for r in range(args.rounds):
            bench = Bench(args.store, root / f"cpu{r}", args.campaigns, seed=10 + r)
            for _ in range(args.cpu_minutes):
                bench.feed_minute()
            bench.close()
            event_us.append(bench.event_seconds / bench.events * 1e6)
            commit_us.append(bench.commit_seconds / bench.events * 1e6)
        result["event_us"] = statistics.median(event_us)
        result["commit_us"] = statistics.median(commit_us)
        print(
            f"  µs per delta over {args.rounds} rounds (median): events "
            f"{result['event_us']:.2f}, commit {result['commit_us']:.2f}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print("RESULT " + json.dumps(result))


def compare(args: argparse.Namespace) -> None:
    here = Path(__file__).resolve()
    mine = str(here.parent.parent)
    variants = [(args.baseline, "memory"), (mine, "memory"), (mine, "rocksdb")]
    rows = []
    for path, kind in variants:
        if path is None:
            continue
        command = [sys.executable, str(here), "run", "--store", kind, "--json"]
        for flag in ("campaigns", "minutes", "step", "rounds", "cpu_minutes"):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        if args.trace:
            command.append("--trace")
        env = {**os.environ, "PYTHONPATH": path}
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        print(done.stdout, end="", flush=True)
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        rows.append(json.loads(line.removeprefix("RESULT ")))
    unit = rows[0]["unit"]
    print(f"\nvariant  {unit} per 1,000 campaign-minutes  {unit} at end  µs/delta events  commit")
    for row in rows:
        print(
            f"{row['variant']:<8} {row['mb_per_1000']:>29.3f} {row['mb_end']:>11.0f} "
            f"{row['event_us']:>16.2f} {row['commit_us']:>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "compare"):
        p = sub.add_parser(name)
        p.add_argument("--campaigns", type=int, default=100)
        p.add_argument("--minutes", type=int, default=1500)
        p.add_argument("--step", type=int, default=250)
        p.add_argument("--rounds", type=int, default=3)
        p.add_argument("--cpu-minutes", type=int, default=300)
        p.add_argument("--trace", action="store_true", help="tracemalloc, not RSS")
        if name == "run":
            p.add_argument("--store", choices=("memory", "rocksdb"), default="rocksdb")
            p.add_argument("--json", action="store_true")
        else:
            p.add_argument("--baseline", help="a checkout of the old code (PYTHONPATH)")
    args = parser.parse_args()
    run(args) if args.command == "run" else compare(args)


if __name__ == "__main__":
    main()
