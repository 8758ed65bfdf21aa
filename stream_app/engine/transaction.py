"""One Kafka transaction: outputs, state changelogs and input offsets, all or nothing.

The guarantees are those of Kafka Streams' exactly-once v2 (KIP-447), which librdkafka
implements and aiokafka does not:

* input offsets go to the transaction with the consumer group's metadata (generation and
  member id), so a worker that was frozen past its session and lost its partitions has its
  transaction refused by the group coordinator — a zombie cannot commit;
* the commit fails if any record of the transaction failed to send (librdkafka flushes and
  checks every delivery first, as the Java client does since KAFKA-9279), so offsets never
  move past an output, changelog record or dead letter that did not arrive;
* a refused transaction is aborted and reported as :class:`TransactionAborted`, and so is
  a producer fenced because the broker timed its transaction out: the worker then rebuilds
  from the committed offsets and the changelogs with a new producer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from .clients import Kafka, producer_config
from .stage import Outbox

log = logging.getLogger(__name__)

Partition = tuple[str, int]
Message = tuple[str, bytes | None, bytes | None, int | None]
"""topic, key, value, partition (None: the murmur2 partition of the key)."""


RETRY_SECONDS = 60.0
"""How long a retriable error (a broker restarting, a coordinator moving) is retried."""


def _never() -> bool:
    return False


def _retrying(
    call: Callable[[], object], seconds: float, abandoned: Callable[[], bool] = _never
) -> None:
    """``call()``, again while it fails with a retriable error, for up to ``seconds`` or
    until ``abandoned()`` says the outcome no longer matters."""
    deadline = time.monotonic() + seconds
    delay = 0.2
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            error = exc.args[0]
            if not error.retriable() or error.fatal() or time.monotonic() + delay > deadline:
                raise
            if abandoned():
                raise
            log.warning("retrying after %s", error.str())
            time.sleep(delay)
            delay = min(2.0, delay * 2)


class TransactionAborted(Exception):
    """The broker or the group coordinator refused the transaction, and it was aborted."""


class CallStuck(Exception):
    """A transactional call did not return in time, or after the session was given up."""


def _unblocking(call: Callable[[], object], abandoned: Callable[[], bool], limit: float) -> None:
    """``call()`` on a thread of its own, waited for until it returns, ``abandoned()`` says
    the outcome no longer matters, or ``limit`` seconds pass (then :class:`CallStuck`).

    librdkafka's transactional calls can block past their own timeout: after a broker
    restart, ``send_offsets_to_transaction`` waited forever for a group coordinator request
    (confluentinc/librdkafka#5456, #5511; seen here, the worker never rejoined). A stuck
    call is left behind on its thread with its producer; the session ends, and the next
    producer's ``init_transactions`` fences this one and aborts its transaction.
    """
    done: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            done.append(None)
        except BaseException as exc:  # handed to the caller's thread
            done.append(exc)

    thread = threading.Thread(target=run, name="transaction-call", daemon=True)
    thread.start()
    deadline = time.monotonic() + limit
    while True:
        thread.join(0.1)
        if done:
            if done[0] is not None:
                raise done[0]
            return
        if abandoned():
            raise CallStuck("the session was given up while a transactional call blocked")
        if time.monotonic() > deadline:
            raise CallStuck(f"a transactional call blocked for more than {limit:.0f} s")


@dataclass(slots=True)
class Transaction:
    """Everything one commit carries, serialised before it is sent."""

    out: Outbox
    changelog: list[Message]
    offsets: dict[Partition, int]
    """Next offset to read of every input partition held (re-sent unchanged if idle)."""
    oldest_ts: dict[Partition, int]
    lag: dict[Partition, int]
    group_metadata: Any
    """The consumer's group metadata when the transaction was prepared (KIP-447), taken
    on the consuming thread: the client serialises calls to one consumer, and its
    rebalance callbacks wait for the committer."""


class TransactionalProducer:
    """A transactional producer; every method blocks (run it off the event loop).

    ``abandoned`` tells a commit in progress that the worker has already given up on this
    session (its partitions were lost, or an earlier transaction failed): the transaction
    can only be refused, so retrying it, or aborting it against a broker that is away,
    would only delay the rejoin. It is left open instead; the next producer with the same
    transactional id aborts it in ``init_transactions`` (as Kafka Streams does when it
    closes a producer dirty).
    """

    def __init__(
        self,
        bootstrap_servers: Kafka,
        transactional_id: str,
        timeout_ms: int,
        abandoned: Callable[[], bool] = _never,
    ) -> None:
        self._abandoned = abandoned
        self.producer = Producer(
            producer_config(
                bootstrap_servers,
                {"transactional.id": transactional_id, "transaction.timeout.ms": timeout_ms},
            )
        )

    def init(self) -> None:
        """Fence any earlier producer with this transactional id and abort its open
        transaction, so that state restored afterwards holds only committed writes."""
        _retrying(lambda: self.producer.init_transactions(30), RETRY_SECONDS)

    def commit(self, txn: Transaction) -> None:
        """Steps 3-5 of the commit order (``worker`` module): produce, offsets, commit."""
        producer = self.producer
        producer.begin_transaction()
        try:
            self._produce(txn.out.messages)
            self._produce(txn.changelog)
            positions = [KafkaPartition(t, p, offset) for (t, p), offset in txn.offsets.items()]
            self._call(
                lambda: producer.send_offsets_to_transaction(positions, txn.group_metadata, 30)
            )
            self._call(lambda: producer.commit_transaction(30))
        except CallStuck as exc:  # the producer is unusable: no abort either
            log.warning("transaction left open: %s", exc)
            raise TransactionAborted(str(exc)) from exc
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal():  # fenced: our epoch was bumped (timed out, or a newer producer)
                raise TransactionAborted(f"producer fenced: {error.str()}") from exc
            if self._abandoned():
                log.warning(
                    "transaction failed (%s) after the session ended: left open", error.str()
                )
                raise TransactionAborted(error.str()) from exc
            # refused (txn_requires_abort), or still failing after the retries (a broker
            # gone for longer): abort, and the worker rejoins from the committed state
            log.warning("transaction failed (%s): aborting it", error.str())
            try:
                self._call(lambda: producer.abort_transaction(30), _never)
            except (KafkaException, CallStuck):
                log.exception("abort failed too; the broker aborts it after its timeout")
            raise TransactionAborted(error.str()) from exc

    def _call(
        self, call: Callable[[], object], abandoned: Callable[[], bool] | None = None
    ) -> None:
        """``call()`` retried on retriable errors for ``RETRY_SECONDS``, never blocking
        longer than that in all, nor past ``abandoned()`` (:func:`_unblocking`)."""
        given_up = self._abandoned if abandoned is None else abandoned
        deadline = time.monotonic() + RETRY_SECONDS
        _retrying(
            lambda: _unblocking(call, given_up, max(1.0, deadline - time.monotonic())),
            RETRY_SECONDS,
            given_up,
        )

    def _produce(self, messages: Sequence[Message]) -> None:
        produce, poll = self.producer.produce, self.producer.poll
        for topic, key, value, partition in messages:
            while True:
                try:
                    produce(topic, value, key, -1 if partition is None else partition)
                    break
                except BufferError:  # the local queue is full: let it drain
                    poll(0.05)

    def close(self, *, clean: bool = True) -> None:
        """Deliver what is queued (``clean``), or drop it: after a failed session nothing
        queued may be committed, and the broker may be away."""
        if clean:
            self.producer.flush(10)
        else:
            self.producer.purge()
            self.producer.flush(0)
