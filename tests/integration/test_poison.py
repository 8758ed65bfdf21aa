"""Poison input on the real broker (issue 11): nothing crashes the worker for good, nothing
is silently skipped.

* Each input that made the worker exit (and crash again on every restart) is dead-lettered
  with its reason; the worker stays up, and a restart restores the state it wrote.
* A record that kills the worker whenever it is processed is isolated by the restarted
  worker and dead-lettered as ``poison_pill``; every other record counts exactly once.
* A partition whose state cannot be restored is paused and reported (``/healthz``, a metric),
  never processed without its state.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from stream_app.domain.records import DeadLetter
from stream_app.engine import Worker
from stream_app.observability import Metrics, serve_http
from stream_app.outputs import decode_all, latest_by_campaign, read_all
from stream_app.runner import build_worker, health
from stream_app.settings import Settings
from stream_app.topics import create_topics

from .kafka_io import produce
from .running import run_until
from .test_pipeline import click, spend

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

T0 = 1_767_225_600.0


def json_event(doc: dict[str, Any], *, ascii_only: bool = True) -> bytes:
    return json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


async def test_issue_11_inputs_that_crashed_the_worker_are_dead_lettered(
    make_settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(state_dir=tmp_path)
    t = settings.topics
    await create_topics(settings)
    good_spend = orjson.loads(spend(1, "cmp-a", 10.0, T0 + 1))
    good_click = orjson.loads(click(1, "cmp-a", T0 + 2))
    review = {"schema_version": 1, "event_id": "r\udc80", "campaign_id": "cmp-a", "text": "ok"}
    review["ts"] = T0
    poison: list[tuple[str, str, bytes, int | None]] = [
        (
            t.clicks,
            "k2",
            json_event(
                {**good_click, "event_id": "c2", "click_id": "k2", "campaign_id": "a\ud800"},
                ascii_only=False,
            ),
            None,
        ),
        (
            t.clicks,
            "k3",
            json_event(
                {**good_click, "event_id": "c3", "click_id": "k3", "campaign_id": "a\ud800"}
            ),
            None,
        ),
        (
            t.spend,
            "cmp-a",
            json_event({**good_spend, "event_id": "s2", "impressions": 10**20}),
            None,
        ),
        (
            t.spend,
            "cmp-a",
            json_event({**good_spend, "event_id": "s3", "amount": 1e308, "currency": "EUR"}),
            None,
        ),
        (
            t.spend,
            "cmp-a",
            json_event({**good_spend, "event_id": "s4"}).replace(b"1767225601.0", b"Infinity"),
            None,
        ),
        (
            t.clicks,
            "k4",
            json_event(good_click)[:-1] + b', "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            None,
        ),
        (t.clicks, "k5", json.dumps({**good_click, "click_id": "k5"}).encode("utf-16"), None),
        (t.reviews, "cmp-a", json_event(review), None),
    ]
    valid = [
        (t.spend, "cmp-a", spend(1, "cmp-a", 10.0, T0 + 1), None),
        (t.clicks, "k1", click(1, "cmp-a", T0 + 2), None),
    ]
    await produce(settings, poison + valid)

    async def done(_: Worker) -> bool:
        dead = await read_all(settings.bootstrap_servers, t.dead_letter)
        latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
        a = latest.get("cmp-a")
        return len(dead) == len(poison) and a is not None and a.cumulative.clicks == 1

    await run_until(settings, done, limit=90)
    dead = decode_all(await read_all(settings.bootstrap_servers, t.dead_letter), DeadLetter)
    assert Counter(d.reason for d in dead) == {"bad_json": 5, "schema_violation": 3}
    latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
    assert latest["cmp-a"].cumulative.spend == 10.0

    # a restart restores what the first run wrote, and goes on
    await produce(settings, [(t.spend, "cmp-a", spend(9, "cmp-a", 5.0, T0 + 3), None)])

    async def more(worker: Worker) -> bool:
        latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
        return worker.health() is None and latest["cmp-a"].cumulative.spend == 15.0

    await run_until(settings, more, limit=90)


async def run_worker(worker: Worker, done: Any, limit: float = 90) -> BaseException | None:
    """Run ``worker`` until ``done()`` or until it fails; the failure, if any."""
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(limit):
            while not task.done():
                if worker.ready.is_set() and await done():
                    break
                await asyncio.sleep(0.2)
    finally:
        worker.stop()
        try:
            await task
        except Exception as exc:  # the simulated crash
            return exc
    return None


class Kaboom(Exception):
    """What a native crash would be: the stage fails on one record, whatever batch it is in."""


def exploding(worker: Worker) -> list[int]:
    """Make the attribution stage fail on any batch holding a click with campaign 'kaboom'."""
    stage = worker.stages[0]
    original = stage.process
    handed: list[int] = []

    def process(state: Any, records: Sequence[Any], out: Any) -> Any:
        handed.append(len(records))
        if any(b'"kaboom"' in (r.value or b"") for r in records):
            raise Kaboom("simulated crash")
        return original(state, records, out)

    stage.process = process  # type: ignore[method-assign]
    return handed


async def test_a_record_that_kills_the_worker_is_isolated_after_restarts(
    make_settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(state_dir=tmp_path, partitions=1)
    t = settings.topics
    await create_topics(settings)
    clicks = [(t.clicks, f"k{n}", click(n, "cmp-a", T0 + n), 0) for n in range(40)]
    clicks[17] = (t.clicks, "k17", click(17, "kaboom", T0 + 17), 0)
    await produce(settings, clicks)

    async def counted() -> bool:
        latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
        a = latest.get("cmp-a")
        return a is not None and a.cumulative.clicks == 39

    # 1: dies on the batch; 2: takes the suspects one by one and dies on the culprit alone
    for run in (1, 2):
        worker = build_worker(settings)
        handed = exploding(worker)
        failure = await run_worker(worker, counted)
        assert isinstance(failure, Kaboom), f"run {run} should have died, got {failure!r}"
        if run == 2:
            assert handed[-1] == 1, "the culprit was not handed over alone"
    # 3: dead-letters it unprocessed and counts every other click once
    worker = build_worker(settings)
    exploding(worker)
    assert await run_worker(worker, counted) is None
    dead = decode_all(await read_all(settings.bootstrap_servers, t.dead_letter), DeadLetter)
    assert [(d.reason, d.offset) for d in dead] == [("poison_pill", 17)]
    assert orjson.loads(base64.b64decode(dead[0].value_b64))["campaign_id"] == "kaboom"
    latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
    assert latest["cmp-a"].cumulative.clicks == 39
    assert "kaboom" not in latest


async def test_a_partition_whose_state_cannot_be_restored_is_paused_and_reported(
    make_settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(state_dir=tmp_path, partitions=2)
    t = settings.topics
    await create_topics(settings)
    # state a bug once wrote: cumulative totals with a null spend (issue 11)
    corrupt = orjson.dumps(
        [[None, 0, 0, 0, 0.0, 0, 0, 0.0, 0, 0.0, 0.0, 0.0], 1, None, 0, None, None]
    )
    await produce(
        settings,
        [
            (settings.state_topic("aggregation"), "c|cmp-broken", corrupt, 0),
            (t.spend, "cmp-p0", spend(1, "cmp-p0", 10.0, T0 + 1), 0),
            (t.spend, "cmp-p1", spend(2, "cmp-p1", 20.0, T0 + 1), 1),
        ],
    )
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=10)
    worker = build_worker(settings, metrics)
    port = serve_http(0, "127.0.0.1", registry, lambda: health([worker]))

    async def p1_counted() -> bool:
        latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
        return "cmp-p1" in latest

    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(90):
            while not (worker.ready.is_set() and await p1_counted()):
                assert not task.done(), task
                await asyncio.sleep(0.2)
        await asyncio.sleep(2 * settings.commit_interval_seconds + 1)
        assert set(worker.unrestored) == {("aggregation", 0)}
        assert "TypeError" in worker.unrestored[("aggregation", 0)]
        assert registry.get_sample_value("stream_app_partitions_unrestored", {"worker": "roi"}) == 1
        assert registry.get_sample_value("stream_app_worker_ready", {"worker": "roi"}) == 0
        with pytest.raises(urllib.error.HTTPError) as answer:
            await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/healthz")
        assert answer.value.code == 503
        assert b"aggregation[0] not restored" in answer.value.read()
        latest = await latest_by_campaign(settings.bootstrap_servers, t.campaign_roi_latest)
        assert "cmp-p0" not in latest, "a partition without its state was processed"
        assert task.done() is False, "the worker must stay up"
    finally:
        worker.stop()
        await task
