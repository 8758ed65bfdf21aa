"""Running one worker process's workers inside a test's event loop."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from stream_app.engine import Worker
from stream_app.observability import Metrics
from stream_app.runner import build_workers, run_workers
from stream_app.settings import Settings

Done = Callable[[Worker], bool | Awaitable[bool]]


async def run_until(
    settings: Settings, done: Done, metrics: Metrics | None = None, limit: float = 120
) -> Worker:
    """Run until ``done(roi_worker)`` holds once it is ready; stop cleanly; return it."""
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
    return workers[0]
