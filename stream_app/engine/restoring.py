"""Restoring a store-backed stage partition, on a restore thread.

The worker's assignment callback pauses the partition's inputs and hands its restore to a
thread (:func:`restore_stored`); the loop keeps polling and installs the result. A restore
of any length therefore never reaches ``max.poll.interval.ms``, and a rebalance meanwhile
cancels it through ``cancel`` (its store keeps the checkpoint the replay reached).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass

from ..state import DurableStore
from ..state.opener import StoreOpener
from .clients import Kafka
from .restore import Replayed, changelog_bounds, replay_changelog
from .stage import PartitionState, Stage
from .transaction import Partition

log = logging.getLogger(__name__)

RESTORE_ATTEMPTS = 3
"""Reads of the changelogs before their partitions are reported unrestorable."""


class BadChangelogRecord(Exception):
    """A changelog record the state could not apply (this version cannot read it)."""

    def __init__(self, key: str, cause: Exception) -> None:
        super().__init__(key, cause)
        self.key, self.cause = key, cause


class RestoreCancelled(Exception):
    """A rebalance took the partition away while its state was being restored."""


@dataclass(frozen=True, slots=True)
class Restored:
    """A store-backed partition state, rebuilt on the restore thread, to be installed."""

    state: PartitionState
    store: DurableStore
    why: str
    replayed: Replayed


class Unrestorable(Exception):
    """Why a partition's state cannot be restored (the partition stays paused)."""


def restore_stored(
    bootstrap: Kafka,
    opener: StoreOpener,
    stage: Stage,
    tp: Partition,
    wait: float,
    cancel: threading.Event,
    after: concurrent.futures.Future[Restored] | None = None,
) -> Restored:
    """On the restore thread: open the partition's store and replay the changelog after
    its checkpoint (all of it when the store is new, stale or unreadable:
    :mod:`stream_app.state.opener`). Raises :class:`Unrestorable` with the reason, or
    :class:`RestoreCancelled` when a rebalance took the partition meanwhile."""
    if after is not None:  # a cancelled restore of this partition still closing
        concurrent.futures.wait([after])
    stage_name, partition = stage.name, tp[1]
    key = (stage_name, partition)
    for attempt in range(1, RESTORE_ATTEMPTS + 1):
        store: DurableStore | None = None
        try:
            low, end = changelog_bounds(bootstrap, [tp], wait)[tp]
            if cancel.is_set():
                raise RestoreCancelled
            opened = opener.open(tp[0], tp[1], low, end)
            store = opened.store
            state = stage.new_stored_state(partition, store)  # type: ignore[attr-defined]

            def apply(name: str, value: object, state: PartitionState = state) -> None:
                if cancel.is_set():
                    raise RestoreCancelled
                try:
                    state.restore(name, value)
                except Exception as exc:
                    raise BadChangelogRecord(name, exc) from exc

            replayed = replay_changelog(bootstrap, tp, opened.replay_from, end, apply, store, wait)
            if cancel.is_set():
                raise RestoreCancelled
        except RestoreCancelled:
            if store is not None:
                store.close()  # at the checkpoint it reached: the next restore resumes
            raise
        except BadChangelogRecord as bad:
            if store is not None:
                store.close()
            kind = bad.key.split("|", 1)[0]  # keys hold click ids, never values
            log.error("cannot restore %s[%d] at a %r key: %r", *key, kind, bad.cause)
            raise Unrestorable(f"{type(bad.cause).__name__} at a {kind!r} key") from bad
        except Exception as exc:  # a leader moving, a broker restarting: try again
            if store is not None:
                store.close()
            log.exception("restoring %s[%d] failed (%d)", stage_name, partition, attempt)
            if attempt == RESTORE_ATTEMPTS:
                raise Unrestorable(f"changelog unreadable: {type(exc).__name__}") from exc
            time.sleep(attempt)
            continue
        log.info(
            "restored %s[%d] (%s): %d changelog records from offset %d to %d in %.2f s",
            stage_name,
            partition,
            opened.why,
            replayed.records,
            opened.replay_from,
            end,
            replayed.seconds,
        )
        return Restored(state, store, opened.why, replayed)
    raise AssertionError("unreachable")


def close_unused(future: concurrent.futures.Future[Restored]) -> None:
    """Close the store of a restore that finished after its partition was taken away."""
    if not future.cancelled() and future.exception() is None:
        future.result().store.close()
