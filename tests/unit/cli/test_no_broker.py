"""Every command that needs Kafka, run for real with nothing listening at its bootstrap
address: one line saying what was tried and what to do, a non-zero exit, within seconds.

Subprocesses of the real CLI, so what is checked is what a person sees: no traceback, no
librdkafka retry log, no unclosed-client warning, nothing left running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_app.preflight import EXIT_NO_BROKER, BrokerUnreachableError, check_broker

WITHIN_S = 8.0
"""Python start-up and imports included; the check itself gives up after ~0.5 s."""


def _dead_address() -> str:
    """A local port nothing listens on (bound, then closed: refused from now on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "one.jsonl"
    path.write_text('{"topic": "click", "key": "k1", "value": {"click_id": "k1"}}\n')
    return path


COMMANDS = {
    "worker": lambda tmp: ["worker"],
    "create-topics": lambda tmp: ["create-topics"],
    "generate": lambda tmp: ["generate", "--duration", "5", "--no-progress"],
    "replay": lambda tmp: ["replay", str(_jsonl(tmp))],
    "demo": lambda tmp: ["demo"],  # pointed at a broker: it starts none, checks that one
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_broker_is_one_line_and_a_non_zero_exit(name: str, tmp_path: Path) -> None:
    address = _dead_address()
    env = {
        **os.environ,
        "STREAM_APP_BOOTSTRAP_SERVERS": address,
        "STREAM_APP_METRICS_PORT": "0",
        "STREAM_APP_STATE_DIR": str(tmp_path / "state"),
        "STREAM_APP_KAFKA_DATA_DIR": str(tmp_path / "kafka"),
        "PYTHONWARNINGS": "default",  # an unclosed client or socket would say so
    }
    argv = [sys.executable, "-m", "stream_app", *COMMANDS[name](tmp_path)]
    began = time.monotonic()
    result = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    took = time.monotonic() - began
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == EXIT_NO_BROKER, output
    assert took < WITHIN_S, f"{took:.1f} s"
    assert len(output.splitlines()) == 1, output
    assert output.startswith(f"error: no Kafka broker at {address} ("), output
    assert "stream-app kafka start" in output
    assert "STREAM_APP_BOOTSTRAP_SERVERS" in output


def test_the_reason_comes_from_the_client() -> None:
    address = _dead_address()
    with pytest.raises(BrokerUnreachableError, match="Connection refused"):
        check_broker(address, timeout=5.0)
    with pytest.raises(BrokerUnreachableError, match="resolve"):
        check_broker("no-such-host.invalid:9092", timeout=5.0)


def test_a_listener_that_never_answers_gives_up_at_the_timeout() -> None:
    with socket.socket() as server:  # accepts connections (the kernel does), says nothing
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        began = time.monotonic()
        with pytest.raises(BrokerUnreachableError, match=address):
            check_broker(address, timeout=1.5)
        assert 1.0 < time.monotonic() - began < 5.0
