"""Opening a partition's store at assignment: reuse it when it is current, else rebuild.

A RocksDB store is reused when its checkpoint names this changelog topic and an offset
within the changelog's ``[log start, end]``; the engine then replays only the records from
that offset. Anything else starts an empty store and a full replay: no store (a new
machine, a deleted directory), a store of another changelog (another app id or topic
prefix), a checkpoint beyond the changelog's end (the topic was recreated, or lost
committed data) or before its log start, and a store that cannot be opened or read
(corrupt). The changelog is the source of truth; the store only saves reading it.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rocksdict import Cache, WriteBufferManager

from .interface import DurableStore
from .memory import MemoryStore
from .rocks import RocksConfig, RocksStore, rocks_options

log = logging.getLogger(__name__)

StoreKind = Literal["memory", "rocksdb"]


@dataclass(frozen=True, slots=True)
class Opened:
    store: DurableStore
    replay_from: int
    """The changelog offset to replay from (the log start on a full restore)."""
    local: bool
    """True when the store's persisted content was reused."""
    why: str


class StoreOpener:
    """Opens stores under ``root`` (one directory per changelog partition); one block
    cache and one memtable budget shared by every store it opens."""

    def __init__(self, kind: StoreKind, root: Path, config: RocksConfig | None = None) -> None:
        self.kind = kind
        self.root = root
        self.config = config or RocksConfig()
        self._cache: Cache | None = None
        self._write_buffers: WriteBufferManager | None = None

    def path(self, topic: str, partition: int) -> Path:
        return self.root / f"{topic}-{partition}"

    def open(self, topic: str, partition: int, log_start: int, end: int) -> Opened:
        if self.kind == "memory":
            return Opened(MemoryStore(), log_start, False, "in-memory store")
        if self._cache is None or self._write_buffers is None:
            self._cache = Cache(self.config.block_cache_bytes)
            self._write_buffers = WriteBufferManager(self.config.write_buffer_budget_bytes, False)
        options = rocks_options(self.config, self._cache, self._write_buffers)
        path = self.path(topic, partition)
        try:
            store = RocksStore(path, topic, options)
            position = store.position()
        except Exception as exc:  # corrupt: unreadable files or checkpoint
            if "lock" in str(exc).lower():  # open elsewhere: another worker with our id
                raise
            log.warning("store %s unreadable (%s): rebuilding it", path, exc)
            if "store" in locals():
                store.close()
            return self._fresh(path, topic, options, log_start, f"unreadable: {exc}")
        if position is None:
            why = "no local store"
        elif position[0] != topic:
            why = f"a store of {position[0]!r}"
        elif not log_start <= position[1] <= end:
            why = f"stale: offset {position[1]} outside [{log_start}, {end}]"
        else:
            return Opened(store, position[1], True, f"local store at offset {position[1]}")
        store.close()
        return self._fresh(path, topic, options, log_start, why)

    def _fresh(self, path: Path, topic: str, options: object, start: int, why: str) -> Opened:
        shutil.rmtree(path, ignore_errors=True)
        store = RocksStore(path, topic, options)  # type: ignore[arg-type]
        return Opened(store, start, False, why)
