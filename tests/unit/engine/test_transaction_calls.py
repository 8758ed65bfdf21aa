"""A transactional call that never returns must not hold the worker: librdkafka's
``send_offsets_to_transaction`` blocked forever after a broker restart
(confluentinc/librdkafka#5456), and the worker never rejoined. The broker-restart tests in
``tests/integration/test_recovery.py`` run it against the real broker; these pin the
mechanism with a producer that blocks."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from stream_app.engine.stage import Outbox
from stream_app.engine.transaction import (
    CallStuck,
    Transaction,
    TransactionAborted,
    TransactionalProducer,
    _unblocking,
)


def test_a_call_that_returns_or_raises_is_waited_for() -> None:
    _unblocking(lambda: time.sleep(0.2), lambda: False, 5)
    with pytest.raises(ZeroDivisionError):
        _unblocking(lambda: 1 / 0, lambda: False, 5)


def test_a_blocked_call_is_left_behind_once_the_session_is_given_up() -> None:
    forever = threading.Event()
    given_up = time.monotonic() + 0.3
    started = time.monotonic()
    with pytest.raises(CallStuck):
        _unblocking(forever.wait, lambda: time.monotonic() > given_up, 60)
    assert time.monotonic() - started < 2


def test_a_blocked_call_is_left_behind_after_its_limit() -> None:
    forever = threading.Event()
    started = time.monotonic()
    with pytest.raises(CallStuck):
        _unblocking(forever.wait, lambda: False, 0.5)
    assert time.monotonic() - started < 2


class BlockingProducer:
    """Begins and produces; ``send_offsets_to_transaction`` never returns; nothing aborts."""

    def __init__(self) -> None:
        self.forever = threading.Event()
        self.aborted = False

    def begin_transaction(self) -> None:
        pass

    def produce(self, *args: Any) -> None:
        pass

    def poll(self, *args: Any) -> int:
        return 0

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self.forever.wait()

    def commit_transaction(self, *args: Any) -> None:
        raise AssertionError("committed after the offsets never went")

    def abort_transaction(self, *args: Any) -> None:
        self.aborted = True


@pytest.mark.timeout(10)  # without the fix it blocks for good
def test_a_commit_whose_offsets_block_ends_the_session_without_an_abort() -> None:
    lost = threading.Event()
    txns = TransactionalProducer.__new__(TransactionalProducer)  # no broker: a stand-in
    txns.producer = BlockingProducer()  # type: ignore[assignment]
    txns._abandoned = lost.is_set
    threading.Timer(0.3, lost.set).start()  # the group drops the member meanwhile
    txn = Transaction(Outbox(), [], {("clicks", 0): 5}, {}, {}, None)
    started = time.monotonic()
    with pytest.raises(TransactionAborted):
        txns.commit(txn)
    assert time.monotonic() - started < 2
    assert not txns.producer.aborted  # type: ignore[attr-defined]
