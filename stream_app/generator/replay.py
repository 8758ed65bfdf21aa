"""``stream-app replay FILE``: send recorded traffic (JSONL or CSV) to the input topics.

JSONL is what :class:`~stream_app.generator.sinks.JsonlSink` writes, so a generated file
replays byte for byte; a hand-written line may give the event as ``value`` (a JSON object)
instead of ``value_b64``. CSV has columns ``topic,key,value`` (value = the JSON text). A
missing key (an empty one in CSV) is taken from the event (click_id or campaign_id), because
the processor relies on that co-partitioning. The format, with examples: docs/generator.md.

Each line is checked before anything is sent (:func:`scan`), so a bad line is reported with
its number and never leaves a half-replayed file behind. Only the envelope is checked: the
event itself may be deliberately bad (the generator's bad records are), and the processor
dead-letters it.
"""

from __future__ import annotations

import base64
import binascii
import csv
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson

from ..domain.events import EventKind
from ..settings import Settings
from .profiles import BAD_REASONS, BadReason
from .sinks import KafkaSink, topic_names
from .traffic import Emitted

_KEY_FIELD: dict[EventKind, str] = {
    "click": "click_id",
    "conversion": "click_id",
    "spend": "campaign_id",
    "review": "campaign_id",
}
CSV_COLUMNS = ("topic", "key", "value")


class ReplayLineError(ValueError):
    """A line that cannot be replayed; ``line`` is its 1-based number in the file."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Rejected:
    """A line that was not replayed, and why (short enough for one line of output)."""

    line: int
    reason: str


@dataclass
class Scan:
    """What :func:`scan` found: how many lines replay, and the rejected ones."""

    valid: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    def summary(self, limit: int = 3) -> str:
        """``line 2: not JSON (…); line 5: …; and 4 more``."""
        shown = "; ".join(f"line {r.line}: {r.reason}" for r in self.rejected[:limit])
        more = len(self.rejected) - limit
        return shown + (f"; and {more} more" if more > 0 else "")


def _kinds(settings: Settings | None) -> dict[str, EventKind]:
    """Accept topic kinds (``click``) and configured topic names (``clicks``) alike."""
    kinds: dict[str, EventKind] = {kind: kind for kind in _KEY_FIELD}
    for kind, name in topic_names(settings or Settings()).items():
        kinds.setdefault(name, kind)
    return kinds


def read_records(
    path: Path | str, settings: Settings | None = None
) -> Iterator[Emitted | Rejected]:
    """Each non-empty line of a ``.jsonl`` / ``.csv`` file as a record, or why it is not one."""
    path = Path(path)
    kinds = _kinds(settings)
    if path.suffix.lower() == ".csv":
        yield from _read_csv(path, kinds)
    else:
        yield from _read_jsonl(path, kinds)


def load_records(path: Path | str, settings: Settings | None = None) -> Iterator[Emitted]:
    """Records of a ``.jsonl`` / ``.csv`` file, in file order; raises
    :class:`ReplayLineError` at the first line that is not one."""
    for item in read_records(path, settings):
        if isinstance(item, Rejected):
            raise ReplayLineError(Path(path), item.line, item.reason)
        yield item


def scan(path: Path | str, settings: Settings | None = None) -> Scan:
    """Check every line without sending anything."""
    result = Scan()
    for item in read_records(path, settings):
        if isinstance(item, Rejected):
            result.rejected.append(item)
        else:
            result.valid += 1
    return result


def _topic(kinds: dict[str, EventKind], topic: object) -> EventKind:
    if not isinstance(topic, str) or not topic:
        raise _Invalid("no 'topic'")
    try:
        return kinds[topic]
    except KeyError:
        known = ", ".join(sorted(kinds))
        raise _Invalid(f"unknown topic {topic!r} (one of {known})") from None


class _Invalid(Exception):
    """Why a line is rejected; caught per line."""


def _read_jsonl(path: Path, kinds: dict[str, EventKind]) -> Iterator[Emitted | Rejected]:
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield _jsonl_record(line, n, kinds)
            except _Invalid as exc:
                yield Rejected(n, str(exc))


def _jsonl_record(line: bytes, n: int, kinds: dict[str, EventKind]) -> Emitted:
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _Invalid(f"not JSON ({exc})") from None
    if not isinstance(row, dict):
        raise _Invalid(f"not a JSON object but {type(row).__name__}")
    kind = _topic(kinds, row.get("topic"))
    if "value_b64" in row:
        encoded = row["value_b64"]
        try:
            if not isinstance(encoded, str):
                raise ValueError
            value = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise _Invalid("'value_b64' is not base64") from None
    elif isinstance(row.get("value"), dict):
        value = orjson.dumps(row["value"])
    elif isinstance(row.get("value"), str):
        value = row["value"].encode()
    else:
        raise _Invalid("no 'value_b64' and no 'value' (the event as a JSON object)")
    key = row.get("key")
    if key is None:
        key = str(_parse(value).get(_KEY_FIELD[kind], ""))
    elif not isinstance(key, str):
        raise _Invalid(f"'key' is not a string but {type(key).__name__}")
    ts = row.get("ts")
    bad = row.get("bad")
    return Emitted(
        kind,
        key.encode(),
        value,
        float(ts) if isinstance(ts, int | float) else _event_ts(value),
        emit_at=n,
        bad=cast(BadReason, bad) if bad in BAD_REASONS else None,
    )


def _read_csv(path: Path, kinds: dict[str, EventKind]) -> Iterator[Emitted | Rejected]:
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("topic", "value") if c not in (reader.fieldnames or ())]
        if missing:
            header = ",".join(reader.fieldnames or ()) or "nothing"
            yield Rejected(1, f"header is {header!r}, needs {','.join(CSV_COLUMNS)}")
            return
        for row in reader:
            n = reader.line_num
            try:
                kind = _topic(kinds, row["topic"])
                if row["value"] is None:
                    raise _Invalid("no value column")
            except _Invalid as exc:
                yield Rejected(n, str(exc))
                continue
            value = row["value"].encode()
            key = row.get("key") or str(_parse(value).get(_KEY_FIELD[kind], ""))
            yield Emitted(kind, key.encode(), value, _event_ts(value), emit_at=n)


def _event_ts(value: bytes) -> float:
    """The event's own ``ts``, or NaN when it has no usable one (the broker stamps it)."""
    ts = _parse(value).get("ts")
    return float(ts) if isinstance(ts, int | float) and math.isfinite(ts) and ts >= 0 else math.nan


def _parse(value: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def count_records(path: Path | str) -> int:
    """Non-empty lines (less the CSV header): an upper bound on the records, for a total."""
    path = Path(path)
    with path.open("rb") as f:
        lines = sum(1 for line in f if line.strip())
    return lines - 1 if path.suffix.lower() == ".csv" else lines


def _valid(items: Iterable[Emitted | Rejected]) -> Iterator[Emitted]:
    return (item for item in items if not isinstance(item, Rejected))


async def replay_to_kafka(
    path: Path | str,
    settings: Settings,
    rate: float | None = None,
    progress: bool = False,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Send every valid record of ``path`` to its topic (rejected lines are skipped: call
    :func:`scan` first to refuse them); returns how many were sent.

    ``on_progress`` gets the number enqueued so far every :data:`PROGRESS_EVERY` records
    (for a caller's own progress bar; ``progress`` is the sink's, on stdout).
    """
    records = _valid(read_records(path, settings))
    if on_progress is not None:
        records = _counted(records, on_progress)
    total = count_records(path) if progress else None
    async with KafkaSink(
        settings, rate=rate, progress=progress, total=total, description="replaying"
    ) as sink:
        return await sink.send_all(records)


PROGRESS_EVERY = 1000


def _counted(records: Iterator[Emitted], report: Callable[[int], None]) -> Iterator[Emitted]:
    n = 0
    for n, record in enumerate(records, 1):
        yield record
        if n % PROGRESS_EVERY == 0:
            report(n)
    report(n)
