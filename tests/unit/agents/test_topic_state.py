"""The sentiment stage's topic model survives a restart exactly as of the last commit (issue 15).

Snapshots came every 200 reviews only, so a restart lost up to 199 reviews of learning.
Now every transaction that learnt writes the bags of words it learnt, and a restore
replays them onto the snapshot. Here the changelog is a dict as the engine's restore
reads it (the last value per key, a tombstone deletes, ``stream_app.engine.restore``).
"""

from __future__ import annotations

import random

import orjson

from stream_app.agents.reviews import JOURNAL_PREFIX, SNAPSHOT_EVERY, TOPICS_KEY, TopicState

WORDS = [
    *("battery", "overheats", "charger", "smells", "burnt", "plastic", "emails", "never"),
    *("replied", "service", "colours", "different", "photos", "fast", "neat", "packaging"),
    *("shipping", "premium", "quality", "happy", "setup", "works"),
]


def _texts(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(n)]


def _commit(state: TopicState, changelog: dict[str, object]) -> None:
    """One transaction's changelog records, through JSON as the engine writes them."""
    for key, value in state.changes():
        changelog.pop(key, None)
        if value is not None:
            changelog[key] = orjson.loads(orjson.dumps(value))


def _restored(changelog: dict[str, object]) -> TopicState:
    state = TopicState(8)
    for key, value in changelog.items():
        state.restore(key, value)
    return state


def _same(a: TopicState, b: TopicState) -> None:
    assert a.model.to_state() == b.model.to_state()
    assert a.model.top_terms() == b.model.top_terms()
    assert a.model.documents == b.model.documents


def test_a_restart_restores_the_model_of_the_last_commit_not_of_the_last_snapshot() -> None:
    live, changelog = TopicState(8), dict[str, object]()
    texts = _texts(2 * SNAPSHOT_EVERY + 57)
    batches = [texts[i : i + 7] for i in range(0, len(texts), 7)]
    for batch in batches:
        for text in batch:
            live.learn(text)
        _commit(live, changelog)
    # two snapshots, and the 57 (+ the rest of a batch) reviews after the last as bags
    assert TOPICS_KEY in changelog
    journal = [k for k in changelog if k.startswith(JOURNAL_PREFIX)]
    assert journal
    assert len(journal) < SNAPSHOT_EVERY / 7 + 1
    bags = [changelog[k] for k in journal]
    assert sum(len(b) for b in bags if isinstance(b, list)) == live.unsaved
    assert live.unsaved > 0

    restored = _restored(changelog)
    _same(restored, live)

    # learning on after the restart: the journal continues, a second restart agrees too
    more = _texts(30, seed=2)
    for text in more:
        live.learn(text)
        restored.learn(text)
    _commit(restored, changelog)
    _commit(live, {})
    _same(_restored(changelog), live)


def test_an_uncommitted_review_is_not_in_the_restored_model() -> None:
    live, changelog = TopicState(8), dict[str, object]()
    for text in _texts(20):
        live.learn(text)
    _commit(live, changelog)
    committed = _restored(changelog).model.to_state()
    live.learn("battery overheats")  # the worker dies before its transaction commits
    assert _restored(changelog).model.to_state() == committed
    assert live.model.to_state() != committed


def test_a_transaction_that_learnt_nothing_writes_nothing() -> None:
    state = TopicState(8)
    assert state.changes() == []
    state.learn("the and but")  # stop words only: nothing learnt
    assert state.changes() == []
