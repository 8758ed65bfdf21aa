"""``stream-app demo`` run twice, restarted, killed and piped, against the session broker.

Issue 14: a second demo while one ran broke the first (its worker died on the metrics
port, its generator had already sent traffic into the first's topics); a restarted demo
continued the previous totals while saying the models started cold; ``make demo | tee
log`` had only a unit test of its line format.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from stream_app.demo import EXIT_DEMO_RUNNING

from .demos import (
    PLAIN_LINE,
    PipedDemo,
    demo_argv,
    demo_env,
    kill_all,
    processes_with,
    wait_gone,
)


def _revisions(table: dict[str, dict[str, str]]) -> dict[str, int]:
    return {campaign: int(fields["revision"]) for campaign, fields in table.items()}


def _full(demo: PipedDemo, campaigns: int = 3) -> list[dict[str, dict[str, str]]]:
    return [t for t in demo.tables() if len(t) == campaigns]


def _topics(kafka: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": kafka}).list_topics(timeout=10).topics)


def test_a_second_demo_refuses_at_once_and_the_first_runs_on(kafka: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    env = demo_env(kafka, tmp_path, tag)
    first = PipedDemo(env)
    try:
        first.wait_tables(1)
        before = sorted(processes_with(tag))  # the first demo and its worker
        assert len(before) == 2, before
        demo_dir = tmp_path / "demo"
        worker_pid = int((demo_dir / "worker.pid").read_text())
        run_record = (demo_dir / "run.json").read_text()

        began = time.monotonic()
        second = subprocess.run(
            demo_argv(), env=env, capture_output=True, text=True, timeout=30, check=False
        )
        took = time.monotonic() - began

        assert second.returncode == EXIT_DEMO_RUNNING, second
        assert second.stdout == "", second.stdout  # nothing started, not even the broker check
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"a demo is already running (pid {first.proc.pid}" in lines[0]
        assert took < 15, took  # the interpreter's start; no broker, no worker, no traffic

        assert sorted(processes_with(tag)) == before  # no second worker, even for a moment
        assert int((demo_dir / "worker.pid").read_text()) == worker_pid
        assert (demo_dir / "run.json").read_text() == run_record
        shown = _revisions(_full(first)[-1])
        first.wait_for(
            lambda: any(
                sum(_revisions(t).values()) > sum(shown.values()) for t in _full(first)[-1:]
            )
        )
        assert first.proc.poll() is None
        log = (demo_dir / "worker.log").read_text()
        assert "Traceback" not in log, log[-3000:]
        assert "Address already in use" not in log, log[-3000:]

        # 'kill <pid>', as the refusal says: stops the demo and its worker like Ctrl-C
        assert first.interrupt(sig=signal.SIGTERM) == 0, first.text()
        assert "demo stopped." in first.lines
        assert wait_gone(tag) == []
        assert "worker stopped after" in (demo_dir / "worker.log").read_text()
    finally:
        kill_all(tag)


def test_piped_demo_prints_key_value_lines_and_ctrl_c_stops_everything(
    kafka: str, tmp_path: Path
) -> None:
    """``stream-app demo | tee log`` in one process group; Ctrl-C kills tee too, so the
    demo stops its worker with nobody reading its stdout."""
    tag = uuid.uuid4().hex[:8]
    env = demo_env(kafka, tmp_path, tag)
    log = tmp_path / "log"
    errors = tmp_path / "stderr"
    with errors.open("wb") as stderr:
        demo = subprocess.Popen(
            demo_argv(), env=env, stdout=subprocess.PIPE, stderr=stderr, process_group=0
        )
        tee = subprocess.Popen(
            ["tee", str(log)],
            stdin=demo.stdout,
            stdout=subprocess.DEVNULL,
            process_group=demo.pid,  # the same job, as the shell makes it
        )
    assert demo.stdout is not None
    demo.stdout.close()  # tee alone reads it
    try:
        deadline = time.monotonic() + 90
        blocks: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            blocks = {}
            for line in text.splitlines():
                if match := PLAIN_LINE.match(line):
                    blocks.setdefault(match[1], []).append(match[3])
            if len([b for b in blocks.values() if len(b) == 3]) >= 2:
                break
            assert demo.poll() is None, (text, errors.read_text())
            time.sleep(0.5)
        text = log.read_text()
        assert len(blocks) >= 2, text
        assert "\x1b" not in text  # no escape codes in a log
        for rows in blocks.values():
            for row in rows:
                fields = row.split(" ")
                assert all(re.fullmatch(r"[A-Za-z_]+=\S+", f) for f in fields), row
                keys = [f.split("=")[0] for f in fields]
                assert keys[:4] == ["spend", "revenue", "ROI", "ROAS"], row
                assert {"revision", "nowcast", "sentiment"} <= set(keys), row
        assert re.search(r"^\d\d:\d\d:\d\d worker running, dead letters \d+$", text, re.M)
        assert len(processes_with(tag)) == 2  # the demo and its worker

        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole job
        assert demo.wait(120) == 0, errors.read_text()
        tee.wait(10)
        assert "Traceback" not in errors.read_text(), errors.read_text()
        assert wait_gone(tag) == []
        worker_log = (tmp_path / "demo" / "worker.log").read_text()
        assert "worker stopped after" in worker_log, worker_log[-2000:]  # SIGTERM, committed
    finally:
        kill_all(tag)
        for proc in (demo, tee):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_restart_is_fresh_continue_resumes_and_a_killed_demo_is_recovered(
    kafka: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    env = demo_env(kafka, tmp_path, tag)
    record = tmp_path / "demo" / "run.json"
    try:
        # 1. first run: fresh
        first = PipedDemo(env)
        first.wait_tables(2)
        assert first.interrupt() == 0, first.text()
        assert wait_gone(tag) == []
        run = json.loads(record.read_text())
        prefix = f"{tag}-demo-{run['run_id']}-"
        assert any(
            f"Fresh demo run {run['run_id']} (topics {prefix}*)" in line for line in first.lines
        )
        assert "models cold" in first.text()
        shown = _revisions(_full(first)[-1])

        # 2. --continue: the same run, its totals and models restored; then kill -9
        second = PipedDemo(env, "--continue")
        second.wait_tables(1)
        assert any(f"Continuing demo run {run['run_id']}" in line for line in second.lines)
        assert "models (restored" in second.text()
        assert json.loads(record.read_text()) == run
        resumed = _revisions(_full(second)[0])
        assert all(resumed[c] >= shown[c] for c in shown), (shown, resumed)
        second.wait_for(lambda: sum(_revisions(_full(second)[-1]).values()) > sum(shown.values()))
        worker = int((tmp_path / "demo" / "worker.pid").read_text())
        os.kill(second.proc.pid, signal.SIGKILL)  # no chance to stop its worker
        second.proc.wait(10)
        assert worker in processes_with(tag)

        # 3. a plain restart: stops the killed demo's worker, starts fresh, deletes the old run
        changelogs = f"test-demo-{tag}-demo-{run['run_id']}-"  # <app_id>-<stage>-changelog
        old_topics = [t for t in _topics(kafka) if t.startswith((prefix, changelogs))]
        assert old_topics
        third = PipedDemo(env)
        third.wait_tables(1)
        assert any(
            f"Stopping the worker (pid {worker}) left running by a demo that was killed" in line
            for line in third.lines
        ), third.text()
        assert worker not in processes_with(tag)
        new = json.loads(record.read_text())
        assert new["run_id"] != run["run_id"]
        assert any(
            f"Fresh demo run {new['run_id']}" in line
            and f"Deleted the previous run's {len(old_topics)} topics" in line
            for line in third.lines
        ), third.text()
        topics = _topics(kafka)
        assert not [t for t in topics if t.startswith(prefix)], topics
        assert not [t for t in topics if t.startswith(changelogs)], topics
        assert f"{tag}-demo-{new['run_id']}-clicks" in topics
        # from zero, not continued: nothing restored, its models start cold (the footer
        # says which). A spend comparison with the killed run was timing: a fresh first
        # table that came late under load showed more than the killed run's last
        assert "models cold" in third.text(), third.text()
        assert "models (restored" not in third.text(), third.text()
        assert third.interrupt() == 0, third.text()
        assert wait_gone(tag) == []
    finally:
        kill_all(tag)
