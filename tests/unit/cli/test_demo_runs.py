"""The demo's guards and runs without a broker: one demo at a time (a lock the kernel
drops however the holder dies), the metrics port checked before anything starts, a
reused broker named and left running, fresh or continued runs and a footer that says
which (issue 14)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_app import demo as demo_module
from stream_app import kafka_local
from stream_app.demo import (
    DEMO_DIR_ENV,
    EXIT_DEMO_RUNNING,
    Demo,
    DemoDir,
    DemoRun,
    DemoRunningError,
    choose_run,
    footer,
    metrics_port_free,
)
from stream_app.kafka_local import BrokerInfo
from stream_app.settings import Settings


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "bootstrap_servers": "127.0.0.1:1",
        "kafka_data_dir": tmp_path / "kafka",
    }
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


def test_a_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first, second = DemoDir(tmp_path), DemoDir(tmp_path)
    first.acquire()
    try:
        with pytest.raises(DemoRunningError, match=rf"already running \(pid {os.getpid()},"):
            second.acquire()
    finally:
        first.release()
    second.acquire()  # released: free again
    second.release()


def test_the_lock_of_a_killed_demo_is_not_stale(tmp_path: Path) -> None:
    """``kill -9`` leaves the lock file and the pid in it; the kernel dropped the flock."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from stream_app.demo import DemoDir; "
            "DemoDir(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(DemoRunningError, match=f"pid {holder.pid}"):
            DemoDir(tmp_path).acquire()
        holder.kill()
        holder.wait()
        assert (tmp_path / "demo.lock").read_text().strip() == str(holder.pid)  # stale content
        files = DemoDir(tmp_path)
        files.acquire()
        assert (tmp_path / "demo.lock").read_text().strip() == str(os.getpid())
        files.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_second_demo_cli_says_one_line_and_exits_75_before_anything(tmp_path: Path) -> None:
    files = DemoDir(tmp_path / "demo")
    files.acquire()
    try:
        env = {**os.environ, "STREAM_APP_KAFKA_DATA_DIR": str(tmp_path / "kafka")}
        env["STREAM_APP_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"  # would fail the broker check
        result = subprocess.run(
            [sys.executable, "-m", "stream_app", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        files.release()
    assert result.returncode == EXIT_DEMO_RUNNING, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: a demo is already running (pid {os.getpid()}")
    assert "no Kafka broker" not in result.stderr  # the lock is checked first


def test_a_taken_metrics_port_is_seen(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not metrics_port_free("127.0.0.1", port)
    assert metrics_port_free("127.0.0.1", port)


def test_a_taken_metrics_port_ends_the_demo_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        env = {
            **os.environ,
            "STREAM_APP_KAFKA_DATA_DIR": str(tmp_path / "kafka"),
            "STREAM_APP_METRICS_PORT": str(sock.getsockname()[1]),
            "STREAM_APP_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        }
        result = subprocess.run(
            [sys.executable, "-m", "stream_app", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert "where the demo's worker serves /metrics, is taken" in result.stderr
    DemoDir(tmp_path / "demo").acquire()  # the refused demo let go of its lock


def test_a_reused_broker_is_named_and_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(kafka_data_dir=tmp_path / "kafka", kafka_port=19092)
    info = BrokerInfo(4242, "127.0.0.1:19092", True, 0.01, tmp_path, tmp_path / "broker.log")
    monkeypatch.setattr(kafka_local, "start", lambda cfg: info)
    stopped: list[object] = []
    monkeypatch.setattr(kafka_local, "stop", stopped.append)
    demo = Demo(settings, 1.0, 1)
    assert not demo.external_broker
    asyncio.run(demo._broker())
    out = capsys.readouterr().out
    assert "reusing the running broker at 127.0.0.1:19092 (pid 4242)" in out
    assert "in 0.0s" not in out
    demo.shutdown()
    assert stopped == []


def test_a_started_broker_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(kafka_data_dir=tmp_path / "kafka", kafka_port=19092)
    info = BrokerInfo(4242, "127.0.0.1:19092", False, 4.2, tmp_path, tmp_path / "broker.log")
    monkeypatch.setattr(kafka_local, "start", lambda cfg: info)
    stopped: list[object] = []
    monkeypatch.setattr(kafka_local, "stop", stopped.append)
    demo = Demo(settings, 1.0, 1)
    asyncio.run(demo._broker())
    assert "Kafka ready at 127.0.0.1:19092 (pid 4242) in 4.2s" in capsys.readouterr().out
    demo.shutdown()
    assert len(stopped) == 1


def test_fresh_is_the_default_and_names_the_previous_run_to_delete(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    previous = DemoRun.new(settings)
    choice = choose_run(previous, settings, {f"{previous.prefix}clicks"}, resume=False)
    assert choice.run.run_id != previous.run_id
    assert not choice.restored
    assert choice.stale == previous
    assert "models cold" in choice.message
    assert choice.run.app_id == f"campaign-roi-demo-{choice.run.run_id}"
    run_settings = choice.run.settings(settings, tmp_path / "state")
    assert run_settings.topics.clicks == f"demo-{choice.run.run_id}-clicks"
    assert run_settings.state_topic("attribution").startswith(choice.run.app_id)


def test_continue_resumes_the_previous_run_on_the_same_broker(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    previous = DemoRun.new(settings)
    choice = choose_run(previous, settings, {f"{previous.prefix}clicks"}, resume=True)
    assert choice.run == previous
    assert choice.restored
    assert choice.stale is None
    assert choice.message.startswith(f"Continuing demo run {previous.run_id}")


@pytest.mark.parametrize("why", ["no record", "other broker", "topics gone"])
def test_continue_with_nothing_to_continue_starts_fresh_and_says_so(
    tmp_path: Path, why: str
) -> None:
    settings = _settings(tmp_path)
    previous = DemoRun.new(settings)
    topics = {f"{previous.prefix}clicks"}
    if why == "other broker":
        previous = DemoRun.new(_settings(tmp_path, bootstrap_servers="10.0.0.1:9092"))
    record = None if why == "no record" else previous
    choice = choose_run(record, settings, set() if why == "topics gone" else topics, resume=True)
    assert not choice.restored
    assert choice.message.startswith("nothing to continue at 127.0.0.1:1; Fresh demo run")
    if why == "other broker":
        assert choice.stale is None  # another broker's run is never deleted from this one


def test_the_run_record_round_trips_and_a_broken_one_is_no_run(tmp_path: Path) -> None:
    files = DemoDir(tmp_path)
    assert files.previous_run() is None
    run = DemoRun.new(_settings(tmp_path))
    files.save_run(run)
    assert files.previous_run() == run
    files.run_file.write_text('{"run_id": "ab')
    assert files.previous_run() is None


def test_the_footer_says_whether_the_models_start_cold_or_were_restored() -> None:
    for width in (80, 200):
        cold, restored = footer(width, restored=False), footer(width, restored=True)
        assert "cold" in cold
        assert "restored" not in cold
        assert "restored" in restored
        assert "cold" not in restored
        assert len(footer(width, restored=True)) > 40


def test_a_killed_demos_worker_is_recognised_by_its_mark_only(tmp_path: Path) -> None:
    files = DemoDir(tmp_path)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    marked = subprocess.Popen(sleeper, env={**os.environ, DEMO_DIR_ENV: str(tmp_path)})
    other = subprocess.Popen(sleeper, env={**os.environ, DEMO_DIR_ENV: str(tmp_path / "x")})
    try:
        time.sleep(0.2)  # exec'd: its environ is the new one
        files.worker_pid.write_text(f"{other.pid}\n")
        assert files.leftover_worker() is None  # another demo dir's, or a reused pid
        files.worker_pid.write_text(f"{marked.pid}\n")
        assert files.leftover_worker() == marked.pid
        demo_module.stop_process(marked.pid, timeout=5)
        marked.wait(5)
        assert marked.returncode == -signal.SIGTERM
        assert files.leftover_worker() is None
    finally:
        for proc in (marked, other):
            proc.kill()
            proc.wait()
