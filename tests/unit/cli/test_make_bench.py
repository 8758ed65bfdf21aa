"""``make bench`` stops the broker it started, and only that one.

Runs the real Makefile target with stand-ins for ``stream-app`` and ``python`` in a fake
virtualenv (``VENV=...``; ``-o`` keeps make from rebuilding it or checking java and mvn),
recording the commands the target runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FAKE = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$*" in
  "kafka status") [ "$RUNNING" = 1 ] && exit 0 || exit 3 ;;
  "kafka start") [ "$START_RC" = 0 ] || exit "$START_RC"; echo started >> "$CALLS" ;;
  *throughput.py*) exit "$BENCH_RC" ;;
esac
"""


def bench(
    tmp_path: Path, *, running: bool, bench_rc: int = 0, start_rc: int = 0
) -> tuple[int, list[str]]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    for name in ("stream-app", "python"):
        tool = venv / "bin" / name
        tool.write_text(FAKE)
        tool.chmod(0o755)
    calls = tmp_path / "calls"
    calls.unlink(missing_ok=True)
    env = {
        **os.environ,
        "CALLS": str(calls),
        "RUNNING": "1" if running else "0",
        "BENCH_RC": str(bench_rc),
        "START_RC": str(start_rc),
    }
    make = [
        "make",
        "-s",
        "-C",
        str(ROOT),
        f"VENV={venv}",
        "-o",
        "demo-deps",
        "-o",
        "setup",
        "bench",
    ]
    result = subprocess.run(make, env=env, capture_output=True, text=True, timeout=60, check=False)
    return result.returncode, calls.read_text().splitlines() if calls.exists() else []


pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def test_a_broker_it_started_is_stopped(tmp_path: Path) -> None:
    rc, calls = bench(tmp_path, running=False)
    assert rc == 0
    assert calls == [
        "stream-app kafka status",
        "stream-app kafka start",
        "started",
        "python benchmarks/throughput.py",
        "stream-app kafka stop",
    ]


def test_a_broker_that_was_running_is_left_running(tmp_path: Path) -> None:
    rc, calls = bench(tmp_path, running=True)
    assert rc == 0
    assert calls == ["stream-app kafka status", "python benchmarks/throughput.py"]


def test_a_failed_benchmark_still_stops_the_broker_and_fails_make(tmp_path: Path) -> None:
    rc, calls = bench(tmp_path, running=False, bench_rc=3)
    assert rc != 0
    assert calls[-2:] == ["python benchmarks/throughput.py", "stream-app kafka stop"]


def test_a_failed_start_runs_no_benchmark(tmp_path: Path) -> None:
    rc, calls = bench(tmp_path, running=False, start_rc=1)
    assert rc != 0
    assert "python benchmarks/throughput.py" not in calls
