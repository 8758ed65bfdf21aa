"""Assembling and running one worker from the settings."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import signal
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from .agents import AggregationAgent, AttributionAgent, ReviewAgent
from .engine import Stage, Worker
from .observability import CommitWatch, Metrics, serve_http
from .settings import Settings
from .state.opener import StoreOpener
from .state.rocks import RocksConfig
from .topics import create_topics

log = logging.getLogger(__name__)


GC_THRESHOLDS = (50_000, 50, 100)
"""The collector's generation thresholds in a worker process (Python's are 700, 10, 10).

A worker keeps every open click (its features, score and index entries) alive for its
label window, so the collector's full passes walk hundreds of thousands of long-lived
objects again and again; with the models on these thresholds took the worker from 21.4 to
18.1 CPU-µs per event (docs/throughput.md, "The model path"). Collections are rarer, not
skipped; what the stages allocate per event is freed by reference counting.
"""


def rocks_config(settings: Settings) -> RocksConfig:
    """The RocksDB sizes of the ``state_*`` settings (one cache and budget per worker)."""
    return RocksConfig(
        block_cache_bytes=settings.state_block_cache_bytes,
        write_buffer_bytes=settings.state_write_buffer_bytes,
        max_write_buffers=settings.state_max_write_buffers,
        write_buffer_budget_bytes=settings.state_write_buffer_budget_bytes,
    )


def configure_gc() -> tuple[int, int, int]:
    """Set :data:`GC_THRESHOLDS`; returns the previous thresholds (to restore them)."""
    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    return previous


TRIM_INTERVAL_SECONDS = 10.0
"""How often a worker process hands the C allocator's free pages back to the OS.

glibc keeps what a thread freed in that thread's arena: a worker catching up a backlog
(large decoded batches and transactions on the loop, consume and committer threads, RocksDB's
and librdkafka's threads) held ~165 MB of free memory after 400k clicks, RSS 531 MB, 366 MB
after one ``malloc_trim(0)`` (docs/throughput.md, State). A trim takes milliseconds.
"""


M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt() parameters (malloc.h)
MMAP_THRESHOLD_BYTES = 256 * 1024
"""Allocations from this size up get pages of their own, returned to the OS when freed."""
ARENA_MAX = 2
"""glibc arenas at most (its default: 8 per core), each holding what its threads freed."""


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold and cap its arenas, unless ``MALLOC_MMAP_THRESHOLD_`` or
    ``MALLOC_ARENA_MAX`` say otherwise; False where the C library is not glibc.

    glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB),
    so after librdkafka's fetch buffers and the transactions' encoded batches went by,
    blocks of that size come from the heap and stay there, fragmented, after they are
    freed. At a steady 10,000 clicks/s this kept the worker about 20 MB lower over each
    1M clicks (docs/throughput.md, State). Called before the workers start their threads:
    an arena limit applies to arenas not yet created.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    done = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        done &= libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    if "MALLOC_ARENA_MAX" not in os.environ:
        done &= libc.mallopt(M_ARENA_MAX, ARENA_MAX) == 1
    return done


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once: ``find_library`` runs ``ldconfig`` in a subprocess
    (~10 ms), and the trim asks for it every ``TRIM_INTERVAL_SECONDS``."""
    name = ctypes.util.find_library("c")
    return None if name is None else ctypes.CDLL(name)


def release_free_memory() -> bool:
    """``malloc_trim(0)``: return free heap pages of every arena to the OS; False where the
    C library is not glibc (nothing to do)."""
    libc = _libc()
    trim = None if libc is None else getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


async def release_free_memory_every(seconds: float = TRIM_INTERVAL_SECONDS) -> None:
    """:func:`release_free_memory` every ``seconds`` (off the loop), until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        if not await asyncio.to_thread(release_free_memory):
            return


def build_worker(settings: Settings, metrics: Metrics | None = None) -> Worker:
    """Attribution and aggregation: the ROI path, one consumer group."""
    stages: list[Stage] = [AttributionAgent(settings), AggregationAgent(settings)]
    return _worker(settings, stages, "roi", settings.max_poll_records, metrics)


def build_review_worker(settings: Settings, metrics: Metrics | None = None) -> Worker:
    """Sentiment scoring in its own group and transactions, so it never stalls the ROI path."""
    agent = ReviewAgent(settings)
    if metrics is not None:
        metrics.model_info.labels("sentiment", agent.scorer.version).set(1)
    return _worker(settings, [agent], "sentiment", settings.sentiment_batch_size, metrics)


def _worker(
    settings: Settings,
    stages: Sequence[Stage],
    name: str,
    max_poll_records: int,
    metrics: Metrics | None,
) -> Worker:
    """One consumer group and transactional id per worker; the ROI path keeps the plain ones."""
    suffix = "" if name == "roi" else f"-{name}"
    transactional_id = f"{settings.app_id}-{settings.worker_id}{suffix}"
    worker = Worker(
        stages,
        bootstrap_servers=settings.kafka,
        group_id=settings.consumer_group + suffix,
        transactional_id=transactional_id,
        state_topic=settings.state_topic,
        commit_interval_seconds=settings.commit_interval_seconds,
        max_poll_records=max_poll_records,
        max_transaction_records=settings.max_transaction_records,
        transaction_timeout_seconds=settings.transaction_timeout_seconds,
        session_timeout_seconds=settings.session_timeout_seconds,
        max_poll_interval_seconds=settings.max_poll_interval_seconds,
        on_commit=metrics.observer(name) if metrics else None,
        dead_letter_topic=settings.topics.dead_letter,
        worker_id=settings.worker_id,
        inflight_path=settings.state_dir / f"{transactional_id}.inflight",
        stores=StoreOpener(
            settings.state_store,
            settings.state_dir / "stores" / settings.worker_id,
            rocks_config(settings),
        ),
        checkpoint_interval_seconds=settings.state_checkpoint_interval_seconds,
    )
    if metrics is not None:
        metrics.watch(name, worker)
    return worker


def build_workers(settings: Settings, metrics: Metrics | None = None) -> list[Worker]:
    """Everything one process runs: the ROI path and review scoring."""
    return [build_worker(settings, metrics), build_review_worker(settings, metrics)]


async def run_workers(workers: list[Worker]) -> None:
    """Run all until each is stopped; one failing stops the others (they commit cleanly)."""
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_worker(settings: Settings) -> None:
    """Create missing topics, serve /metrics, process until SIGINT or SIGTERM."""
    tune_allocator()
    configure_gc()
    created = await create_topics(settings)
    if created:
        log.info("created topics: %s", ", ".join(created))
    registry = CollectorRegistry()
    metrics = Metrics(registry, settings.metrics_max_campaigns)
    workers = build_workers(settings, metrics)
    if settings.metrics_port:
        watch = CommitWatch(settings.healthz_max_commit_age_seconds)
        address = settings.metrics_bind_address
        serve_http(settings.metrics_port, address, registry, lambda: health(workers, watch))
        host = f"[{address}]" if ":" in address else address
        log.info("metrics on http://%s:%d/metrics", host, settings.metrics_port)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for worker in workers:
            worker.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)

    pending: set[asyncio.Task[None]] = set()

    def diagnose() -> None:
        _log_tasks()
        for worker in workers:
            task = loop.create_task(worker.log_diagnostics())
            pending.add(task)
            task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGUSR1, diagnose)
    trimming = asyncio.create_task(release_free_memory_every())
    try:
        await run_workers(workers)
    finally:
        trimming.cancel()
    log.info(
        "worker stopped after %s transactions",
        "+".join(str(w.committed_transactions) for w in workers),
    )


def health(workers: Sequence[Worker], watch: CommitWatch | None = None) -> str | None:
    """Why the process is not healthy, or None: every worker assigned and restored, and
    (with ``watch``) committing what it processes."""
    problems = [problem for w in workers if (problem := w.health()) is not None]
    if watch is not None:
        for w in workers:
            name = "+".join(stage.name for stage in w.stages)
            stuck = watch.check(name, w.processed_records, w.committed_transactions)
            if stuck is not None:
                problems.append(stuck)
    return "; ".join(problems) or None


def _log_tasks() -> None:
    """``kill -USR1 <pid>``: log where every asyncio task is waiting (for a stuck worker)."""
    for task in asyncio.all_tasks():
        chain: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None and hasattr(coro, "cr_frame"):
            frame = coro.cr_frame
            if frame is not None:
                chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
            coro = coro.cr_await
        log.warning("task %s: %s", task.get_name(), " -> ".join(chain) or "(no frames)")
