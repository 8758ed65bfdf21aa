"""The Faust bidder's consumer is built ``read_committed``; faust's own one is not.

No broker: the aiokafka consumer is only constructed, never started. The integration test
(``tests/integration/test_faust_bidder.py``) shows what the setting does on the broker.
"""

from __future__ import annotations

from typing import Any

import faust

from examples.faust_bidder.app import FaustBidder


def built_isolation(app: faust.App) -> Any:
    thread = app.consumer._thread
    return thread._create_worker_consumer(app.transport)._isolation_level


async def test_faust_alone_reads_uncommitted_even_when_exactly_once() -> None:
    """Why the example needs its transport: ``processing_guarantee="exactly_once"`` is not
    enough outside a ``faust.Worker`` (``App.in_worker`` is False)."""
    app = faust.App("plain", broker="kafka://127.0.0.1:9", processing_guarantee="exactly_once")
    assert not app.in_worker
    assert built_isolation(app) == "read_uncommitted"


async def test_the_bidders_consumer_reads_committed() -> None:
    bidder = FaustBidder.create("127.0.0.1:9", app_id="unit-faust-bidder")
    assert built_isolation(bidder.app) == "read_committed"
