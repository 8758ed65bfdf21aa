"""Assembling and running one worker from the settings."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from .agents import AggregationAgent, AttributionAgent
from .engine import Worker
from .observability import Metrics
from .settings import Settings
from .topics import create_topics

log = logging.getLogger(__name__)


def build_worker(settings: Settings, metrics: Metrics | None = None) -> Worker:
    return Worker(
        [AttributionAgent(settings), AggregationAgent(settings)],
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.consumer_group,
        transactional_id=f"{settings.app_id}-{settings.worker_id}",
        state_topic=settings.state_topic,
        commit_interval_seconds=settings.commit_interval_seconds,
        max_poll_records=settings.max_poll_records,
        transaction_timeout_seconds=settings.transaction_timeout_seconds,
        on_commit=metrics.observe_commit if metrics else None,
    )


async def run_worker(settings: Settings) -> None:
    """Create missing topics, serve /metrics, process until SIGINT or SIGTERM."""
    created = await create_topics(settings)
    if created:
        log.info("created topics: %s", ", ".join(created))
    registry = CollectorRegistry()
    metrics = Metrics(registry, settings.metrics_max_campaigns)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1", registry=registry)
        log.info("metrics on http://127.0.0.1:%d/metrics", settings.metrics_port)
    worker = build_worker(settings, metrics)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)

    pending: set[asyncio.Task[None]] = set()

    def diagnose() -> None:
        _log_tasks()
        task = loop.create_task(worker.log_diagnostics())
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGUSR1, diagnose)
    await worker.run()
    log.info("worker stopped after %d transactions", worker.committed_transactions)


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
