"""Keyed state that grows with traffic, behind a small interface the domain uses.

* :mod:`.interface` — what the domain sees (:class:`StateStore`: tables and ordered
  indexes) and what the engine sees (:class:`DurableStore`: seal, commit after the Kafka
  transaction, the changelog position it reflects). No third-party imports.
* :mod:`.memory` — dicts and heaps: fast, nothing survives the process (unit tests, and the
  ``state_store=memory`` default).
* :mod:`.rocks` — RocksDB through rocksdict: memory bounded by its block cache and write
  buffers; a cache of the changelog that a restart reuses (:mod:`.opener`).
"""

from .interface import DurableStore, OrderedIndex, StateStore, Table
from .memory import MemoryStore

__all__ = ["DurableStore", "MemoryStore", "OrderedIndex", "StateStore", "Table"]
