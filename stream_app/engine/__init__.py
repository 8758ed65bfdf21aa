"""The thin batch layer between Kafka and the agents.

Faust hands events to agents one at a time, with futures and tasks per message, which
bounds a worker at a few thousand events per second (docs/throughput.md). This layer
consumes with librdkafka (confluent-kafka) in batches, hands each partition's records to a
:class:`Stage` as a list, and commits outputs, state changelogs and input offsets in one
Kafka transaction with the consumer group's metadata (:mod:`.transaction`).
"""

from .stage import Outbox, Record, Stage
from .transaction import TransactionAborted
from .worker import Worker

__all__ = ["Outbox", "Record", "Stage", "TransactionAborted", "Worker"]
