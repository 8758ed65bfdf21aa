"""Running ``stream-app demo`` as a person does, for the demo's integration tests.

Every demo gets the session broker (``STREAM_APP_BOOTSTRAP_SERVERS``, so it starts none),
its own app id, topic prefix and demo directory, and a marker in its environment that its
worker inherits, so a test can find every process it started and leave none behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

MARKER = "STREAM_APP_DEMO_TEST_MARKER"
"""Not a setting: inherited by the demo's worker, found in /proc/<pid>/environ."""

PLAIN_LINE = re.compile(r"^(\d\d:\d\d:\d\d) (cmp-\d{3}) (.*)$")


def demo_env(kafka: str, tmp_path: Path, tag: str) -> dict[str, str]:
    """The environment of a demo against the session broker, isolated by ``tag``."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(
        {
            MARKER: tag,
            "STREAM_APP_BOOTSTRAP_SERVERS": kafka,
            "STREAM_APP_APP_ID": f"test-demo-{tag}",
            "STREAM_APP_TOPIC_PREFIX": f"{tag}-",
            "STREAM_APP_PARTITIONS": "2",
            "STREAM_APP_METRICS_PORT": "0",
            # the demo's directory (lock, run record, logs, state) is <this>/../demo
            "STREAM_APP_KAFKA_DATA_DIR": str(tmp_path / "kafka"),
        }
    )
    return env


def demo_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream_app", "demo", "--campaigns", "3", *args]


def processes_with(tag: str) -> list[int]:
    """Pids whose environment holds the test's marker (demos and the workers they spawned)."""
    wanted = f"{MARKER}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def wait_gone(tag: str, seconds: float = 45.0) -> list[int]:
    """The marked processes still alive after up to ``seconds`` (a worker commits first)."""
    deadline = time.monotonic() + seconds
    while (left := processes_with(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_all(tag: str) -> None:
    """Never leave a demo or worker behind, even when a test fails."""
    for pid in processes_with(tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class PipedDemo:
    """A demo whose stdout is a pipe (``stream-app demo | cat``), read line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            demo_argv(*args),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, as a shell job is
        )
        self.lines: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for raw in stream:  # type: ignore[attr-defined]
            into.append(raw.decode(errors="replace").rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + "\n".join(self.err)

    def tables(self) -> list[dict[str, dict[str, str]]]:
        """Each printed block: campaign -> its key=value fields."""
        blocks: dict[str, dict[str, dict[str, str]]] = {}
        for line in list(self.lines):
            match = PLAIN_LINE.match(line)
            if match:
                stamp, campaign, rest = match.groups()
                fields = dict(field.split("=", 1) for field in rest.split(" "))
                blocks.setdefault(stamp, {})[campaign] = fields
        return list(blocks.values())

    def wait_for(self, predicate: object, seconds: float = 90.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"demo: condition not met in {seconds:.0f} s\n{self.text()[-4000:]}")

    def wait_tables(self, count: int, campaigns: int = 3, seconds: float = 90.0) -> None:
        """Until ``count`` complete blocks (every campaign in them) were printed."""

        def ready() -> bool:
            full = [t for t in self.tables() if len(t) == campaigns]
            return len(full) >= count

        self.wait_for(ready, seconds)

    def interrupt(self, seconds: float = 120.0, sig: int = signal.SIGINT) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the whole process group (or ``sig``)."""
        os.killpg(self.proc.pid, sig)
        code = self.proc.wait(seconds)
        for reader in self._readers:
            reader.join(5)
        return code
