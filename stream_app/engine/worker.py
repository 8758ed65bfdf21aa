"""The worker loop: poll in batches, run the stages, commit everything in one transaction.

Commit order (one Kafka transaction per ``commit_interval_seconds``, or sooner once it holds
``max_transaction_records`` input records: a backlog is caught up in transactions of
bounded size, since each holds its outputs, changelog and store writes in memory until it
commits):

1. each stage flushes: window records, latest records, deltas, dead letters into the outbox;
2. each partition state's changes are serialised for its changelog partition;
3. the outbox and the changelog records are produced;
4. the input offsets go to the transaction with the consumer group's metadata;
5. the transaction commits — outputs, state and offsets become visible together or not at
   all (:mod:`.transaction`).

Steps 1-2 run on the event loop; 3-5 on one committer thread while the next batch is
processed, so the CPU is not idle while the broker commits. Transactions are sent strictly
in order, and after one fails none is sent: a worker never commits past a failed send.

A crash anywhere before 5 aborts the lot: the restarted worker restores state from the
changelog and re-reads the inputs from the committed offsets, so nothing is lost or counted
twice. A refused transaction (a send the broker rejected, or a zombie fenced by the group
coordinator) is aborted and the worker rejoins the group from scratch, in-process. A
record that kills the worker every time it is processed is dead-lettered by the restarted
worker (:mod:`.poison`), never a crash loop.

Rebalances (``range`` assignor, eager): on revocation the worker commits what it processed
and drops every state; on loss (the group dropped the member: a frozen worker) it drops
everything without committing; on assignment it reads the inputs' committed offsets,
then restores every partition from its changelog, to the changelog's high watermark once
no transaction below it is open. In that order, a previous owner's transaction (a frozen
worker's, a crashed one's) is either in both or in neither: reading ``read_committed``,
the offsets wait for any transaction that carries them, and the restore for any open
transaction in the changelog. A partition whose state cannot be restored is paused, never
silently skipped: the worker reports it in :meth:`Worker.health` (``/healthz``) and
``unrestored`` (a metric and an alert), logs why, and tries again at the next rebalance.

Stages with a store-backed state (``new_stored_state``: attribution, aggregation) get a store per
partition from the :class:`~stream_app.state.opener.StoreOpener`. Its writes are sealed
with each transaction (step 2) and persisted with the changelog offset they reach only
after the transaction committed (step 6, on the committer thread, at most every
``checkpoint_interval_seconds``); so after any crash the local store is at a committed
changelog offset or behind it, and assignment replays only the changelog after it.

Those restores run outside the assignment callback, each on a restore thread with the
partition's inputs paused; the loop keeps polling (so a long restore never reaches
``max.poll.interval.ms``) and processing the partitions it already holds, and resumes each
input once its state is in place. A rebalance meanwhile cancels
the restore, whose store keeps the checkpoint it had reached. Plain changelog states
(the review stage's topic bags: small) restore inside the callback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import msgspec
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaPartition

from ..domain.outcomes import Outcome
from ..domain.validation import Reason
from ..state import DurableStore
from ..state.opener import StoreOpener
from .clients import PARTITION_EOF, Kafka, client_config
from .deadletter import dead_letter, dead_letter_key
from .poison import PoisonGuard
from .restore import Replayed, read_changelog
from .restoring import (
    RESTORE_ATTEMPTS,
    Restored,
    Unrestorable,
    close_unused,
    restore_stored,
)
from .stage import Outbox, PartitionState, Record, Stage
from .transaction import Partition, Transaction, TransactionAborted, TransactionalProducer

# orjson's bytes keep a 4 KiB allocation however short (stream_app/state/rocks.py)
_encode = msgspec.json.Encoder().encode
log = logging.getLogger(__name__)

LOOP_PHASES = ("poll", "process", "prepare", "wait_commit")
"""Where the event-loop thread's time goes (:attr:`Worker.loop_seconds`): waiting in
``consume`` for records, processing them, preparing a transaction (flush and serialise),
and waiting for the transaction in flight before a full one may start."""

RESTORE_THREADS = 8
"""Store-backed partitions restoring at once (replays are mostly Python: they share a core)."""
MAX_REJOINS = 5
"""Rejoins in a row without a committed transaction before the worker gives up and exits."""

FETCH_WAIT_MS = 100
"""The broker's long poll for a fetch: bounds how long a newly fetchable partition waits
(docs/throughput.md, *What poll was waiting for*); an idle worker sends ten fetches a
second."""
FETCH_QUEUE_BACKOFF_MS = 10
"""How long fetching pauses once the queue holds librdkafka's ``queued.min.messages``."""

#: Called after each commit with the outbox, the commit's duration in seconds, the Kafka
#: timestamp (ms) of the oldest record of each partition batch, the lag per topic and now.
CommitObserver = Callable[[Outbox, float, dict[Partition, int], dict[str, int], float], None]
#: A changelog partition, its store and the token of the writes sealed with a transaction.
Seal = tuple[Partition, DurableStore, int]


class Worker:
    """Runs a set of stages over one consumer group with exactly-once commits."""

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        bootstrap_servers: Kafka,
        group_id: str,
        transactional_id: str,
        state_topic: Callable[[str], str],
        commit_interval_seconds: float = 0.2,
        max_poll_records: int = 5000,
        max_transaction_records: int = 50_000,
        transaction_timeout_seconds: float = 10.0,
        session_timeout_seconds: float = 10.0,
        on_commit: CommitObserver | None = None,
        dead_letter_topic: str = "dead-letter",
        worker_id: str = "worker",
        inflight_path: Path | None = None,
        stores: StoreOpener | None = None,
        checkpoint_interval_seconds: float = 1.0,
        max_poll_interval_seconds: float = 300.0,
    ) -> None:
        self.stages = list(stages)
        self._stage_of = {topic: stage for stage in self.stages for topic in stage.topics}
        self._bootstrap = bootstrap_servers
        self._group_id = group_id
        self._transactional_id = transactional_id
        self._state_topic = state_topic
        self._interval = commit_interval_seconds
        self._max_poll_records = max_poll_records
        self._max_transaction_records = max_transaction_records
        self._uncommitted_records = 0  # input records processed since the last _prepare
        self._transaction_timeout_ms = int(transaction_timeout_seconds * 1000)
        self._session_timeout_ms = int(session_timeout_seconds * 1000)
        self._on_commit = on_commit
        self._dead_letter_topic = dead_letter_topic
        self._worker_id = worker_id
        self._guard = PoisonGuard(inflight_path) if inflight_path is not None else None
        self._opener = stores if stores is not None else StoreOpener("memory", Path("."))
        self._checkpoint_interval = checkpoint_interval_seconds
        self._max_poll_interval_ms = int(max_poll_interval_seconds * 1000)
        self._restorer: concurrent.futures.ThreadPoolExecutor | None = None
        self._restoring: dict[tuple[str, int], concurrent.futures.Future[Restored]] = {}
        # the committed offsets of each restoring partition's inputs, read at assignment
        self._committed_inputs: dict[tuple[str, int], list[KafkaPartition]] = {}
        # the last restore of each partition: the next waits for it (it holds the store)
        self._last_restore: dict[tuple[str, int], concurrent.futures.Future[Restored]] = {}
        self._cancel_restores = threading.Event()  # replaced at each drop
        self._stores: dict[tuple[str, int], DurableStore] = {}
        self._persisted_at: dict[Partition, float] = {}
        self._probe: Consumer | None = None  # high watermarks after a commit (committer)
        self.restores: dict[tuple[str, int], tuple[str, Replayed]] = {}
        """How each store-backed state was last restored: (from what, records read)."""
        self.states: dict[tuple[str, int], PartitionState] = {}
        self.unrestored: dict[tuple[str, int], str] = {}
        """Assigned stage partitions whose state could not be restored, and why (paused)."""
        self._positions: dict[Partition, int] = {}  # next offset to read, per held partition
        self._changed: set[Partition] = set()  # processed since the last transaction
        self._oldest_ts: dict[Partition, int] = {}
        self._lag: dict[Partition, int] = {}
        self._outbox = Outbox()
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set once partitions are assigned and restored
        self.loop_seconds = dict.fromkeys(LOOP_PHASES, 0.0)
        """Seconds of the loop's thread per phase since the worker was made (a metric):
        mostly ``poll``, it waits for records; mostly the rest, it is the bottleneck."""
        self.committed_transactions = 0
        self.aborted_transactions = 0
        self.processed_records = 0
        self.consumer: Consumer | None = None
        self._txns: TransactionalProducer | None = None
        self._committer: concurrent.futures.ThreadPoolExecutor | None = None
        self._in_flight: asyncio.Future[None] | None = None
        self._failed = False  # a transaction failed: nothing more may be committed
        self._callback_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rejoins = 0
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        """Process until :meth:`stop`; commits the open batch before returning.

        A refused transaction aborts and the worker rejoins from the committed offsets and
        the changelogs; any other error ends the run (the process exits, and its
        supervisor restarts it).
        """
        self._loop = asyncio.get_running_loop()
        while True:
            committed = self.committed_transactions
            try:
                await self._session()
                self._close_stores()
                return
            except TransactionAborted as exc:
                self.aborted_transactions += 1
                self._rejoins = 0 if self.committed_transactions > committed else self._rejoins + 1
                if self._stopping.is_set():
                    return
                if self._rejoins > MAX_REJOINS:  # e.g. another worker with our worker_id
                    raise RuntimeError(f"{MAX_REJOINS} rejoins without a commit: {exc}") from exc
                log.warning("transaction aborted (%s); rejoining from committed state", exc)

    async def _session(self) -> None:
        """One membership of the group, with its own producer and consumer."""
        self._failed, self._callback_error, self._closing = False, None, False
        self._drop()
        self._committer = concurrent.futures.ThreadPoolExecutor(1, "committer")
        self._restorer = concurrent.futures.ThreadPoolExecutor(RESTORE_THREADS, "restore")
        self._txns = TransactionalProducer(
            self._bootstrap,
            self._transactional_id,
            self._transaction_timeout_ms,
            abandoned=lambda: self._failed,
        )
        await asyncio.to_thread(self._txns.init)
        self.consumer = Consumer(
            client_config(
                self._bootstrap,
                {
                    "group.id": self._group_id,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "isolation.level": "read_committed",
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "range",
                    "session.timeout.ms": self._session_timeout_ms,
                    "heartbeat.interval.ms": max(500, self._session_timeout_ms // 4),
                    "max.poll.interval.ms": self._max_poll_interval_ms,
                    "max.partition.fetch.bytes": 4 * 1024 * 1024,
                    "fetch.max.bytes": 32 * 1024 * 1024,
                    "queued.max.messages.kbytes": 64 * 1024,
                    # librdkafka has one fetch in flight per broker, and a partition that
                    # becomes fetchable (assigned, resumed after its restore) waits for it:
                    # with the default 500 ms long poll on idle partitions (campaign-deltas
                    # between commits), processing began 0.5-1 s after a restore
                    "fetch.wait.max.ms": FETCH_WAIT_MS,
                    # once 100,000 records wait (queued.min.messages), fetching stops for
                    # this long; the default 1 s stalled a worker that drains them faster
                    "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
                },
            )
        )
        self.consumer.subscribe(
            list(self._stage_of),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        clean = False
        try:
            await self._run_loop()
            await self._commit()  # a clean stop commits what was processed
            self._persist_all()  # and leaves its stores current
            clean = True
        finally:
            if not clean:
                self._failed = True  # the revocation at close must not commit
            await self._settle_in_flight(raise_error=False)
            self._closing = True  # the revocation at close keeps the states (for inspection)
            await asyncio.to_thread(self.consumer.close)
            self._committer.shutdown(wait=True)
            self._restorer.shutdown(wait=True)  # cancelled by the revocation at close
            self._last_restore.clear()
            await asyncio.to_thread(self._txns.close, clean=clean)
            if self._probe is not None:
                self._probe.close()
                self._probe = None
            if clean and self._guard is not None:
                self._guard.close()

    def stop(self) -> None:
        self._stopping.set()

    def health(self) -> str | None:
        """Why this worker is not healthy (``/healthz``), or None when it is."""
        if self.unrestored:
            return "; ".join(
                f"{stage}[{partition}] not restored ({why})"
                for (stage, partition), why in sorted(self.unrestored.items())
            )
        if self._restoring:
            return "restoring " + ", ".join(f"{s}[{p}]" for s, p in sorted(self._restoring))
        if not self.ready.is_set():
            return "partitions not assigned and restored yet"
        return None

    async def log_diagnostics(self) -> None:
        """Where each assigned partition stands (``kill -USR1`` on a worker that seems stuck)."""
        consumer = self.consumer
        if consumer is None:
            return
        assigned = await asyncio.to_thread(consumer.assignment)
        committed = await asyncio.to_thread(consumer.committed, assigned, 10)
        for tp in committed:
            high = consumer.get_watermark_offsets(tp, cached=True)[1]
            log.warning(
                "%s[%d] processed-to=%s committed=%s highwater=%s state=%s",
                tp.topic,
                tp.partition,
                self._positions.get((tp.topic, tp.partition)),
                tp.offset,
                high,
                (self._stage_of[tp.topic].name, tp.partition) in self.states,
            )
        log.warning("states=%s in_flight=%s", sorted(self.states), self._in_flight)

    # -- the loop -----------------------------------------------------------------------
    async def _run_loop(self) -> None:
        assert self.consumer is not None
        consume = self.consumer.consume
        spent = self.loop_seconds
        clock = time.perf_counter
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            # wait no longer than until the next commit is due: the commit period is the
            # interval, not the interval plus a poll (a click waits for two commits: its
            # attribution's and, through campaign-deltas, its aggregation's; docs/scaling.md)
            due = self._interval - (time.monotonic() - last_commit)
            wait = min(0.1, max(0.005, due))  # 5 ms: no spin while a commit is in flight
            started = clock()
            messages = await asyncio.to_thread(consume, self._max_poll_records, wait)
            polled = clock()
            spent["poll"] += polled - started
            if self._callback_error is not None:
                raise self._callback_error
            if self._restoring:
                await self._install_restored()
            for tp, records in _by_partition(messages).items():
                await self._process(tp, records)
            processed = clock()
            spent["process"] += processed - polled
            in_flight = self._in_flight is not None and not self._in_flight.done()
            # a full transaction waits for the one in flight rather than keep growing: what a
            # transaction holds in memory (outputs, changelog, unpersisted store writes) is
            # bounded by max_transaction_records, not by how far behind the commits are
            full = self._uncommitted_records >= self._max_transaction_records
            if full or (not in_flight and time.monotonic() - last_commit >= self._interval):
                await self._settle_in_flight()
                settled = clock()
                spent["wait_commit"] += settled - processed
                self._start_commit()
                spent["prepare"] += clock() - settled
                last_commit = time.monotonic()

    async def _process(self, tp: Partition, records: list[Record]) -> None:
        stage = self._stage_of[tp[0]]
        state = self.states.get((stage.name, tp[1]))
        if state is None:  # not restored: paused, and its offsets never move
            return
        guard = self._guard
        if guard is None:
            pending = stage.process(state, records, self._outbox)
            if pending is not None:
                await pending
        else:
            for step, start, stop in guard.plan(tp[0], tp[1], records):
                chunk = records[start:stop]
                if step == "poison":
                    self._dead_letter_poison(chunk[0])
                    continue
                guard.mark(tp[0], tp[1], chunk[0].offset, chunk[-1].offset)
                try:
                    pending = stage.process(state, chunk, self._outbox)
                    if pending is not None:
                        await pending
                except Exception as exc:
                    guard.failed(type(exc).__name__)
                    raise
                guard.clear()
        self.processed_records += len(records)
        self._uncommitted_records += len(records)
        position = self._positions[tp] = records[-1].offset + 1
        self._changed.add(tp)
        timestamp = records[0].timestamp
        if timestamp is not None:
            self._oldest_ts.setdefault(tp, timestamp)
        assert self.consumer is not None
        high = self.consumer.get_watermark_offsets(KafkaPartition(*tp), cached=True)[1]
        self._lag[tp] = max(0, high - position) if high >= 0 else 0

    def _dead_letter_poison(self, record: Record) -> None:
        log.error(
            "%s[%d]@%d killed this worker when processed before: dead-lettered, not processed",
            record.topic,
            record.partition,
            record.offset,
        )
        detail = "the worker died processing this record on its last runs"
        letter = dead_letter(record, Reason.POISON_PILL, detail, self._worker_id)
        out = self._outbox
        out.send(self._dead_letter_topic, dead_letter_key(record), letter)
        out.dead_letters[Reason.POISON_PILL] += 1
        out.outcomes[(record.topic, Outcome.DEAD_LETTER)] += 1

    # -- the transaction ----------------------------------------------------------------
    def _prepare(self) -> tuple[Transaction, list[Seal]] | None:
        """Steps 1 and 2: everything the transaction will carry, as bytes.

        Serialising here lets the next batch be processed while this transaction is sent
        and committed (the state may change meanwhile). Every partition held goes with its
        position, changed or not, so that every transaction carries the group's metadata
        and a fenced member can commit nothing at all.
        """
        if not self._changed and not self._outbox.messages:
            return None
        out, self._outbox = self._outbox, Outbox()
        self._uncommitted_records = 0
        now = time.time()
        for (stage_name, _), state in self.states.items():  # 1
            self._stage_by_name(stage_name).flush(state, out, now)
        changelog: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        seals: list[Seal] = []
        for (stage_name, partition), state in self.states.items():  # 2
            topic = self._state_topic(stage_name)
            changelog.extend(
                (topic, name.encode(), None if value is None else _encode(value), partition)
                for name, value in state.changes()
            )
            store = self._stores.get((stage_name, partition))
            if store is not None:  # its writes so far go with this transaction
                seals.append(((topic, partition), store, store.seal()))
        assert self.consumer is not None  # on the consuming thread (see Transaction)
        txn = Transaction(
            out,
            changelog,
            dict(self._positions),
            self._oldest_ts,
            dict(self._lag),
            self.consumer.consumer_group_metadata(),
        )
        self._changed, self._oldest_ts = set(), {}
        return txn, seals

    def _send(self, txn: Transaction, seals: Sequence[Seal] = (), force: bool = False) -> None:
        """Steps 3-5, on the committer thread; transactions arrive there in order."""
        if self._failed:
            raise TransactionAborted("an earlier transaction of this session failed")
        assert self._txns is not None
        started = time.monotonic()
        try:
            self._txns.commit(txn)
        except BaseException:
            self._failed = True
            raise
        self.committed_transactions += 1
        self._persist(seals, force)  # 6: only now may the local stores take the writes
        if self._on_commit is not None:
            lag: dict[str, int] = {}
            for (topic, _), n in txn.lag.items():
                lag[topic] = lag.get(topic, 0) + n
            self._on_commit(txn.out, time.monotonic() - started, txn.oldest_ts, lag, time.time())

    def _persist(self, seals: Sequence[Seal], force: bool) -> None:
        """Write each store's sealed batches with the changelog offset they reach: the
        changelog partition's last stable offset right after this commit (the next
        transaction is not sent before this returns). A transaction still open below this
        commit's end (a fenced zombie's, or this one's markers not written yet) holds it
        lower; a restore from the store then re-applies the records after it, which
        changes nothing (the last value of a key wins, and the replay runs to the end)."""
        if self._opener.kind == "memory" or not seals:
            return
        now = time.monotonic()
        for tp, store, token in seals:
            if not force and now - self._persisted_at.get(tp, 0.0) < self._checkpoint_interval:
                continue  # kept in memory until the next checkpoint
            if self._probe is None:
                self._probe = Consumer(
                    client_config(
                        self._bootstrap,
                        {"group.id": "probe", "isolation.level": "read_committed"},
                    )
                )
            end = self._probe.get_watermark_offsets(KafkaPartition(*tp), 10, cached=False)[1]
            store.commit(token, end)
            self._persisted_at[tp] = now

    def _persist_all(self) -> None:
        """Persist every store's committed writes now (a clean stop, a revocation): called
        with no transaction in flight and none failed, so all sealed writes are committed."""
        if self._failed or self._opener.kind == "memory":
            return
        seals = [
            ((self._state_topic(name), partition), store, store.seal())
            for (name, partition), store in self._stores.items()
        ]
        self._persist(seals, force=True)

    def _start_commit(self, force: bool = False) -> None:
        prepared = self._prepare()
        if prepared is not None:
            assert self._committer is not None
            txn, seals = prepared
            future = self._committer.submit(self._send, txn, seals, force)
            self._in_flight = asyncio.wrap_future(future)

    async def _settle_in_flight(self, *, raise_error: bool = True) -> None:
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            try:
                await task
            except Exception:
                if raise_error:
                    raise

    async def _commit(self) -> None:
        """Commit everything processed so far and wait for it (shutdown)."""
        await self._settle_in_flight()
        self._start_commit(force=True)
        await self._settle_in_flight()

    def _commit_now(self) -> None:
        """Prepare and send what was processed, on the consuming thread inside a revocation
        (the loop waits in ``consume``), after every transaction submitted before it."""
        assert self._committer is not None
        self._committer.submit(lambda: None).result()  # the committer has drained
        if self._failed:
            return
        prepared = self._prepare()
        if prepared is not None:
            self._send(*prepared, force=True)

    # -- rebalancing (called inside ``consume``, on its thread) --------------------------
    def _on_revoke(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        """Commit what was processed, then drop every state: a partition that comes back
        is restored from its changelog, never trusted from memory."""
        try:
            if not self._failed and self._committer is not None:
                self._commit_now()
                self._persist_all()  # a partition that comes back replays only what is new
        except BaseException as exc:
            log.warning("commit at revocation failed: %s", exc)
            self._callback_error = exc
        finally:
            if not self._closing:
                self._drop()

    def _on_lost(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        """The group gave the partitions to someone else (this worker was frozen or cut
        off): drop everything unsent; anything in flight is refused by the coordinator."""
        log.warning("lost %d partitions: dropping their state uncommitted", len(partitions))
        self._failed = True
        self._callback_error = TransactionAborted("partitions lost")
        self._drop()

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        try:
            consumer.assign(partitions)  # now, so that a pause below sticks
            self._assign(consumer, [(tp.topic, tp.partition) for tp in partitions])
        except BaseException as exc:
            log.exception("assignment failed")
            self._callback_error = exc

    def _assign(self, consumer: Consumer, assigned: list[Partition]) -> None:
        """Restore every assigned stage partition and learn where each input stands."""
        wanted = sorted({(self._stage_of[t].name, p) for t, p in assigned})
        changelogs: dict[Partition, tuple[str, int]] = {}
        stored: dict[Partition, tuple[str, int]] = {}
        for name, partition in wanted:
            stage = self._stage_by_name(name)
            if not stage.stateful:
                self.states[(name, partition)] = stage.new_state(partition)
            elif hasattr(stage, "new_stored_state"):
                stored[(self._state_topic(name), partition)] = (name, partition)
            else:
                changelogs[(self._state_topic(name), partition)] = (name, partition)
        # the committed offsets first: read_committed, this waits until no transaction with
        # offsets for these inputs is open (KIP-447's stable offsets), so a frozen owner's
        # transaction that had its offsets accepted has committed or aborted before the
        # changelogs' ends are taken below; taken after, its changelog records could land
        # past the end read while its offsets counted (state lost)
        wait = self._transaction_timeout_ms / 1000 + 30  # a dead owner's open txn aborts
        committed = consumer.committed([KafkaPartition(t, p) for t, p in assigned], wait)
        cancel = self._cancel_restores
        for tp, key in stored.items():
            stage = self._stage_by_name(key[0])
            consumer.pause([KafkaPartition(t, key[1]) for t in stage.topics])
            assert self._restorer is not None
            after = self._last_restore.get(key)
            job = self._restorer.submit(
                restore_stored, self._bootstrap, self._opener, stage, tp, wait, cancel, after
            )
            self._restoring[key] = self._last_restore[key] = job
        restored: dict[Partition, dict[str, object]] = {}
        for attempt in range(1, RESTORE_ATTEMPTS + 1):
            try:
                restored = read_changelog(self._bootstrap, changelogs, wait)
                break
            except Exception as exc:  # a leader moving, a broker restarting: try again
                log.exception("reading changelogs %s failed (%d)", sorted(changelogs), attempt)
                if attempt == RESTORE_ATTEMPTS:
                    why = f"changelog unreadable: {type(exc).__name__}"
                    for key in changelogs.values():
                        self._unrestorable(consumer, key, why)
                time.sleep(attempt)
        for tp, values in restored.items():
            stage_name, partition = changelogs[tp]
            state = self._stage_by_name(stage_name).new_state(partition)
            entry = ""
            try:
                for entry, value in values.items():
                    state.restore(entry, value)
            except Exception as exc:
                # the key's kind only: keys hold campaign and click ids, never values
                kind = entry.split("|", 1)[0]
                log.exception("cannot restore %s[%d] at a %r key", stage_name, partition, kind)
                why = f"{type(exc).__name__} at a {kind!r} key"
                self._unrestorable(consumer, (stage_name, partition), why)
                continue
            self.states[(stage_name, partition)] = state
        self._learn_positions(
            kp for kp in committed if (self._stage_of[kp.topic].name, kp.partition) in self.states
        )
        for kp in committed:  # learnt when their state is installed
            key = (self._stage_of[kp.topic].name, kp.partition)
            if key in self._restoring:
                self._committed_inputs.setdefault(key, []).append(kp)
        log.info(
            "assigned %d partitions; restored %d states, restoring %d",
            len(assigned),
            len(restored),
            len(stored),
        )
        if not self._restoring:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self.ready.set)

    def _learn_positions(self, committed: Iterable[KafkaPartition]) -> None:
        """Where each input stands: its committed offset. One with nothing committed gets no
        position until its first record (reading starts at the log start; there is nothing
        to commit before that). Asking the broker for its log start instead took ~0.4 s per
        partition inside a rebalance, 7.6 s for 20 (docs/scaling.md)."""
        for kp in committed:
            if kp.offset >= 0:
                self._positions[(kp.topic, kp.partition)] = kp.offset

    async def _install_restored(self) -> None:
        """On the loop: put each finished restore in place with its inputs' committed
        offsets (read at assignment) and resume them; ``ready`` once none is left."""
        consumer = self.consumer
        assert consumer is not None
        for key in [k for k, future in self._restoring.items() if future.done()]:
            future = self._restoring.pop(key)
            # read at assignment, before the restore began (``_assign``); unchanged since:
            # only this member may commit them, and it has not processed them
            committed = self._committed_inputs.pop(key, [])
            try:
                restored = future.result()
            except Unrestorable as exc:
                self._unrestorable(consumer, key, str(exc))
                continue
            stage_name, partition = key
            inputs = [KafkaPartition(t, partition) for t in self._stage_by_name(stage_name).topics]
            self._learn_positions(committed)
            self.states[key] = restored.state
            self._stores[key] = restored.store
            self._persisted_at[(self._state_topic(stage_name), partition)] = time.monotonic()
            self.restores[key] = (restored.why, restored.replayed)
            consumer.resume(inputs)
        if not self._restoring:
            self.ready.set()

    def _close_stores(self) -> None:
        for store in self._stores.values():
            store.close()  # waits for a persist in progress on the committer thread
        self._stores.clear()

    def _unrestorable(self, consumer: Consumer, key: tuple[str, int], why: str) -> None:
        """Pause the partition's inputs: processing it without its state would be wrong."""
        self.unrestored[key] = why
        stage_name, partition = key
        inputs = [KafkaPartition(t, partition) for t in self._stage_by_name(stage_name).topics]
        consumer.pause(inputs)
        log.error("%s[%d] paused: its state could not be restored (%s)", stage_name, partition, why)

    def _drop(self) -> None:
        """Forget every partition: states, what was processed, what was not sent. The
        stores close with what they had persisted: only committed writes."""
        self.states.clear()
        self._cancel_restores.set()  # a restore still running stops at its next record
        self._cancel_restores = threading.Event()
        for future in self._restoring.values():  # one that finished is never installed
            future.add_done_callback(close_unused)
        self._restoring.clear()
        self._committed_inputs.clear()
        self._close_stores()
        self.unrestored.clear()
        self._positions.clear()
        self._changed.clear()
        self._oldest_ts.clear()
        self._lag.clear()
        self._outbox = Outbox()
        self._uncommitted_records = 0
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.ready.clear)

    def _stage_by_name(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)


def _by_partition(messages: list[Message]) -> dict[Partition, list[Record]]:
    """Each partition's records in offset order; errors other than end-of-partition raise.

    Messages are grouped first and each partition's records then built in one
    comprehension: the per-record work is the client's accessors and one struct.
    """
    grouped: dict[Partition, list[Message]] = {}
    for m in messages:
        error = m.error()
        if error is not None:
            if error.code() == PARTITION_EOF:
                continue
            if error.fatal():
                raise KafkaException(error)
            log.warning("consumer: %s", error.str())
            continue
        tp = (m.topic() or "", m.partition() or 0)
        group = grouped.get(tp)
        if group is None:
            grouped[tp] = [m]
        else:
            group.append(m)
    return {
        (topic, partition): [
            Record(topic, partition, m.offset() or 0, _timestamp(m), m.key(), m.value())
            for m in group
        ]
        for (topic, partition), group in grouped.items()
    }


def _timestamp(m: Message) -> int | None:
    kind, timestamp = m.timestamp()
    return timestamp if kind != TIMESTAMP_NOT_AVAILABLE else None
