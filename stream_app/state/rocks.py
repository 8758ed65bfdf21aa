"""The RocksDB store (rocksdict): keyed state on disk, memory bounded by configuration.

One RocksDB per stage partition. Keys: ``t<table>\\0<key>`` for tables,
``i<index>\\0<order (8 sortable bytes)><item>`` for ordered indexes, and one checkpoint key
holding the changelog topic and the next changelog offset the persisted data reflects.

Writes go to an in-memory layer first (the domain reads its own writes at once); the
engine seals that layer per transaction and, once the transaction committed, writes the
sealed batches and the new checkpoint in one ``WriteBatch`` (:mod:`.interface`). So the
database never holds what Kafka did not commit, and a ``kill -9`` at any point leaves it
at a committed changelog offset, or behind it.

Memory: the block cache (shared by every store of the process, index and filter blocks
included), the memtables (``write_buffer_bytes`` × ``max_write_buffers`` per store, and
``write_buffer_budget_bytes`` for every store of the process together), and the in-memory
layer (the writes of the transactions not yet persisted).
"""

from __future__ import annotations

import functools
import struct
import threading
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgspec
import orjson
from rocksdict import (
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteBufferManager,
)

CHECKPOINT_KEY = b"\x00checkpoint"
# msgspec, not orjson, for values held until their transaction persists: orjson 3.13's
# bytes keep a 4 KiB allocation however short the JSON (measured: 4,097 B per 25-byte
# value, against 94), which made a backlog's unpersisted writes cost GBs
_encode = msgspec.json.Encoder().encode
_MISSING = object()
Layer = dict[bytes, bytes | None]
# the writes of one transaction, per table or index (its key prefix): popping an index
# scans that index's new entries, not every write of the transaction
Layers = dict[bytes, Layer]


@dataclass(frozen=True, slots=True)
class RocksConfig:
    block_cache_bytes: int = 32 << 20
    """One block cache for every store of the process."""
    write_buffer_bytes: int = 16 << 20
    """One memtable's size."""
    max_write_buffers: int = 2
    """Memtables per store, the active one included."""
    write_buffer_budget_bytes: int = 64 << 20
    """Every store's memtables together (a RocksDB write buffer manager): a worker holding
    more partitions, or more stages on stores, flushes sooner instead of using more memory.
    Soft: each store keeps its active memtable (writers are not stalled: with stalls on,
    a persist waited forever here)."""


@functools.lru_cache(maxsize=4096)  # hour buckets repeat: most adds are hits
def order_bytes(order: float) -> bytes:
    """Eight bytes whose byte order is the numeric order of ``order``.

    >>> order_bytes(-1.0) < order_bytes(0.0) < order_bytes(0.5) < order_bytes(3600.0)
    True
    >>> order_of(order_bytes(1767225600.25))
    1767225600.25
    """
    (bits,) = struct.unpack(">Q", struct.pack(">d", order))
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)
    encoded: bytes = bits.to_bytes(8, "big")
    return encoded


def order_of(raw: bytes) -> float:
    bits = int.from_bytes(raw, "big")
    bits = bits & ~(1 << 63) if bits >> 63 else bits ^ 0xFFFF_FFFF_FFFF_FFFF
    (order,) = struct.unpack(">d", struct.pack(">Q", bits))
    return float(order)


def _upper(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def rocks_options(config: RocksConfig, cache: Cache, manager: WriteBufferManager) -> Options:
    """Options for one store: ``cache`` and ``manager`` are shared by every store of the
    process, so the memory bound is the process's, whatever the number of stores."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_manager(manager)
    options.set_write_buffer_size(config.write_buffer_bytes)
    options.set_max_write_buffer_number(config.max_write_buffers)
    options.set_max_background_jobs(2)
    options.set_keep_log_file_num(2)
    options.set_max_total_wal_size(4 * config.write_buffer_bytes)
    options.set_compression_type(DBCompressionType.lz4())
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_bloom_filter(10, False)
    # index and filter blocks in the cache (counted, bounded), partitioned: a whole-file
    # filter held there cost ~280 µs per lookup here once a compaction had run
    table.set_cache_index_and_filter_blocks(True)
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_metadata_block_size(4096)
    table.set_pin_top_level_index_and_filter(True)
    options.set_block_based_table_factory(table)
    return options


class RocksStore:
    """A :class:`~.interface.DurableStore` in one RocksDB directory."""

    def __init__(self, path: Path, topic: str, options: Options) -> None:
        self.path = path
        self.topic = topic
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), options)
        self._live: Layers = {}
        self._sealed: list[tuple[int, Layers]] = []  # replaced, never mutated (readers)
        self._token = 0
        self._lock = threading.Lock()
        self._closed = False
        self._floors: dict[bytes, bytes] = {}  # where each index's live entries start on disk

    # -- raw access (the domain's writes are visible at once) ---------------------------
    def get_raw(self, space: bytes, key: bytes) -> bytes | None:
        """The value of ``key`` (in table or index ``space``): the newest layer's, or disk's."""
        layer = self._live.get(space)
        if layer is not None:
            value = layer.get(key, _MISSING)
            if value is not _MISSING:
                return value  # type: ignore[return-value]
        for _, sealed in reversed(self._sealed):
            layer = sealed.get(space)
            if layer is not None:
                value = layer.get(key, _MISSING)
                if value is not _MISSING:
                    return value  # type: ignore[return-value]
        return self._db.get(key)

    def keys_between(
        self, space: bytes, lo: bytes, hi: bytes, disk_from: bytes | None = None
    ) -> list[bytes]:
        """Keys of ``space`` in [lo, hi), sorted: the disk's merged with the unpersisted."""
        overlay: Layer = {}
        for layers in [sealed for _, sealed in self._sealed] + [self._live]:
            for key, value in layers.get(space, {}).items():
                if lo <= key < hi:
                    overlay[key] = value
        read = ReadOptions()
        read.set_iterate_upper_bound(hi)
        disk = self._db.keys(from_key=disk_from or lo, read_opt=read)
        keys: set[bytes] = set(cast(Iterable[bytes], disk))
        for key, value in overlay.items():
            if value is None:
                keys.discard(key)
            else:
                keys.add(key)
        return sorted(keys)

    def layer(self, space: bytes) -> Layer:
        """The in-memory layer of ``space``'s writes, persisted after the commit (replaced at
        each seal: fetch it per write)."""
        layer = self._live.get(space)
        if layer is None:
            layer = self._live[space] = {}
        return layer

    def pop_index(self, prefix: bytes, bound: bytes) -> list[bytes]:
        """Remove and return the keys in [prefix, bound), sorted."""
        # below the last bound popped, the disk holds only deleted entries (tombstones that
        # a seek from the prefix would walk through); new entries there are still in memory
        floor = self._floors.get(prefix)
        keys = self.keys_between(prefix, prefix, bound, floor)
        live = self.layer(prefix)
        for key in keys:
            live[key] = None
        if floor is None or bound > floor:
            self._floors[prefix] = bound
        return keys

    # -- the domain's interface ----------------------------------------------------------
    def table(self, name: str) -> RocksTable:
        return RocksTable(self, b"t" + name.encode() + b"\x00")

    def index(self, name: str) -> RocksIndex:
        return RocksIndex(self, b"i" + name.encode() + b"\x00")

    # -- the engine's interface ----------------------------------------------------------
    def seal(self) -> int:
        with self._lock:
            self._token += 1
            self._sealed = [*self._sealed, (self._token, self._live)]
            self._live = {}
            return self._token

    def commit(self, token: int, offset: int) -> None:
        with self._lock:
            if self._closed:
                return
            batch = WriteBatch(raw_mode=True)
            merged: Layer = {}
            for sealed_token, layers in self._sealed:
                if sealed_token <= token:
                    for layer in layers.values():
                        merged.update(layer)
            for key, value in merged.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            batch.put(CHECKPOINT_KEY, _encode([self.topic, offset]))
            self._db.write(batch)
            self._sealed = [(t, layer) for t, layer in self._sealed if t > token]

    def position(self) -> tuple[str, int] | None:
        raw = self._db.get(CHECKPOINT_KEY)
        if raw is None:
            return None
        topic, offset = orjson.loads(raw)
        if not isinstance(topic, str) or not isinstance(offset, int):
            raise ValueError("malformed checkpoint")
        return topic, offset

    def unpersisted(self) -> int:
        """Writes held in memory, not yet on disk (a gauge of the in-memory layer)."""
        layers = [self._live] + [sealed for _, sealed in self._sealed]
        return sum(len(layer) for each in layers for layer in each.values())

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()


class RocksTable:
    __slots__ = ("_prefix", "_store")

    def __init__(self, store: RocksStore, prefix: bytes) -> None:
        self._store, self._prefix = store, prefix

    def get(self, key: str) -> Any | None:
        prefix = self._prefix
        raw = self._store.get_raw(prefix, prefix + key.encode())
        return None if raw is None else orjson.loads(raw)

    def put(self, key: str, value: Any) -> None:
        self._store.layer(self._prefix)[self._prefix + key.encode()] = _encode(value)

    def delete(self, key: str) -> None:
        self._store.layer(self._prefix)[self._prefix + key.encode()] = None

    def __contains__(self, key: object) -> bool:
        prefix = self._prefix
        return (
            isinstance(key, str) and self._store.get_raw(prefix, prefix + key.encode()) is not None
        )

    def __len__(self) -> int:
        return len(self._keys())

    def __iter__(self) -> Iterator[str]:
        n = len(self._prefix)
        return iter([key[n:].decode() for key in self._keys()])

    def keys(self) -> AbstractSet[str]:
        return set(self)

    def _keys(self) -> list[bytes]:
        return self._store.keys_between(self._prefix, self._prefix, _upper(self._prefix))


class RocksIndex:
    __slots__ = ("_prefix", "_store")

    def __init__(self, store: RocksStore, prefix: bytes) -> None:
        self._store, self._prefix = store, prefix

    def add(self, order: float, item: str) -> None:
        self._store.layer(self._prefix)[self._prefix + order_bytes(order) + item.encode()] = b""

    def pop_before(self, bound: float) -> list[tuple[float, str]]:
        n = len(self._prefix)
        keys = self._store.pop_index(self._prefix, self._prefix + order_bytes(bound))
        return [(order_of(key[n : n + 8]), key[n + 8 :].decode()) for key in keys]
