"""A new owner reads the inputs' committed offsets before it restores the changelog.

The previous owner's last transaction can have its input offsets accepted by the group
coordinator (its generation was still current) and its changelog records not yet on the
broker (queued in its client) when it freezes. If the new owner took the changelog's end
first, it restored without those records; then the frozen owner thawed and committed, and
the offsets the new owner read next were past them: their effect lost. Reading the offsets
first (``read_committed``: they wait for the transaction that carries them, KIP-447) means
that transaction has committed or aborted before the changelog's end is taken.

Here the previous owner is a plain consumer and a transactional producer that stop right
there, and the new owner the engine's :class:`~stream_app.engine.worker.Worker`, in
process, with a one-number stage: records counted. The count must carry over.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stream_app.domain.journal import Change
from stream_app.engine.clients import producer_config
from stream_app.engine.restore import read_changelog
from stream_app.engine.stage import Outbox, Record
from stream_app.engine.worker import Worker
from stream_app.settings import Settings
from stream_app.state import StateStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Count:
    """How many records the partition has seen; one changelog key."""

    def __init__(self) -> None:
        self.seen = 0
        self._changed = False

    def add(self, n: int) -> None:
        self.seen += n
        self._changed = True

    def changes(self) -> list[Change]:
        changed, self._changed = self._changed, False
        return [("count", self.seen)] if changed else []

    def restore(self, key: str, value: Any) -> None:
        assert key == "count"
        self.seen = int(value)


class Counting:
    """A stage whose state goes through the engine's store path (a restore thread)."""

    name = "counting"
    stateful = True

    def __init__(self, topic: str) -> None:
        self.topics = (topic,)

    def new_state(self, partition: int) -> Count:
        return Count()

    def new_stored_state(self, partition: int, store: StateStore) -> Count:
        return Count()

    def process(self, state: Count, records: Sequence[Record], out: Outbox) -> None:
        state.add(len(records))

    def flush(self, state: Count, out: Outbox, now: float) -> None:
        return None


def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = Producer(producer_config(bootstrap))
    for i in range(n):
        producer.produce(topic, b"x", str(i).encode(), 0)
    assert producer.flush(30) == 0


async def test_offsets_carried_by_an_open_transaction_wait_for_its_changelog(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    bootstrap = settings.bootstrap_servers
    tag = uuid.uuid4().hex[:8]
    inputs, group = f"{tag}-inputs", f"{tag}-group"
    changelog = settings.state_topic(Counting.name)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(
        [NewTopic(inputs, 1, 1), NewTopic(changelog, 1, 1, config={"cleanup.policy": "compact"})]
    ).values():
        future.result(30)
    await asyncio.to_thread(_produce, bootstrap, inputs, 10)

    # the previous owner: consumed all 10 in the group, its offsets accepted into its
    # transaction, its changelog record not sent yet; then it leaves the group
    owner = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    owner.subscribe([inputs])
    taken = 0
    while taken < 10:
        taken += len([m for m in owner.consume(10, 1.0) if m.error() is None])
    old = Producer(producer_config(bootstrap, {"transactional.id": f"{tag}-old"}))
    old.init_transactions(30)
    old.begin_transaction()
    old.send_offsets_to_transaction(
        [KafkaPartition(inputs, 0, 10)], owner.consumer_group_metadata(), 30
    )
    owner.close()

    worker = Worker(
        [Counting(inputs)],
        bootstrap_servers=bootstrap,
        group_id=group,
        transactional_id=f"{tag}-new",
        state_topic=lambda stage: changelog,
        commit_interval_seconds=0.2,
    )
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(3.0)  # the new owner is assigned the partition meanwhile
        # the previous owner's queued changelog record arrives, and its transaction commits
        old.produce(changelog, b"10", b"count", 0)
        await asyncio.to_thread(old.commit_transaction, 30)
        await asyncio.wait_for(worker.ready.wait(), 60)
        await asyncio.to_thread(_produce, bootstrap, inputs, 5)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        count: object = None
        while loop.time() < deadline:
            state = await asyncio.to_thread(read_changelog, bootstrap, [(changelog, 0)], 30.0)
            count = state[(changelog, 0)].get("count")
            if isinstance(count, int) and count >= 15:
                break
            await asyncio.sleep(0.5)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 60)
    assert count == 15, (
        f"the count after the takeover is {count}, not 10 carried over + 5: the restore "
        "missed the previous owner's last transaction, whose offsets it then took"
    )
