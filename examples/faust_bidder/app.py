"""A Faust app whose agents keep the newest ``bid-signals`` and ``campaign-roi-latest`` record
of every campaign in Faust tables, and a bidder that applies them.

The product's hot path is its own batch engine (docs/faust-batching.md); Faust belongs
downstream, where a handful of records per campaign and interval arrive. Run it as a worker::

    BIDDER_BROKER=127.0.0.1:9092 python -m examples.faust_bidder worker -l info

or start it inside an asyncio program (as the integration test does)::

    bidder = FaustBidder.create("127.0.0.1:9092")
    await bidder.app.start()
    bidder.multiplier("cmp-001")  # what the campaign should bid now; 0.0 while paused

``FaustBidder.multiplier`` has the ``(campaign_id, ts)`` shape the generator's
``Market`` asks for, so the tables drive the closed-loop simulation directly
(``tests/integration/test_faust_bidder.py``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import faust

from .committed import read_committed
from .models import BidSignal, CampaignLatest


@dataclass
class FaustBidder:
    app: faust.App
    bids: Any  # faust.Table[str, BidSignal]
    latest: Any  # faust.Table[str, CampaignLatest]

    @classmethod
    def create(
        cls,
        broker: str,
        app_id: str = "faust-bidder",
        bid_topic: str = "bid-signals",
        latest_topic: str = "campaign-roi-latest",
        partitions: int = 4,
    ) -> FaustBidder:
        """An app reading the two topics (``partitions`` must be theirs: the tables are
        co-partitioned with them, keyed by campaign as the topics are)."""
        datadir = os.path.join(tempfile.gettempdir(), "faust-bidder", app_id)
        os.makedirs(datadir, exist_ok=True)
        app = faust.App(
            app_id,
            broker=f"kafka://{broker}",
            store="memory://",
            web_enabled=False,
            topic_partitions=partitions,
            topic_replication_factor=1,
            consumer_auto_offset_reset="earliest",
            datadir=datadir,
        )
        # The processor writes both topics in Kafka transactions; Faust's own consumer reads
        # read_committed only in an exactly-once app run by faust.Worker (committed.py says
        # why, with faust's lines), so this app gets a transport that always does.
        read_committed(app)
        bids = app.Table("bids", partitions=partitions, value_type=BidSignal)
        latest = app.Table("roi_latest", partitions=partitions, value_type=CampaignLatest)
        signals = app.topic(bid_topic, key_type=bytes, key_serializer="raw", value_type=BidSignal)
        rois = app.topic(
            latest_topic, key_type=bytes, key_serializer="raw", value_type=CampaignLatest
        )

        @app.agent(signals)
        async def take_bids(stream: AsyncIterator[BidSignal]) -> None:
            async for signal in stream:
                keep_newest(bids, signal.campaign_id, signal)

        @app.agent(rois)
        async def take_latest(stream: AsyncIterator[CampaignLatest]) -> None:
            async for record in stream:
                keep_newest(latest, record.campaign_id, record)

        return cls(app, bids, latest)

    def multiplier(self, campaign_id: str, ts: float = 0.0) -> float:
        """The campaign's bid multiplier now: 1 before any signal, 0 while paused."""
        signal = self.bids.get(campaign_id)
        if signal is None:
            return 1.0
        return 0.0 if signal.paused else float(signal.multiplier)


def keep_newest(table: Any, key: str, record: Any) -> None:
    """A compacted topic may replay older revisions after a rebalance: keep the highest.

    Assigning (never mutating in place) is what writes Faust's changelog.
    """
    current = table.get(key)
    if current is None or record.revision > current.revision:
        table[key] = record
