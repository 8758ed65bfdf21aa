"""``stream-app replay --skip-invalid`` into a real broker: the valid lines arrive, byte for
byte and in order, and the summary says how many were sent and which lines were not."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path

import orjson

from stream_app.outputs import read_all
from stream_app.topics import create_topics


def test_replay_sends_the_valid_lines_and_names_the_rejected(
    make_settings,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings()
    asyncio.run(create_topics(settings))
    raw = b'{"click_id":"k2","ts":1700000001}'
    lines = [
        orjson.dumps({"topic": "click", "value": {"click_id": "k1", "ts": 1700000000}}),
        b"{truncated",
        orjson.dumps({"topic": "click", "key": "k2", "value_b64": base64.b64encode(raw).decode()}),
    ]
    path = tmp_path / "hand.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    env = {
        **os.environ,
        "STREAM_APP_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "STREAM_APP_TOPIC_PREFIX": settings.topics.prefix,
    }
    result = subprocess.run(
        [sys.executable, "-m", "stream_app", "replay", str(path), "--skip-invalid"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("sent 2, rejected 1 (line 2: not JSON ("), summary
    records = asyncio.run(read_all(settings.bootstrap_servers, settings.topics.clicks))
    by_key = {r.key: r.value for r in records}
    assert by_key == {b"k1": b'{"click_id":"k1","ts":1700000000}', b"k2": raw}


def test_replay_into_missing_topics_is_one_line(make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()  # its topics are never created
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps({"topic": "spend", "value": {"campaign_id": "c"}}) + b"\n")
    env = {
        **os.environ,
        "STREAM_APP_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "STREAM_APP_TOPIC_PREFIX": settings.topics.prefix,
    }
    result = subprocess.run(
        [sys.executable, "-m", "stream_app", "replay", str(path)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    output = (result.stdout + result.stderr).strip()
    assert output.startswith(f"error: missing topics at {settings.bootstrap_servers}: "), output
    assert settings.topics.spend in output
    assert "stream-app create-topics" in output
    assert len(output.splitlines()) == 1, output
