"""Restoring attribution from a local store plus the changelog's tail gives the same state
and the same outputs as a full restore from the changelog, and as never having stopped.

The engine is played by hand: each "transaction" takes the state's changes into a list
(the changelog, offsets = positions) and seals the store; a commit persists it with the
offset reached. Stores are left behind the changelog on purpose (a checkpoint skipped, a
kill -9 after a commit but before the persist)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from rocksdict import Cache, WriteBufferManager

from stream_app.domain.attribution import Attribution, AttributionConfig, Scored
from stream_app.domain.events import Click, Conversion
from stream_app.state import DurableStore, MemoryStore
from stream_app.state.rocks import RocksConfig, RocksStore, rocks_options

T0 = 1_767_225_600.0
CONFIG = AttributionConfig(
    window_size_seconds=60,
    attribution_window_seconds=1800.0,
    conversion_grace_seconds=300.0,
    dedup_horizon_seconds=3600.0,
    currency="USD",
    label_lateness_seconds=60.0,
    allowed_lateness_seconds=60.0,
)
Changelog = list[tuple[str, Any]]


def open_rocks(path: Path) -> RocksStore:
    config = RocksConfig(block_cache_bytes=1 << 20, write_buffer_bytes=1 << 20)
    options = rocks_options(config, Cache(1 << 20), WriteBufferManager(1 << 30, False))
    return RocksStore(path, "cl", options)


def events(seed: int, n: int) -> list[Click | Conversion]:
    """Clicks over ~3 hours of event time, duplicates, conversions before and after their
    click, some for clicks that never come, some far outside the window."""
    rng = random.Random(seed)
    out: list[Click | Conversion] = []
    ts = T0
    for i in range(n):
        ts += rng.expovariate(1 / 4.0)
        c = Click(1, f"ce{i}", f"k{i}", f"c{i % 5}", "search", "u", ts)
        out.append(c)
        if rng.random() < 0.05:
            out.append(c)  # a duplicate delivery
        if rng.random() < 0.3:
            delay = rng.choice([-30.0, 5.0, 200.0, 1500.0, 4000.0])
            conv = Conversion(1, f"ve{i}", f"k{i}", 10.0 + i % 7, "USD", ts + delay)
            out.insert(max(0, len(out) - rng.randint(0, 40)), conv)
        if rng.random() < 0.02:
            out.append(Conversion(1, f"orphan{i}", f"nope{i}", 5.0, "USD", ts))
    return out


def scored(click: Click) -> Scored:
    p = (int(click.click_id[1:]) % 10) / 20
    return Scored({f"campaign_id={click.campaign_id}": 1.0}, p, p * 10)


def run(
    a: Attribution, batch: list[Click | Conversion], log: Changelog, store: DurableStore
) -> tuple[Counter[str], int]:
    """One transaction: process, flush, take the changes; what it output, its seal."""
    out: Counter[str] = Counter()
    for e in batch:
        if isinstance(e, Click):
            out[str(a.on_click(e, scored(e)))] += 1
        else:
            out[str(a.on_conversion(e, e.revenue))] += 1
    a.expire_pending()
    a.expire_labels()
    for d in a.drain_deltas():
        out[f"delta|{d.campaign_id}|{d.window_start}|{d.kind}|{d.late}"] += 1
        out[f"totals|{d.campaign_id}|{d.kind}"] += int(sum(d.totals) * 1000)
    for label in a.drain_labels():
        out[f"label|{label.click_id}|{label.converted}|{label.revenue}"] += 1
    for u in a.drain_unattributed():
        out[f"unattributed|{u.click_id}|{u.reason}"] += 1
    log.extend((k, orjson.loads(orjson.dumps(v))) for k, v in a.changes())
    return out, store.seal()


def replay(a: Attribution, log: Changelog, start: int) -> None:
    for key, value in log[start:]:
        a.restore(key, value)


def snapshot(a: Attribution) -> tuple[Any, ...]:
    return (
        {k: a.clicks.get(k) for k in a.clicks},
        {k: a.open.get(k) for k in a.open},
        {k: a.pending.get(k) for k in a.pending},
        len(a.seen_clicks),
        len(a.seen_conversions),
        (a.click_watermark, a.conversion_watermark),
    )


def batches(seed: int) -> list[list[Click | Conversion]]:
    evs = events(seed, 3000)
    return [evs[i : i + 150] for i in range(0, len(evs), 150)]


def test_local_store_plus_tail_equals_full_restore_and_an_uninterrupted_run(tmp_path: Path) -> None:
    parts = batches(7)
    stop_at, persisted_at = 12, 9  # the store was last persisted three transactions before

    # never stopped
    ref = Attribution(CONFIG, store=MemoryStore())
    ref_out = [run(ref, b, [], MemoryStore())[0] for b in parts]

    # first life, on disk: persists at transaction 9, dies after transaction 12 committed
    log: Changelog = []
    store = open_rocks(tmp_path / "s")
    live = Attribution(CONFIG, store=store)
    for n, batch in enumerate(parts[:stop_at]):
        _, token = run(live, batch, log, store)
        if n < persisted_at:
            store.commit(token, len(log))
    checkpoint = store.position()
    store.close()
    assert checkpoint is not None
    assert 0 < checkpoint[1] < len(log)

    # second life: the local store and the tail, against a full restore
    store = open_rocks(tmp_path / "s")
    position = store.position()
    assert position == checkpoint
    local = Attribution(CONFIG, store=store)
    replay(local, log, position[1])
    full = Attribution(CONFIG, store=MemoryStore())
    replay(full, log, 0)
    assert snapshot(local) == snapshot(full)
    assert len(log) - position[1] < len(log) / 3  # only the tail was read

    full_log: Changelog = []
    for n, batch in enumerate(parts[stop_at:], start=stop_at):
        got_local, token = run(local, batch, log, store)
        store.commit(token, len(log))
        got_full, _ = run(full, batch, full_log, MemoryStore())
        assert got_local == got_full == ref_out[n], n
    assert snapshot(local) == snapshot(full) == snapshot(ref)
    assert len(local.clicks) < 3000  # clicks past the window expired
    store.close()


def test_a_full_restore_into_an_empty_store_replays_tombstones_in_order(tmp_path: Path) -> None:
    parts = batches(11)
    log: Changelog = []
    mem = Attribution(CONFIG, store=MemoryStore())
    for batch in parts:
        run(mem, batch, log, MemoryStore())
    assert any(v is None for _, v in log)  # buckets expired meanwhile
    store = open_rocks(tmp_path / "s")
    rebuilt = Attribution(CONFIG, store=store)
    replay(rebuilt, log, 0)
    assert snapshot(rebuilt) == snapshot(mem)
    store.close()
