"""Dead letters keep the original bytes and where they came from, base64 in JSON.

A dead letter never exceeds what its topic accepts: base64 makes a record a third larger,
so a bad input near the broker's limit would make a dead letter the broker rejects (and,
inside a transaction, an aborted commit). Originals whose letter would pass
``MAX_DEAD_LETTER_BYTES`` keep a prefix, marked ``truncated``, with their full size and
SHA-256 so they can still be matched to the input record.
"""

from __future__ import annotations

import base64
import hashlib
import time

import msgspec

from ..domain.records import DeadLetter
from .stage import Record

_encode = msgspec.json.Encoder().encode

MAX_DEAD_LETTER_BYTES = 1_000_000
"""Largest dead-letter value; the topic's ``max.message.bytes`` is set above it."""
_ROOM = 4096
"""Bytes kept for the letter's other fields (detail is at most 500 characters)."""
MAX_KEY_BYTES = 1024
"""Longest key a dead letter keeps, as its own key and in ``key_b64`` (ids are short)."""
MAX_ORIGINAL_BYTES = (MAX_DEAD_LETTER_BYTES - _ROOM - 2 * MAX_KEY_BYTES) // 4 * 3
"""Largest original kept whole (base64 turns 3 bytes into 4)."""


def dead_letter_key(record: Record) -> bytes | None:
    """The dead letter's Kafka key: the original's, cut to ``MAX_KEY_BYTES``."""
    return None if record.key is None else record.key[:MAX_KEY_BYTES]


def dead_letter(record: Record, reason: str, detail: str, worker_id: str) -> bytes:
    """The dead-letter value for ``record``; ``detail`` must never quote the payload.

    >>> from stream_app.engine.stage import Record
    >>> letter = msgspec.json.decode(dead_letter(
    ...     Record("clicks", 0, 7, 0, None, b"x" * 2_000_000), "too_large", "", "w1"))
    >>> letter["truncated"], letter["original_size"], len(letter["value_b64"]) < 1_000_000
    (True, 2000000, True)
    """
    value = record.value or b""
    truncated = len(value) > MAX_ORIGINAL_BYTES
    kept = value[:MAX_ORIGINAL_BYTES] if truncated else value
    key = dead_letter_key(record)
    return _encode(
        DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key_b64=base64.b64encode(key).decode() if key is not None else None,
            value_b64=base64.b64encode(kept).decode(),
            reason=reason,
            detail=detail[:500],
            worker_id=worker_id,
            failed_at=time.time(),
            truncated=truncated,
            original_size=len(value),
            original_sha256=hashlib.sha256(value).hexdigest() if truncated else None,
        )
    )
