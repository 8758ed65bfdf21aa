"""Exactly once under attack (issue 12): zombies and failed sends, on the real broker.

Written against the product's external behaviour only (worker processes, topics, the
consumer group as the broker describes it, the generator's ground truth), so they hold for
any engine. What the engine must do:

* **Frozen worker.** A worker stopped with SIGSTOP past ``STREAM_APP_SESSION_TIMEOUT_SECONDS``
  while traffic flows loses its partitions to the other worker. When it is thawed it must
  not commit what it processed before the freeze (KIP-447: offsets go to the transaction
  with the group generation, and the coordinator refuses a zombie's). Afterwards it is
  either back in the group, or it exited non-zero and its partitions stayed with the other
  worker; either way the totals equal the ground truth.
* **Failed send.** A dead letter never exceeds what the broker takes (a ~1 MB bad input is
  dead-lettered truncated, with its size and SHA-256); and a record the broker rejects
  inside a transaction aborts that transaction (offsets included) instead of committing
  without it. The worker may recover by itself or exit non-zero and be restarted by its
  supervisor (the test restarts it once the broker accepts dead letters again); nothing is
  lost or counted twice either way.

Each test collects every problem with its numbers before failing, so one run shows all the
ways an engine breaks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.generator import generate_to_kafka
from stream_app.settings import Settings
from stream_app.topics import create_topics

from .test_recovery import GRACE, scenario
from .workers import (
    SESSION_TIMEOUT_SECONDS,
    Expected,
    Fleet,
    Supervisor,
    advance_click_time,
    check_exactly_once,
    covers_inputs,
    end_offsets,
    freeze,
    group_assignments,
    is_topic_override,
    latest_records,
    newest,
    phase_of,
    produce,
    read_committed,
    set_topic_config,
    settle,
    thaw,
    topic_config,
    wait_for_group,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

T0 = 1_767_225_600.0
FREEZE = 2 * SESSION_TIMEOUT_SECONDS
"""A frozen worker stays stopped at least this long, and until it has lost its partitions."""
TAKEOVER_LIMIT = 30.0
"""Thawed anyway after this long, with a problem reported, if nobody took over."""


@pytest.fixture
def fleet(make_settings, tmp_path: Path) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(
        partitions=4,
        attribution_window_seconds=90.0,
        conversion_grace_seconds=GRACE,
        commit_interval_seconds=0.3,
    )
    group = Fleet(settings, tmp_path)
    try:
        yield group
    finally:
        group.close()


def report(title: str, facts: dict[str, object], problems: list[str]) -> str:
    head = ", ".join(f"{k}={v}" for k, v in facts.items())
    return f"{title} [{head}]:\n- " + "\n- ".join(problems or ["no problem"])


# -- 1. a frozen worker (a zombie) ------------------------------------------------------------
async def thawed_worker_state(fleet: Fleet, limit: float = 20.0) -> tuple[str, list[str]]:
    """After the thaw: both workers in the group, or the thawed one exited non-zero on its
    own and the survivor holds everything. Returns what was seen and the problems."""
    settings = fleet.settings
    survivor, thawed = fleet.procs["w1"], fleet.procs["w2"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    seen = ""
    while True:
        assigned = await asyncio.to_thread(
            group_assignments, settings.bootstrap_servers, settings.consumer_group
        )
        rc = thawed.poll()
        state = "alive" if rc is None else f"exit {rc}"
        seen = f"thawed worker {state}, partitions per member {sorted(len(a) for a in assigned)}"
        if survivor.poll() is not None:
            return seen, [f"the survivor exited {survivor.poll()}: {fleet.log_tail('w1')}"]
        if rc == 0:
            return seen, ["the thawed worker exited 0: a fenced zombie must exit non-zero"]
        if (
            rc is None
            and len(assigned) == 2
            and all(assigned)
            and covers_inputs(settings, assigned)
        ):
            return seen, []
        if rc is not None and len(assigned) == 1 and covers_inputs(settings, assigned):
            return seen, []
        if loop.time() > deadline:
            return seen, [
                f"{limit:.0f}s after the outputs settled: {seen}; neither both workers in the "
                "group nor the thawed one gone with its partitions taken over"
            ]
        await asyncio.sleep(1.0)


@pytest.mark.parametrize(
    ("freeze_after", "commit_interval"),
    [(2.0, 0.3), (5.0, 2.0), (9.0, 2.0)],
    ids=lambda v: f"{v:g}s",
)
async def test_frozen_worker_is_fenced_and_counts_stay_exact(
    fleet: Fleet, freeze_after: float, commit_interval: float
) -> None:
    """SIGSTOP one of two workers mid-traffic past the session timeout, thaw it later.

    ``freeze_after`` seconds into the traffic. With commits every 0.3 s the worker is
    often frozen inside a transaction (which the broker aborts when it times out); with
    commits every 2 s it is mostly frozen between transactions, holding processed records
    it has not committed, which only the group generation can stop it from committing.
    """
    settings = fleet.settings
    fleet.extra_env["STREAM_APP_COMMIT_INTERVAL_SECONDS"] = str(commit_interval)
    loop = asyncio.get_running_loop()
    await create_topics(settings)
    fleet.start("w1")
    frozen = fleet.start("w2")
    if await wait_for_group(settings, 2, limit=60) is None:
        pytest.fail(
            "the two workers never shared the partitions within 60 s: "
            f"w1: {fleet.log_tail('w1')} / w2: {fleet.log_tail('w2')}"
        )
    duration = 500.0  # about 22 000 records, sent over about 18 s
    traffic = asyncio.create_task(
        generate_to_kafka(scenario(40 + int(freeze_after), T0, duration), settings, rate=1200.0)
    )
    await asyncio.sleep(freeze_after)
    assert not traffic.done(), "traffic ended before the freeze: the test lost its point"
    problems: list[str] = []

    freeze(frozen)
    frozen_at = loop.time()
    taken_over: float | None = None
    while True:  # frozen 2x the session timeout, and until the survivor holds everything
        elapsed = loop.time() - frozen_at
        if taken_over is not None:
            if elapsed >= max(FREEZE, taken_over + 3.0):
                break
        else:
            assigned = await asyncio.to_thread(
                group_assignments, settings.bootstrap_servers, settings.consumer_group
            )
            if len(assigned) == 1 and covers_inputs(settings, assigned):
                taken_over = elapsed
            elif elapsed > TAKEOVER_LIMIT:
                sizes = sorted(len(a) for a in assigned)
                problems.append(
                    f"nobody took the frozen worker's partitions in {TAKEOVER_LIMIT:.0f}s "
                    f"(STREAM_APP_SESSION_TIMEOUT_SECONDS={SESSION_TIMEOUT_SECONDS:g}); "
                    f"partitions held per member then: {sizes} (survivor stuck in a rebalance?)"
                )
                break
        await asyncio.sleep(0.5)
    traffic_at_thaw = not traffic.done()
    thaw(frozen)
    frozen_for = loop.time() - frozen_at
    if taken_over is not None and taken_over > FREEZE + 1.0:
        problems.append(
            f"partitions taken over {taken_over:.1f}s after the freeze, more than twice "
            f"STREAM_APP_SESSION_TIMEOUT_SECONDS={SESSION_TIMEOUT_SECONDS:g}: setting ignored?"
        )

    truth = await traffic
    await asyncio.to_thread(advance_click_time, settings, T0 + duration + 10 * GRACE)
    expected = Expected.of(truth)
    latest = await settle(settings, expected)
    outcome = await asyncio.to_thread(check_exactly_once, settings, expected, latest)
    problems += outcome.problems
    seen, thaw_problems = await thawed_worker_state(fleet)
    problems += thaw_problems

    facts = {
        "frozen_for": f"{frozen_for:.1f}s",
        "taken_over_after": "never" if taken_over is None else f"{taken_over:.1f}s",
        "traffic_at_thaw": traffic_at_thaw,
        "records": truth.total_emitted,
        "clicks": expected.clicks,
        "after": seen,
        "logs": fleet.directory,
    }
    message = report(f"frozen {freeze_after:g}s into the traffic", facts, problems)
    print(message)
    assert not problems, message


# -- 2a. an oversized bad input ---------------------------------------------------------------
async def test_oversized_bad_input_is_dead_lettered_truncated(fleet: Fleet) -> None:
    """A ~1 MB invalid click (fits ``clicks``, but not whole, base64-encoded, in a dead
    letter) then three small bad clicks with the same key: four dead letters, once each."""
    settings = fleet.settings
    t = settings.topics
    await create_topics(settings)
    first = await generate_to_kafka(scenario(21, T0, 60.0), settings)
    supervisor = Supervisor(fleet, "w1")
    supervisor.start()

    key = b"oversized-1"
    big = b'{"schema_version": 1, "click_id": "oversized-1", "pad": "' + b"x" * 1_000_000
    small = [
        b'{"schema_version": 1, "click_id": "oversized-1", "ts": ',
        b'{"schema_version": 1, "click_id": "oversized-1",}',
        b"\xff\xfe not json",
    ]
    placed = await asyncio.to_thread(
        produce,
        settings.bootstrap_servers,
        [(t.clicks, key, value, None) for value in [big, *small]],
    )
    own = [(t.clicks, p, offset) for p, offset in placed]
    second = await generate_to_kafka(scenario(22, T0 + 60.0, 60.0), settings)
    await asyncio.to_thread(advance_click_time, settings, T0 + 120.0 + 10 * GRACE)

    expected = Expected.of(first, second)
    latest = await settle(settings, expected)
    outcome = await asyncio.to_thread(check_exactly_once, settings, expected, latest, own)
    await supervisor.stop()
    supervisor.check()
    problems = list(outcome.problems)
    letters = {(d["topic"], d["partition"], d["offset"]): d for d in outcome.dead_letters}
    big_letter = letters.get(own[0])
    if big_letter is not None:
        kept = base64.b64decode(big_letter["value_b64"])
        marks = {
            "truncated": big_letter.get("truncated"),
            "original_size": big_letter.get("original_size"),
            "sha256_matches": big_letter.get("original_sha256") == hashlib.sha256(big).hexdigest(),
            "kept_is_prefix": big.startswith(kept) and len(kept) < len(big),
        }
        want = {
            "truncated": True,
            "original_size": len(big),
            "sha256_matches": True,
            "kept_is_prefix": True,
        }
        if marks != want:
            problems.append(f"the oversized input's dead letter is marked {marks}, want {want}")
    for source, value in zip(own[1:], small, strict=True):
        letter = letters.get(source)
        if letter is not None and (
            base64.b64decode(letter["value_b64"]) != value or letter.get("truncated")
        ):
            problems.append(f"dead letter of {source} does not keep its bytes whole")
    problems += [
        f"the worker exited {e.returncode} at {e.at:.0f}s (restarted): {e.log_tail}"
        for e in supervisor.exits
    ]
    facts = {
        "oversized": f"{len(big)} B at {own[0]}",
        "dead_letters": len(outcome.dead_letters),
        "truth_bad": sum(expected.bad.values()),
        "exits": [e.returncode for e in supervisor.exits],
        "logs": fleet.directory,
    }
    message = report("oversized bad input", facts, problems)
    print(message)
    assert not problems, message


# -- 2b. a record the broker rejects inside a transaction -------------------------------------
async def caught_up(settings: Settings, expected: Expected, limit: float) -> bool:
    """Every click counted and every bad event of ``expected`` dead-lettered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        latest = newest(await asyncio.to_thread(latest_records, settings))
        dead = await asyncio.to_thread(
            read_committed, settings.bootstrap_servers, settings.topics.dead_letter
        )
        clicks = {cid: r.cumulative.clicks for cid, r in latest.items()}
        if len(dead) >= sum(expected.bad.values()) and all(
            clicks.get(cid) == row[0] for cid, row in expected.campaigns.items()
        ):
            return True
        await asyncio.sleep(1.0)
    return False


async def test_rejected_dead_letter_aborts_the_transaction_and_loses_nothing(
    fleet: Fleet,
) -> None:
    """The dead-letter topic takes only 200-byte records for a few seconds while bad and
    valid inputs arrive; then it is restored. Every bad input is dead-lettered once and
    the valid traffic counts exactly.

    Assumed: the worker recovers by itself, or exits non-zero (once) and is restarted by
    its supervisor; here the supervisor waits until the topic is restored (a crash-loop
    back-off), so one non-zero exit is accepted, a second exit or an exit 0 is not.
    """
    settings = fleet.settings
    t = settings.topics
    bootstrap = settings.bootstrap_servers
    await create_topics(settings)
    original = await asyncio.to_thread(topic_config, bootstrap, t.dead_letter, "max.message.bytes")
    restore_to = original.value if is_topic_override(original) else None
    first = await generate_to_kafka(scenario(31, T0, 60.0), settings)
    supervisor = Supervisor(fleet, "w1")
    supervisor.start()
    if not await caught_up(settings, Expected.of(first), limit=60):
        pytest.fail(f"the worker did not process the first traffic in 60 s: {fleet.log_tail('w1')}")

    inputs = [t.clicks, t.conversions, t.spend, t.reviews]
    marks = [await asyncio.to_thread(end_offsets, bootstrap, inputs)]
    supervisor.held = True
    await asyncio.to_thread(set_topic_config, bootstrap, t.dead_letter, "max.message.bytes", "200")
    try:
        bad = [
            (t.clicks, b"reject-1", b'{"schema_version": 1, "click_id": "reject-1", ', None),
            (t.spend, b"cmp-001", b'{"schema_version": 1, "campaign_id": "cmp-001"}', None),
            (t.conversions, b"reject-2", b"[1, 2, 3", None),
        ]
        placed = await asyncio.to_thread(produce, bootstrap, bad)
        own = [(topic, p, offset) for (topic, *_), (p, offset) in zip(bad, placed, strict=True)]
        second = await generate_to_kafka(scenario(32, T0 + 60.0, 30.0), settings)
        await asyncio.sleep(5.0)
        supervisor.check()
        exits_while_rejecting = len(supervisor.exits)
        marks.append(await asyncio.to_thread(end_offsets, bootstrap, inputs))
    finally:
        await asyncio.to_thread(
            set_topic_config, bootstrap, t.dead_letter, "max.message.bytes", restore_to
        )
    supervisor.held = False
    supervisor.restart_if_down()
    third = await generate_to_kafka(scenario(33, T0 + 90.0, 30.0), settings)
    await asyncio.to_thread(advance_click_time, settings, T0 + 120.0 + 10 * GRACE)

    expected = Expected.of(first, second, third)
    latest = await settle(settings, expected)
    outcome = await asyncio.to_thread(check_exactly_once, settings, expected, latest, own)
    await supervisor.stop()
    supervisor.check()
    problems = list(outcome.problems)
    exits = supervisor.exits
    problems += [
        f"the worker exited 0 at {e.at:.0f}s: a failed transaction must not look like a clean stop"
        for e in exits
        if e.returncode == 0
    ]
    if len(exits) > 1:
        problems.append(
            f"the worker exited {len(exits)} times ({[e.returncode for e in exits]}), "
            f"{len(exits) - exits_while_rejecting} after the topic was restored: "
            + " / ".join(e.log_tail for e in exits[1:])
        )
    if fleet.procs["w1"].poll() is not None:
        problems.append(f"the worker is down at the end: {fleet.log_tail('w1')}")
    per_phase = Counter(
        phase_of((d["topic"], d["partition"], d["offset"]), marks) for d in outcome.dead_letters
    )
    want = [sum(first.bad_events.values()), sum(second.bad_events.values()) + len(own)]
    want.append(sum(third.bad_events.values()))
    facts = {
        "dead_letters_before/while/after_rejecting": "/".join(
            f"{per_phase[i]} of {n}" for i, n in enumerate(want)
        ),
        "bad_inputs": own,
        "exits": [(e.returncode, f"{e.at:.0f}s") for e in exits],
        "exits_while_rejecting": exits_while_rejecting,
        "dead_letters": len(outcome.dead_letters),
        "truth_bad": sum(expected.bad.values()),
        "logs": fleet.directory,
    }
    message = report("dead letters rejected by the broker", facts, problems)
    print(message)
    assert not problems, message
