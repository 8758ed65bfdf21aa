"""Where generated records go: a JSONL file (for tests and replays) or the Kafka topics.

The Kafka sink never waits for a delivery per record: ``producer.send()`` only enqueues,
and the delivery futures are gathered every ``flush_every`` records and at the end, so
throughput is bounded by the broker, not by round trips.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

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
from ..settings import Settings
from .profiles import Scenario
from .traffic import Emitted, TrafficGenerator, TruthHook, estimate_records
from .truth import GroundTruth

MAX_BATCH_BYTES = 256 * 1024


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
    """The slice of ``aiokafka.AIOKafkaProducer`` the sink uses (a fake in unit tests)."""

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
    ) -> asyncio.Future[Any]: ...


def kafka_producer(settings: Settings) -> Producer:
    from aiokafka import AIOKafkaProducer

    producer: Producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="stream-app-generator",
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=MAX_BATCH_BYTES,
    )
    return producer


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
