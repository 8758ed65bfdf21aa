"""A compacted changelog in a dict, to restore domain state the way the engine does."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import orjson

from stream_app.engine.stage import PartitionState

S = TypeVar("S", bound=PartitionState)


def restore_through(log: dict[str, object], state: PartitionState, fresh: Callable[[], S]) -> S:
    """Write ``state``'s changes to ``log`` (JSON round trip, tombstones delete), rebuild."""
    for key, value in state.changes():
        if value is None:
            log.pop(key, None)
        else:
            log[key] = orjson.loads(orjson.dumps(value))
    rebuilt = fresh()
    for key, value in log.items():
        rebuilt.restore(key, value)
    return rebuilt
