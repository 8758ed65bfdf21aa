"""Where generated records go: a JSONL file (for tests and replays) or the Kafka topics.

The Kafka sink never waits for a delivery per record: ``producer.send()`` only enqueues
(librdkafka's ``produce()``, one C call), delivery reports are served every few thousand
records and at the end, and the first failed delivery is raised, so throughput is bounded
by the broker, not by round trips, and nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

import confluent_kafka
import orjson
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from ..domain.events import EventKind
from ..domain.money import CurrencyTable
from ..engine.clients import producer_config
from ..settings import Settings
from .profiles import Scenario
from .traffic import Emitted, TrafficGenerator, TruthHook, estimate_records
from .truth import GroundTruth

log = logging.getLogger(__name__)


class JsonlSink:
    """One JSON line per record, exact value bytes in base64 (bad events are not JSON).

    ``value`` repeats the parsed object when the bytes are valid JSON, for readability;
    ``bad`` names the intended dead-letter reason of deliberately bad records.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.written = 0
        self._file: IO[bytes] | None = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("wb", buffering=1 << 20)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, record: Emitted) -> None:
        if self._file is None:
            raise RuntimeError("JsonlSink is not open; use it as a context manager")
        self._file.write(jsonl_line(record))
        self.written += 1

    def write_all(self, records: Iterable[Emitted]) -> int:
        for record in records:
            self.write(record)
        return self.written


def jsonl_line(record: Emitted) -> bytes:
    """The JSONL form of one record, newline included."""
    head: dict[str, Any] = {
        "topic": record.topic_kind,
        "key": record.key.decode(),
        "value_b64": base64.b64encode(record.value).decode(),
        "ts": record.ts,
    }
    if record.bad is not None:
        head["bad"] = record.bad
    line = orjson.dumps(head)
    if record.bad is not None:
        try:
            orjson.loads(record.value)  # strict: no NaN, no overflowing numbers
        except orjson.JSONDecodeError:
            return line + b"\n"
    # valid JSON: splice the exact bytes in rather than re-encoding them
    return line[:-1] + b',"value":' + record.value + b"}\n"


class Producer(Protocol):
    """What the sink needs of a producer: :class:`KafkaProducer`, or a fake in unit tests.

    ``send`` only enqueues. It may return a future of the delivery (the sink gathers those
    every ``flush_every`` records) or None when failures are raised by a later ``send`` or
    by ``flush`` instead.
    """

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def flush(self) -> None: ...
    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> asyncio.Future[Any] | None: ...


class KafkaProducer:
    """A confluent-kafka producer behind the sink's async :class:`Producer` interface.

    ``config`` should come from :func:`stream_app.engine.clients.producer_config` (Kafka's
    murmur2 partitioner, which the co-partitioned topics rely on).

    ``send`` enqueues with ``produce()`` and serves delivery reports with ``poll(0)`` every
    ``poll_every`` records; only failures are reported (``delivery.report.only.error``),
    and the first one fails the next ``send`` or ``flush``. A full local queue makes
    ``send`` wait for deliveries (in a thread) instead of failing.
    """

    STOP_FLUSH_SECONDS = 10.0

    def __init__(self, config: dict[str, Any], *, poll_every: int = 1000) -> None:
        self._config = {
            **config,
            "on_delivery": self._on_delivery,
            "delivery.report.only.error": True,
        }
        self._poll_every = poll_every
        self._producer: confluent_kafka.Producer | None = None
        self._unpolled = 0
        self._error: confluent_kafka.KafkaError | None = None
        self._error_topic: str | None = None
        self.failed = 0
        """Records whose delivery failed."""

    def _on_delivery(
        self, error: confluent_kafka.KafkaError | None, message: confluent_kafka.Message
    ) -> None:
        if error is None:
            return
        self.failed += 1
        if self._error is None:
            self._error = error
            self._error_topic = message.topic()
            log.error("delivery to %s failed: %s", self._error_topic, error)

    def _raise_failed(self) -> None:
        if self._error is not None:
            exc = confluent_kafka.KafkaException(self._error)
            exc.add_note(f"delivery to {self._error_topic} failed ({self.failed} records so far)")
            raise exc

    async def start(self) -> None:
        self._producer = confluent_kafka.Producer(self._config)

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError("KafkaProducer is not started")
        while True:
            try:
                producer.produce(
                    topic,
                    value,
                    key,
                    -1 if partition is None else partition,
                    timestamp=timestamp_ms or 0,  # 0: none given (the broker stamps it)
                )
            except BufferError:  # the local queue is full: let deliveries catch up
                pass
            else:
                break
            await asyncio.to_thread(producer.poll, 0.1)
            self._raise_failed()
        self._unpolled += 1
        if self._unpolled >= self._poll_every:
            self._unpolled = 0
            producer.poll(0)
            self._raise_failed()

    async def flush(self) -> None:
        """Wait until every record sent so far is delivered; raises the first failure."""
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush)
            self._unpolled = 0
        self._raise_failed()

    async def stop(self) -> None:
        """Deliver what is still queued (for a bounded time), then close.

        Never raises: on the success path ``flush`` has already reported failures, and on
        an error path the original error matters; what is lost here is logged.
        """
        producer, self._producer = self._producer, None
        if producer is None:
            return

        def close() -> None:
            undelivered = producer.flush(self.STOP_FLUSH_SECONDS)
            if undelivered:
                producer.purge()
                producer.poll(0)
                log.warning("%d records not delivered when the producer stopped", undelivered)
            producer.close()

        await asyncio.to_thread(close)
        if self.failed:
            log.warning("%d records failed delivery (first: %s)", self.failed, self._error)


def kafka_producer(settings: Settings) -> Producer:
    return KafkaProducer(
        producer_config(
            settings.kafka,
            {
                "client.id": "stream-app-generator",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 20,
            },
        )
    )


def topic_names(settings: Settings) -> dict[EventKind, str]:
    t = settings.topics
    return {"click": t.clicks, "conversion": t.conversions, "spend": t.spend, "review": t.reviews}


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} ev/s" if speed else "", style="progress.data.speed")


def progress_bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
    )


class KafkaSink:
    """Async sink to the input topics, optionally paced to ``rate`` events/s wall clock.

    Pacing is a token bucket refilled in chunks of about 1/50 s of traffic, so a slow rate
    still trickles smoothly while a high one costs one sleep per chunk, not per record.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        rate: float | None = None,
        progress: bool = False,
        total: int | None = None,
        description: str = "sending",
        flush_every: int = 20_000,
        producer: Producer | None = None,
    ) -> None:
        if rate is not None and not rate > 0:
            raise ValueError("rate must be positive (or None for as fast as possible)")
        self.topics = topic_names(settings)
        self.rate = rate
        self.sent = 0
        self._settings = settings
        self._producer = producer
        self._flush_every = flush_every
        self._pending: list[asyncio.Future[Any]] = []
        self._chunk = max(1, int(rate / 50)) if rate else 1000
        self._started = 0.0
        self._progress = progress_bar() if progress else None
        self._task: TaskID | None = None
        self._total = total
        self._description = description

    async def __aenter__(self) -> Self:
        if self._producer is None:
            self._producer = kafka_producer(self._settings)
        await self._producer.start()
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self._description, total=self._total)
        self._started = time.monotonic()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            if self._producer is not None:
                await self._producer.stop()
            if self._progress is not None:
                self._update(final=True)
                self._progress.stop()

    async def send(self, record: Emitted) -> None:
        """Enqueue one record; returns before it is delivered."""
        if self._producer is None:
            raise RuntimeError("KafkaSink is not started; use it with 'async with'")
        future = await self._producer.send(
            self.topics[record.topic_kind],
            value=record.value,
            key=record.key or None,
            timestamp_ms=record.timestamp_ms,
        )
        if future is not None:
            self._pending.append(future)
        self.sent += 1
        if len(self._pending) >= self._flush_every:
            await self._gather()
        if self.sent % self._chunk == 0:
            self._update()
            if self.rate is not None:
                ahead = self._started + self.sent / self.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)

    async def send_all(self, records: Iterable[Emitted]) -> int:
        for record in records:
            await self.send(record)
        return self.sent

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged; raises the first failure."""
        if self._producer is not None:
            await self._producer.flush()
        await self._gather()

    async def _gather(self) -> None:
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)

    def _update(self, *, final: bool = False) -> None:
        if self._progress is None or self._task is None:
            return
        total = self.sent if final else self._total
        self._progress.update(self._task, completed=self.sent, total=total)


# -- one-call entry points --------------------------------------------------------------
def generate_to_file(
    scenario: Scenario,
    path: Path | str,
    *,
    currencies: CurrencyTable | None = None,
    on_click: TruthHook | None = None,
) -> GroundTruth:
    """Write the scenario's records to a JSONL file; returns the complete ground truth."""
    traffic = TrafficGenerator(scenario, currencies=currencies, on_click=on_click)
    with JsonlSink(path) as sink:
        sink.write_all(traffic)
    return traffic.truth


async def generate_to_kafka(
    scenario: Scenario,
    settings: Settings,
    rate: float | None = None,
    progress: bool = False,
    *,
    on_click: TruthHook | None = None,
    producer: Producer | None = None,
) -> GroundTruth:
    """Send the scenario's records to the input topics; returns the complete ground truth.

    Money in the truth uses ``settings``' rate table, i.e. what that processor will compute.
    """
    currencies = CurrencyTable(settings.currency_rates, settings.reporting_currency)
    traffic = TrafficGenerator(scenario, currencies=currencies, on_click=on_click)
    async with KafkaSink(
        settings,
        rate=rate,
        progress=progress,
        total=estimate_records(scenario),
        description="generating",
        producer=producer,
    ) as sink:
        await sink.send_all(traffic)
    return traffic.truth
