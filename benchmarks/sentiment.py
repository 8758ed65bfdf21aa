"""Review sentiment: raw onnxruntime against the whole review path on Kafka, same texts.

    python benchmarks/sentiment.py                # 2-3 min: 400 texts, --repeat 3
    python benchmarks/sentiment.py --threads 1 2  # also onnxruntime with 2 threads
    python benchmarks/sentiment.py --batch-scores # no Kafka: batch 32 against 1, ~2 min

Needs the local broker (``stream-app kafka start``). Builds one seeded mix of review
texts (the generator's ``review_text`` in random tones, real tweets and critic snippets
and long IMDB reviews from ``onnx_models/heldout_sample.jsonl``, and one text over 10k
characters), keeps those the worker would score, then measures in one run:

* raw: ``SentimentScorer.predict_many`` on the screened texts, no Kafka, at the model batch
  size the worker uses (``sentiment_model_batch_size``, default 1) and at 32, per
  onnxruntime thread count, and on the held-out tweets alone; median texts/s of
  ``--repeat`` runs;
* worker: a fresh ``reviews`` topic (new topic prefix and app id per run) filled with the
  same texts as review events, then ``build_workers`` (ROI worker + review worker) run until
  all of them are in ``reviews-scored`` (read_committed); reviews/s from the end of the
  review worker's group join to the last scored record seen; ratio worker / raw batch 1;
* latency: reviews produced at ``--rate`` per second for ``--seconds`` while both workers
  run; per review, the LogAppendTime of its ``reviews-scored`` record minus that of its
  ``reviews`` record (both broker clock): p50, p99, max;
* memory: a fresh interpreter's VmRSS after importing the worker, after ``build_workers``
  (which loads the model) and after scoring the mix once, plus its peak (VmHWM).

Also reports how far batch-32 scores move from batch-1 scores, on the mix and on the tweets
(int8 dynamic quantisation takes activation ranges per batch), and whether the worker's
scores equal raw batch 1. CPU ms per text is this process's CPU time (all threads) over
the run, plus the local broker's when its pid file is there.
Results are noisy on 2 shared cores: compare ratios from the same run. The topics this
run creates are deleted at the end unless ``--keep-topics``.

``--batch-scores`` needs no broker: on the held-out sample and the mix, how far each
text's score at batch 32 is from its score alone (batch 1), split at the scorer's
``BATCH_MAX_TOKENS`` (wider texts always run alone), and texts/s of both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console, JustifyMethod
from rich.table import Table

from stream_app.agents import ReviewAgent
from stream_app.generator.traffic import review_text
from stream_app.runner import build_workers, run_workers
from stream_app.sentiment import SentimentScorer, screen
from stream_app.sentiment.scorer import BATCH_MAX_TOKENS
from stream_app.settings import Settings, Topics
from stream_app.topics import create_topics

HELDOUT = Path(__file__).resolve().parents[1] / "onnx_models" / "heldout_sample.jsonl"
PRODUCTS = ("running shoes", "wireless headphones", "coffee grinder", "yoga mat", "blender")
TONES = ("positive", "negative", "neutral")
REFERENCE_BATCH = 32


# -- texts ------------------------------------------------------------------------------
def heldout() -> dict[str, list[str]]:
    """The model card's held-out sample (test splits only), texts by source."""
    by_source: dict[str, list[str]] = {}
    for line in HELDOUT.read_text().splitlines():
        row = json.loads(line)
        by_source.setdefault(row["source"], []).append(row["text"])
    return by_source


def text_mix(n: int, seed: int) -> list[str]:
    """60 % generator reviews, 25 % tweets, 10 % critic snippets, 5 % IMDB reviews (most of
    them longer than the 254 word pieces the model reads), and one text of ~30k characters
    (cut to head + tail before tokenising). Only texts the worker scores are kept."""
    rng = random.Random(seed)
    by_source = heldout()
    imdb = sorted(by_source["imdb"], key=len)[len(by_source["imdb"]) // 2 :]  # longer half
    huge = " ".join(rng.sample(by_source["imdb"], 40))[:30_000]
    texts: list[str] = [huge]
    while len(texts) < n:
        u = rng.random()
        if u < 0.60:
            text = review_text(rng, rng.choice(TONES), rng.choice(PRODUCTS))
        elif u < 0.85:
            text = rng.choice(by_source["tweets"])
        elif u < 0.95:
            text = rng.choice(by_source["rotten_tomatoes"])
        else:
            text = rng.choice(imdb)
        if screen(text).unscored is None:
            texts.append(text)
    rng.shuffle(texts)
    return texts


def review_event(n: int, campaign: str, text: str, tag: str) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"{tag}-{n}",
            "campaign_id": campaign,
            "text": text,
            "ts": time.time(),
            "rating": None,
        }
    )


# -- raw onnxruntime ----------------------------------------------------------------------
@dataclass
class Rate:
    per_second: float
    cpu_ms: float
    """CPU time of this process (all threads) per text."""
    broker_cpu_ms: float | None = None
    """CPU time of the local broker per text, when its pid is known."""


def raw_rate(scorer: SentimentScorer, texts: Sequence[str]) -> tuple[Rate, list[float]]:
    cpu, started = time.process_time(), time.perf_counter()
    scores = scorer.predict_many(texts)
    elapsed = time.perf_counter() - started
    rate = Rate(len(texts) / elapsed, (time.process_time() - cpu) * 1000 / len(texts))
    return rate, [s.score for s in scores]


def broker_cpu(settings: Settings) -> float | None:
    """CPU seconds the local broker has used (``stream-app kafka start`` writes its pid)."""
    if settings.bootstrap_servers != f"127.0.0.1:{settings.kafka_port}":
        return None
    try:
        pid = int((settings.kafka_data_dir / "broker.pid").read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- Kafka --------------------------------------------------------------------------------
def fresh(base: Settings, threads: int) -> Settings:
    tag = uuid.uuid4().hex[:6]
    return base.model_copy(
        update={
            "app_id": f"bench-sent-{tag}",
            "topics": Topics(prefix=f"bench-sent-{tag}-"),
            "sentiment_threads": threads,
            "metrics_port": 0,
        }
    )


async def fill(settings: Settings, texts: Sequence[str], campaigns: int, tag: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    try:
        for n, text in enumerate(texts):
            campaign = f"cmp-{n % campaigns:03d}"
            value = review_event(n, campaign, text, tag)
            await producer.send(settings.topics.reviews, value=value, key=campaign.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def poll(condition: Callable[[], bool], seconds: float) -> bool:
    """True once ``condition`` holds, False after ``seconds`` (the workers expose counters,
    not events)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


class Collector:
    """Reads ``reviews`` and ``reviews-scored`` (read_committed) and keeps, per event id,
    the broker timestamps and the score."""

    def __init__(self, settings: Settings, *, with_inputs: bool) -> None:
        t = settings.topics
        self._scored_topic = t.reviews_scored
        topics = (t.reviews, t.reviews_scored) if with_inputs else (t.reviews_scored,)
        self._with_inputs = with_inputs
        self.consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=settings.bootstrap_servers,
            group_id=None,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.sent_ms: dict[str, int] = {}
        self.scored_ms: dict[str, int] = {}
        self.scores: dict[str, float | None] = {}
        self.last_seen = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=50, max_records=5000)
            for tp, records in batch.items():
                for r in records:
                    value = orjson.loads(r.value)
                    if tp.topic == self._scored_topic:
                        self.scored_ms[value["event_id"]] = r.timestamp
                        self.scores[value["event_id"]] = value["score"]
                    else:
                        self.sent_ms[value["event_id"]] = r.timestamp
                if tp.topic == self._scored_topic and records:
                    self.last_seen = time.perf_counter()

    async def wait_for(self, n: int, seconds: float) -> None:
        """Until ``n`` reviews are scored (and, with inputs, ``n`` inputs seen)."""

        def complete() -> bool:
            inputs = len(self.sent_ms) >= n or not self._with_inputs
            return len(self.scored_ms) >= n and inputs

        if not await poll(complete, seconds):
            raise TimeoutError(f"{len(self.scored_ms)} of {n} reviews scored in {seconds}s")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


@dataclass
class WorkerResult:
    rate: Rate
    scores: dict[str, float | None]
    roi_records: int


async def worker_rate(
    base: Settings, texts: Sequence[str], threads: int, campaigns: int, created: list[str]
) -> WorkerResult:
    settings = fresh(base, threads)
    created.extend(await create_topics(settings))
    await fill(settings, texts, campaigns, "tp")
    collector = Collector(settings, with_inputs=False)
    await collector.start()
    workers = build_workers(settings)
    roi, review = workers
    task = asyncio.create_task(run_workers(workers))
    try:
        await review.ready.wait()
        cpu, broker, started = time.process_time(), broker_cpu(base), time.perf_counter()
        await collector.wait_for(len(texts), 600)
        broker_end, n = broker_cpu(base), len(texts)
        rate = Rate(
            n / (collector.last_seen - started),
            (time.process_time() - cpu) * 1000 / n,
            None if broker is None or broker_end is None else (broker_end - broker) * 1000 / n,
        )
        # the ROI worker aggregates reviews-scored in its own group: let it catch up
        await poll(lambda: roi.processed_records >= len(texts), 10)
    finally:
        for w in workers:
            w.stop()
        await task
        await collector.stop()
    return WorkerResult(rate, collector.scores, roi.processed_records)


@dataclass
class Latency:
    sent: int
    latencies_ms: list[int]
    achieved_rate: float


async def latency(
    base: Settings, texts: Sequence[str], rate: float, seconds: float, created: list[str]
) -> Latency:
    settings = fresh(base, base.sentiment_threads)
    created.extend(await create_topics(settings))
    collector = Collector(settings, with_inputs=True)
    await collector.start()
    workers = build_workers(settings)
    task = asyncio.create_task(run_workers(workers))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=0)
    await producer.start()
    total = int(rate * seconds)
    try:
        await workers[1].ready.wait()
        await asyncio.sleep(1.0)  # let the ROI worker's group settle too
        started = time.monotonic()
        pending = []
        for n in range(total):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            campaign = f"cmp-{n % 20:03d}"
            value = review_event(n, campaign, texts[n % len(texts)], "lt")
            pending.append(
                await producer.send(settings.topics.reviews, value=value, key=campaign.encode())
            )
        await asyncio.gather(*pending)
        achieved = total / (time.monotonic() - started)
        await collector.wait_for(total, 120)
    finally:
        await producer.stop()
        for w in workers:
            w.stop()
        await task
        await collector.stop()
    lat = [collector.scored_ms[e] - collector.sent_ms[e] for e in collector.scored_ms]
    return Latency(total, lat, achieved)


async def delete_topics(settings: Settings, names: list[str]) -> None:
    if not names:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


# -- batch against alone ----------------------------------------------------------------
def batch_scores(model_dir: Path, n: int, seed: int, repeat: int, console: Console) -> None:
    """``--batch-scores``: batch ``REFERENCE_BATCH`` against batch 1, per text, no Kafka."""
    alone = SentimentScorer(model_dir)
    batched = SentimentScorer(model_dir, batch_size=REFERENCE_BATCH)
    held = [screen(t) for texts in heldout().values() for t in texts]
    sets = {
        "held-out sample": [s.text for s in held if s.unscored is None],
        f"mix of {n}": [screen(t).text for t in text_mix(n, seed)],
    }
    sets["both"] = [t for texts in sets.values() for t in texts]
    limit = alone.card.max_length - 2
    table = Table(title=f"Scores at batch {REFERENCE_BATCH} against alone (batch 1)")
    for name in ("texts", "short / wide", "max |diff| short", "p99", "median", "label flips"):
        table.add_column(name, justify="left" if name == "texts" else "right")
    for name in ("wide max |diff|", "exactly equal", "texts/s alone", "texts/s batched"):
        table.add_column(name, justify="right")
    for name, texts in sets.items():
        wide = [min(len(ids), limit) + 2 > BATCH_MAX_TOKENS for ids in alone.encode(texts)]
        rates: dict[int, list[Rate]] = {1: [], REFERENCE_BATCH: []}
        scores: dict[int, list[float]] = {}
        for _ in range(repeat):
            for scorer in (alone, batched):
                rate, scores[scorer.batch_size] = raw_rate(scorer, texts)
                rates[scorer.batch_size].append(rate)
        pairs = list(zip(scores[REFERENCE_BATCH], scores[1], strict=True))
        diffs = [abs(a - b) for a, b in pairs]
        short = sorted(d for d, w in zip(diffs, wide, strict=True) if not w) or [0.0]
        flips = sum((a >= 0) != (b >= 0) for a, b in pairs)
        table.add_row(
            f"{name} ({len(texts)})",
            f"{len(texts) - sum(wide)} / {sum(wide)}",
            f"{short[-1]:.3f}",
            f"{pct(short, 0.99):.3f}",
            f"{statistics.median(short):.4f}",
            f"{flips} ({flips / len(texts):.1%})",
            f"{max((d for d, w in zip(diffs, wide, strict=True) if w), default=0.0):.3f}",
            f"{sum(d == 0 for d in diffs) / len(texts):.0%}",
            f"{median_rate(rates[1]):,.1f}",
            f"{median_rate(rates[REFERENCE_BATCH]):,.1f}",
        )
    console.print(table)
    console.print(
        f"short: model input (word pieces + [CLS] + [SEP]) up to {BATCH_MAX_TOKENS} tokens, "
        f"batched; wide: longer, scored alone. Median texts/s of {repeat} runs, 1 thread."
    )


# -- memory -------------------------------------------------------------------------------
def status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def rss_probe(n: int, seed: int) -> None:
    """Run in a fresh interpreter (``--rss-probe``): prints VmRSS in kB as JSON."""
    out = {"imported": status_kb("VmRSS")}
    workers = build_workers(Settings(metrics_port=0))
    out["model_loaded"] = status_kb("VmRSS")
    agent = workers[1].stages[0]
    assert isinstance(agent, ReviewAgent)
    texts = [screen(t).text for t in text_mix(n, seed)]
    agent.scorer.predict_many(texts)
    out["after_scoring"] = status_kb("VmRSS")
    out["peak"] = status_kb("VmHWM")
    print(json.dumps(out))


def measure_rss(n: int, seed: int) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, __file__, "--rss-probe", "--reviews", str(n), "--seed", str(seed)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- report -------------------------------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median_rate(rates: Sequence[Rate]) -> float:
    return statistics.median(x.per_second for x in rates)


def fmt_runs(values: Sequence[float]) -> str:
    return ", ".join(f"{v:,.1f}" for v in values)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reviews", type=int, default=400, help="texts per throughput run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="e.g. 1 2")
    parser.add_argument("--rate", type=float, default=20.0, help="reviews/s, latency phase")
    parser.add_argument("--seconds", type=float, default=30.0, help="latency phase length")
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument("--rss-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--batch-scores", action="store_true", help="no Kafka: batch 32 against alone"
    )
    args = parser.parse_args()
    if args.rss_probe:
        rss_probe(args.reviews, args.seed)
        return
    if args.batch_scores:
        console = Console(width=max(Console().width, 140))
        batch_scores(Settings().sentiment_model_dir, args.reviews, args.seed, args.repeat, console)
        return

    # aiokafka logs the retriable NotLeaderForPartition answers a just-created topic gives
    # for a moment as errors; a real failure still ends the run (timeout or exception).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    console = Console(width=max(Console().width, 120))
    bench_started = time.monotonic()
    base = Settings(metrics_port=0)
    model_batch = base.sentiment_model_batch_size
    texts = text_mix(args.reviews, args.seed)
    screened = [screen(t).text for t in texts]
    probe = SentimentScorer(base.sentiment_model_dir)
    tokens = [len(ids) for ids in probe.encode(screened)]
    console.print(
        f"{len(texts)} texts, model {probe.version}: median {statistics.median(tokens):.0f} "
        f"word pieces, {sum(t > probe.card.max_length - 2 for t in tokens)} over "
        f"{probe.card.max_length - 2} (head+tail), longest {max(map(len, texts)):,} chars; "
        f"model batch size {model_batch}; bootstrap {base.bootstrap_servers}"
    )
    rss = measure_rss(args.reviews, args.seed)

    scorers = {
        (threads, batch): SentimentScorer(
            base.sentiment_model_dir, threads=threads, batch_size=batch
        )
        for threads in args.threads
        for batch in {model_batch, REFERENCE_BATCH}
    }
    for scorer in scorers.values():
        scorer.predict_many(screened[:16])  # warm-up
    raw: dict[tuple[int, int], list[Rate]] = {key: [] for key in scorers}
    raw_scores: dict[int, list[float]] = {}
    tweets = [screen(t).text for t in heldout()["tweets"] if screen(t).unscored is None]
    tweet_raw: dict[int, list[Rate]] = {batch: [] for batch in (model_batch, REFERENCE_BATCH)}
    tweet_scores: dict[int, list[float]] = {}
    workers: dict[int, list[WorkerResult]] = {threads: [] for threads in args.threads}
    created: list[str] = []
    try:
        for r in range(args.repeat):
            for threads in args.threads:
                for batch in sorted({model_batch, REFERENCE_BATCH}):
                    rate, scores = raw_rate(scorers[(threads, batch)], screened)
                    raw[(threads, batch)].append(rate)
                    if threads == args.threads[0]:
                        raw_scores[batch] = scores
                        rate, tweet_scores[batch] = raw_rate(scorers[(threads, batch)], tweets)
                        tweet_raw[batch].append(rate)
                result = await worker_rate(base, texts, threads, args.campaigns, created)
                workers[threads].append(result)
                console.print(
                    f"repeat {r + 1}/{args.repeat}, {threads} thread(s): raw batch "
                    f"{model_batch} {raw[(threads, model_batch)][-1].per_second:,.1f} texts/s, "
                    f"worker {result.rate.per_second:,.1f} reviews/s"
                )
        lat = await latency(base, texts, args.rate, args.seconds, created)
    finally:
        if not args.keep_topics:
            await delete_topics(base, created)

    # -- the table ------------------------------------------------------------------------
    table = Table(title=f"Review sentiment, {len(texts)} texts, median of {args.repeat}")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("what", "left"),
        ("threads", "right"),
        ("median", "right"),
        ("runs", "left"),
        (f"vs raw batch {model_batch}", "right"),
        ("CPU ms/text", "right"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)
    ratios: dict[int, float] = {}
    cpu_ratios: dict[int, float] = {}
    for threads in args.threads:
        b1 = median_rate(raw[(threads, model_batch)])
        for batch in sorted({model_batch, REFERENCE_BATCH}):
            rates = raw[(threads, batch)]
            med = median_rate(rates)
            table.add_row(
                f"raw predict_many, batch {batch}",
                str(threads),
                f"{med:,.1f} texts/s",
                fmt_runs([x.per_second for x in rates]),
                f"{med / b1:.2f}x",
                f"{statistics.median(x.cpu_ms for x in rates):.1f}",
            )
        w = [x.rate for x in workers[threads]]
        ratios[threads] = median_rate(w) / b1
        cpu_ratios[threads] = statistics.median(
            x.cpu_ms for x in raw[(threads, model_batch)]
        ) / statistics.median(x.cpu_ms for x in w)
        broker = [x.broker_cpu_ms for x in w if x.broker_cpu_ms is not None]
        table.add_row(
            "worker: reviews → reviews-scored",
            str(threads),
            f"{median_rate(w):,.1f} reviews/s",
            fmt_runs([x.per_second for x in w]),
            f"{ratios[threads]:.2f}x",
            f"{statistics.median(x.cpu_ms for x in w):.1f}"
            + (f" + broker {statistics.median(broker):.1f}" if broker else ""),
        )
    tweet_b1 = median_rate(tweet_raw[model_batch])
    for batch in sorted({model_batch, REFERENCE_BATCH}):
        rates = tweet_raw[batch]
        table.add_row(
            f"raw, {len(tweets)} held-out tweets only, batch {batch}",
            str(args.threads[0]),
            f"{median_rate(rates):,.1f} texts/s",
            fmt_runs([x.per_second for x in rates]),
            f"{median_rate(rates) / tweet_b1:.2f}x",
            f"{statistics.median(x.cpu_ms for x in rates):.1f}",
        )
    lat_s = [v / 1000 for v in lat.latencies_ms]
    table.add_row(
        f"worker latency at {lat.achieved_rate:.1f} reviews/s ({len(lat_s)})",
        str(base.sentiment_threads),
        f"p50 {pct(lat_s, 0.5):.3f} s",
        f"p99 {pct(lat_s, 0.99):.3f} s, max {max(lat_s):.3f} s",
        "",
        "",
    )
    mb = {k: v / 1024 for k, v in rss.items()}
    table.add_row(
        "RSS of a fresh worker process, MiB",
        "",
        f"{mb['model_loaded']:.0f} loaded",
        f"{mb['imported']:.0f} imported, {mb['after_scoring']:.0f} after scoring, "
        f"{mb['peak']:.0f} peak",
        "",
        "",
    )
    console.print(table)

    # -- batch-32 vs batch-1 scores, and the worker against raw ----------------------------
    def moved(texts_scores: dict[int, list[float]]) -> str:
        pairs = list(zip(texts_scores[REFERENCE_BATCH], texts_scores[model_batch], strict=True))
        diffs = [abs(a - b) for a, b in pairs]
        flips = sum((a >= 0) != (b >= 0) for a, b in pairs)
        return (
            f"max |diff| {max(diffs):.3f}, median {statistics.median(diffs):.4f}, "
            f"{flips} label flips in {len(diffs)}, {sum(d == 0 for d in diffs)} equal"
        )

    first = workers[args.threads[0]][0]
    worker_diff = [
        abs((first.scores[f"tp-{n}"] or 0.0) - score)
        for n, score in enumerate(raw_scores[model_batch])
    ]
    t1 = args.threads[0]
    b1_med = median_rate(raw[(t1, model_batch)])
    b32_med = median_rate(raw[(t1, REFERENCE_BATCH)])
    console.print(
        f"\nraw {b1_med:,.1f} texts/s at batch {model_batch}, {b32_med:,.1f} at batch "
        f"{REFERENCE_BATCH} ({b32_med / b1_med - 1:+.0%}), {t1} thread(s)\n"
        + "".join(
            f"worker with {t} thread(s): {median_rate([x.rate for x in workers[t]]):,.1f} "
            f"reviews/s, {ratios[t]:.2f}x raw batch {model_batch} (target >= 0.8); "
            f"CPU per review {cpu_ratios[t]:.2f}x as efficient as raw\n"
            for t in args.threads
        )
        + f"latency at {lat.achieved_rate:.1f}/s: p50 {pct(lat_s, 0.5) * 1000:.0f} ms, "
        f"p99 {pct(lat_s, 0.99) * 1000:.0f} ms, max {max(lat_s) * 1000:.0f} ms "
        f"({len(lat_s)}/{lat.sent} scored)\n"
        f"RSS {mb['imported']:.0f} MiB before the model, {mb['model_loaded']:.0f} MiB with "
        f"it, {mb['after_scoring']:.0f} MiB after scoring the mix (peak {mb['peak']:.0f})\n"
        f"batch {REFERENCE_BATCH} vs {model_batch} scores, mix: {moved(raw_scores)}\n"
        f"batch {REFERENCE_BATCH} vs {model_batch} scores, tweets: {moved(tweet_scores)}; "
        f"speed {median_rate(tweet_raw[REFERENCE_BATCH]) / tweet_b1 - 1:+.0%}\n"
        f"worker vs raw batch {model_batch} scores: max |diff| {max(worker_diff):.6f} "
        f"(the worker rounds to 6 decimals)\n"
        f"ROI worker aggregated {first.roi_records} reviews-scored records of {len(texts)}\n"
        f"wall time {time.monotonic() - bench_started:.0f}s"
    )


if __name__ == "__main__":
    asyncio.run(main())
