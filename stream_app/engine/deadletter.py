"""Dead letters keep the original bytes and where they came from, base64 in JSON."""

from __future__ import annotations

import base64
import time

import msgspec
from aiokafka.structs import ConsumerRecord

from ..domain.records import DeadLetter

_encode = msgspec.json.Encoder().encode


def dead_letter(
    record: ConsumerRecord[bytes, bytes], reason: str, detail: str, worker_id: str
) -> bytes:
    """The dead-letter value for ``record``; ``detail`` must never quote the payload."""
    return _encode(
        DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key_b64=base64.b64encode(record.key).decode() if record.key is not None else None,
            value_b64=base64.b64encode(record.value or b"").decode(),
            reason=reason,
            detail=detail[:500],
            worker_id=worker_id,
            failed_at=time.time(),
        )
    )
