"""Running one worker process's workers inside a test's event loop."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable

from confluent_kafka import Consumer, TopicPartition

from stream_app.engine import Worker
from stream_app.observability import Metrics
from stream_app.runner import build_workers, run_workers
from stream_app.settings import Settings

Done = Callable[[Worker], bool | Awaitable[bool]]


async def run_until(
    settings: Settings, done: Done, metrics: Metrics | None = None, limit: float = 120
) -> Worker:
    """Run until ``done(roi_worker)`` holds once it is ready; stop cleanly; return it once
    everything the workers committed is readable (:func:`wait_for_commit_markers`)."""
    workers = build_workers(settings, metrics)
    task = asyncio.create_task(run_workers(workers))
    try:
        async with asyncio.timeout(limit):
            while True:
                if task.done():
                    task.result()
                if workers[0].ready.is_set():
                    result = done(workers[0])
                    if inspect.isawaitable(result):
                        result = await result
                    if result:
                        break
                await asyncio.sleep(0.2)
    finally:
        for worker in workers:
            worker.stop()
        await task
    await wait_for_commit_markers(settings)
    return workers[0]


async def wait_for_commit_markers(settings: Settings, limit: float = 30) -> None:
    """Until no partition of the app's topics (``settings.topics``, and the state changelogs
    named after ``app_id``) holds a transaction without its commit or abort marker.

    A transactional producer's commit returns once the coordinator has logged the decision;
    the broker writes the commit markers into the partitions after that. Until they are
    in, a partition's last stable offset stays at the start of that transaction, and a
    ``read_committed`` reader that stops there (``stream_app.outputs.read_all``) misses the
    whole transaction: right after a worker's final commit, every record of it. Call this
    once the writers have stopped: then the last stable offset reaching the high watermark
    on every partition means that everything committed is readable. Raises
    ``TimeoutError`` naming the partitions if that takes longer than ``limit`` seconds
    (a transaction left open: the broker aborts it only after the transaction timeout).
    """
    await asyncio.to_thread(_wait_for_commit_markers, settings, limit)


def _wait_for_commit_markers(settings: Settings, limit: float) -> None:
    committed = _consumer(settings, "read_committed")
    written = _consumer(settings, "read_uncommitted")
    try:
        cluster = committed.list_topics(timeout=30).topics
        existing = set(cluster)
        names = {name for field, name in settings.topics if field != "prefix"} & existing
        names |= {name for name in existing if name.startswith(f"{settings.app_id}-")}
        tps = [
            TopicPartition(topic, p)
            for topic in sorted(names)
            for p in sorted(cluster[topic].partitions)
        ]
        if not tps:
            raise LookupError(f"no topic of {settings.app_id} on {settings.bootstrap_servers}")
        deadline = time.monotonic() + limit
        while True:
            # the last stable offsets first, so a write in between only waits more
            stable = [committed.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
            high = [written.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
            unmarked = {
                f"{tp.topic}[{tp.partition}]": (s, h)
                for tp, s, h in zip(tps, stable, high, strict=True)
                if s < h
            }
            if not unmarked:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"transactions still without commit markers after {limit}s "
                    f"(partition: (last stable offset, high watermark)): {unmarked}"
                )
            time.sleep(0.05)
    finally:
        committed.close()
        written.close()


def _consumer(settings: Settings, isolation_level: str) -> Consumer:
    """Only asks for offsets: never subscribes, so never joins its (required) group."""
    return Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"markers-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": isolation_level,
        }
    )
