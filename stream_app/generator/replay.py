"""``stream-app replay FILE``: send recorded traffic (JSONL or CSV) to the input topics.

JSONL is what :class:`~stream_app.generator.sinks.JsonlSink` writes, so a generated file
replays byte for byte. CSV has columns ``topic,key,value`` (value = the JSON text), for
hand-made cases; an empty key is taken from the event (click_id or campaign_id), because
the processor relies on that co-partitioning.
"""

from __future__ import annotations

import base64
import csv
import math
from collections.abc import Iterator
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


def _kinds(settings: Settings | None) -> dict[str, EventKind]:
    """Accept topic kinds (``click``) and configured topic names (``clicks``) alike."""
    kinds: dict[str, EventKind] = {kind: kind for kind in _KEY_FIELD}
    for kind, name in topic_names(settings or Settings()).items():
        kinds.setdefault(name, kind)
    return kinds


def load_records(path: Path | str, settings: Settings | None = None) -> Iterator[Emitted]:
    """Records of a ``.jsonl`` / ``.csv`` file, in file order."""
    path = Path(path)
    kinds = _kinds(settings)
    if path.suffix.lower() == ".csv":
        yield from _load_csv(path, kinds)
    else:
        yield from _load_jsonl(path, kinds)


def _kind(kinds: dict[str, EventKind], topic: str, where: str) -> EventKind:
    try:
        return kinds[topic]
    except KeyError:
        raise ValueError(f"{where}: unknown topic {topic!r}") from None


def _load_jsonl(path: Path, kinds: dict[str, EventKind]) -> Iterator[Emitted]:
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = orjson.loads(line)
            kind = _kind(kinds, row["topic"], f"{path}:{n}")
            value = base64.b64decode(row["value_b64"])
            bad = row.get("bad")
            ts = row.get("ts")
            yield Emitted(
                kind,
                str(row.get("key") or "").encode(),
                value,
                float(ts) if isinstance(ts, int | float) else math.nan,
                emit_at=n,
                bad=cast(BadReason, bad) if bad in BAD_REASONS else None,
            )


def _load_csv(path: Path, kinds: dict[str, EventKind]) -> Iterator[Emitted]:
    with path.open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            kind = _kind(kinds, row["topic"], f"{path}:{n}")
            value = row["value"].encode()
            event = _parse(value)
            key = row.get("key") or str(event.get(_KEY_FIELD[kind], ""))
            ts = event.get("ts")
            if not (isinstance(ts, int | float) and math.isfinite(ts) and ts >= 0):
                ts = math.nan  # no usable event time: the broker stamps it
            yield Emitted(kind, key.encode(), value, float(ts), emit_at=n)


def _parse(value: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def count_records(path: Path | str) -> int:
    """Records in a file, for the progress bar's total."""
    path = Path(path)
    with path.open("rb") as f:
        lines = sum(1 for line in f if line.strip())
    return lines - 1 if path.suffix.lower() == ".csv" else lines


async def replay_to_kafka(
    path: Path | str,
    settings: Settings,
    rate: float | None = None,
    progress: bool = True,
) -> int:
    """Send every record of ``path`` to its topic; returns how many were sent."""
    total = count_records(path) if progress else None
    async with KafkaSink(
        settings, rate=rate, progress=progress, total=total, description="replaying"
    ) as sink:
        return await sink.send_all(load_records(path, settings))
