"""A Faust transport whose consumer reads ``read_committed``, for apps that are not
themselves exactly-once.

Why it is needed (faust-streaming 0.15.3, ``faust/transport/drivers/aiokafka.py``):
``AIOKafkaConsumerThread._create_worker_consumer`` starts from
``isolation_level = "read_uncommitted"`` and switches to ``"read_committed"`` only
``if self.consumer.in_transaction`` (lines 571-574), and passes no other value to
``aiokafka.AIOKafkaConsumer`` (line 621). ``Consumer.in_transaction`` is
``App.in_transaction`` (``faust/transport/consumer.py`` line 466), which is
``self.in_worker and conf.processing_guarantee == EXACTLY_ONCE`` (``faust/app/base.py``
lines 1671-1676); ``in_worker`` is set only by ``faust.Worker`` (``faust/worker.py`` line
262). No setting (``consumer_*``, ``broker_*``) reaches ``isolation_level``. So an app
that is not exactly-once, or one started with ``await app.start()`` rather than by a
``faust.Worker``, reads aborted transactions; and turning on ``exactly_once`` just for
the isolation would also make every table write a transactional produce.

The hook that is left is the transport: ``App.transport`` has a setter, a transport's
``Consumer`` class attribute makes the consumer, and ``Consumer._new_consumer_thread``
makes the thread that builds the aiokafka consumer.
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver

READ_COMMITTED = "read_committed"


class ReadCommittedConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the constructor's isolation_level until start() hands it to its
        # Fetcher: setting it before start() is as if the constructor had been given it.
        # A renamed attribute fails here, loudly, instead of silently reading uncommitted.
        if getattr(consumer, "_isolation_level", None) not in ("read_uncommitted", READ_COMMITTED):
            raise RuntimeError(f"aiokafka {aiokafka.__version__}: no _isolation_level to set")
        consumer._isolation_level = READ_COMMITTED  # noqa: SLF001
        return consumer


class ReadCommittedConsumer(driver.Consumer):  # type: ignore[misc]
    def _new_consumer_thread(self) -> ReadCommittedConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class ReadCommittedTransport(driver.Transport):  # type: ignore[misc]
    Consumer = ReadCommittedConsumer


def read_committed(app: faust.App) -> faust.App:
    """Give ``app`` (a ``kafka://`` one, before its first topic, table or agent) the
    read_committed transport; returns it."""
    app.transport = ReadCommittedTransport(app.conf.broker_consumer, app)
    return app
