"""Decisions taken once per interval of event time (bid signals, alert checks)."""

from __future__ import annotations

import math


def next_slot(watermark: float, interval_seconds: float, decided: int | None) -> int | None:
    """The interval slot ``watermark`` has reached, if no decision was taken in it yet.

    ``None`` before event time has started or while the watermark is still in (or behind)
    the slot last ``decided``; the slot starts at ``slot * interval_seconds``.

    >>> next_slot(125.0, 60.0, None), next_slot(125.0, 60.0, 2), next_slot(185.0, 60.0, 2)
    (2, None, 3)
    """
    if watermark <= 0:
        return None
    slot = math.floor(watermark / interval_seconds)
    if decided is not None and slot <= decided:
        return None
    return slot
