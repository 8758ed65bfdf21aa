"""A restore reads the changelog to its real end, past a previous owner's open transaction.

Found by ``test_fencing.py`` (frozen 2 s in, 1 run in 4): the survivor's changelog held
the frozen worker's transaction, still open, then the survivor's own committed ones. The
restore took the end from a consumer left at librdkafka's default isolation level,
``read_committed``, whose "high watermark" is the last stable offset: the start of the open
transaction. It restored without its own last commits, whose input offsets were committed:
clicks lost, and a revision of ``campaign-roi-latest`` emitted twice with different totals.

Both restore paths, against the real broker: the end is the high watermark, and it is
read once the open transaction is resolved.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from stream_app.engine.clients import producer_config
from stream_app.engine.restore import changelog_bounds, read_changelog, replay_changelog
from stream_app.settings import Settings
from stream_app.state import MemoryStore
from stream_app.topics import create_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Restore = Callable[[str, tuple[str, int]], dict[str, object]]


def _folded(bootstrap: str, tp: tuple[str, int]) -> dict[str, object]:
    """The plain path: whole changelogs folded into dicts (the review stage's)."""
    return read_changelog(bootstrap, [tp], 30.0)[tp]


def _replayed(bootstrap: str, tp: tuple[str, int]) -> dict[str, object]:
    """The store path: bounds first, then a replay into a store (attribution, aggregation)."""
    low, end = changelog_bounds(bootstrap, [tp], 30.0)[tp]
    applied: dict[str, object] = {}
    replay_changelog(bootstrap, tp, low, end, applied.__setitem__, MemoryStore(), 30.0)
    return applied


def _transactional(settings: Settings, name: str) -> Producer:
    producer = Producer(
        producer_config(
            settings.bootstrap_servers,
            {"transactional.id": f"{settings.app_id}-{name}", "transaction.timeout.ms": 60_000},
        )
    )
    producer.init_transactions(30)
    return producer


@pytest.mark.parametrize("restore", [_folded, _replayed], ids=["folded", "replayed"])
async def test_restore_waits_for_an_open_transaction_and_reads_past_it(
    make_settings: Callable[..., Settings], restore: Restore
) -> None:
    settings = make_settings()
    await create_topics(settings)
    tp = (settings.state_topic("aggregation"), 0)

    zombie = _transactional(settings, "zombie")  # frozen mid-transaction, its records out
    zombie.begin_transaction()
    zombie.produce(tp[0], b'"zombie"', b"window|zombie", tp[1])
    assert zombie.flush(10) == 0
    owner = _transactional(settings, "owner")  # took over and committed after it
    owner.begin_transaction()
    for name in ("window|a", "window|b"):
        owner.produce(tp[0], f'"{name}"'.encode(), name.encode(), tp[1])
    owner.commit_transaction(30)

    returned = threading.Event()

    def run() -> dict[str, object]:
        try:
            return restore(settings.bootstrap_servers, tp)
        finally:
            returned.set()

    restoring = asyncio.create_task(asyncio.to_thread(run))
    await asyncio.sleep(3.0)
    waited = not returned.is_set()  # the open transaction hides what follows it
    zombie.abort_transaction(30)
    restored = await asyncio.wait_for(restoring, 60)

    assert waited, f"returned before the open transaction was resolved, with {restored}"
    assert restored == {"window|a": "window|a", "window|b": "window|b"}
