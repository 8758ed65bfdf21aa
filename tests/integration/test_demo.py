"""``stream-app demo`` driven the way a person drives it: in a terminal, then Ctrl-C.

The demo runs in a pseudo-terminal of a given size (stdlib ``pty``: the terminal is its
controlling terminal, so Ctrl-C is a real ``\\x03`` turned into SIGINT by the line
discipline), against the session's broker (``STREAM_APP_BOOTSTRAP_SERVERS``, so it starts
no broker of its own). The test waits for a complete frame of the live table with every
campaign in it, checks it is readable at that width, presses Ctrl-C and checks that the
demo and its worker are gone.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
import uuid
from pathlib import Path

import pytest

from stream_app.demo import REQUIRED

from .demos import demo_env, kill_all, wait_gone

CAMPAIGNS = 4
ROWS_WITHIN_S = 60.0
"""Generous for a loaded CI machine; on an idle one the first full table takes ~10 s."""
_CSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


def _spawn(argv: list[str], env: dict[str, str], rows: int, cols: int) -> tuple[int, int]:
    """``argv`` in a new pseudo-terminal of ``rows`` × ``cols``; returns (pid, master fd)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin/stdout/stderr are the terminal
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    return pid, fd


def _read(fd: int, buffer: bytearray, seconds: float) -> bool:
    """Append what the terminal shows within ``seconds``; False once the child closed it."""
    ready, _, _ = select.select([fd], [], [], seconds)
    if not ready:
        return True
    try:
        chunk = os.read(fd, 65536)
    except OSError:  # EIO: the child side is closed
        return False
    buffer.extend(chunk)
    return bool(chunk)


def _last_frame(screen: bytes) -> list[str] | None:
    """The lines of the last complete frame of the live table, escapes removed."""
    start = screen.rfind(b"Campaign ROI (cumulative")
    end = screen.find(b"Ctrl-C stops", start)  # the footer may wrap after it
    if start < 0 or end < 0:
        return None
    text = _CSI.sub(b"", screen[start:end]).decode(errors="replace")
    return [line.rstrip() for line in text.replace("\r", "").split("\n")]


def _rows(frame: list[str]) -> list[str]:
    """The table's campaign rows (not the footer, which names cmp-001 too)."""
    return [line for line in frame if re.match(r"^│ cmp-\d{3} ", line)]


@pytest.mark.parametrize(("rows", "cols"), [(24, 80), (50, 200)])
def test_demo_in_a_terminal_is_readable_and_ctrl_c_stops_everything(
    kafka: str, tmp_path: Path, rows: int, cols: int
) -> None:
    tag = uuid.uuid4().hex[:8]
    env = {**demo_env(kafka, tmp_path, tag), "TERM": "xterm-256color"}
    argv = [sys.executable, "-m", "stream_app", "demo", "--campaigns", str(CAMPAIGNS)]
    pid, fd = _spawn(argv, env, rows, cols)
    screen = bytearray()
    try:
        started = time.monotonic()
        deadline = started + ROWS_WITHIN_S
        frame: list[str] | None = None
        while time.monotonic() < deadline:
            if not _read(fd, screen, 0.5):
                break
            frame = _last_frame(bytes(screen))
            if frame is not None and len(_rows(frame)) == CAMPAIGNS:
                print(f"{len(_rows(frame))} rows after {time.monotonic() - started:.1f} s")
                break
        assert frame is not None, _CSI.sub(b"", screen)[-3000:]
        assert len(_rows(frame)) == CAMPAIGNS, _CSI.sub(b"", screen)[-3000:]

        table = "\n".join(frame)
        assert "…" not in table, table  # no cell cut short
        assert max(len(line) for line in frame) <= cols, table
        header = next(line for line in frame if "campaign" in line)
        for column in REQUIRED:
            assert column in header, (column, table)
        assert ("revision" in header) == (cols >= 120), table  # dropped first when narrow
        campaigns = sorted(re.search(r"cmp-\d{3}", row)[0] for row in _rows(frame))  # type: ignore[index]
        assert campaigns == [f"cmp-{i:03d}" for i in range(1, CAMPAIGNS + 1)], table

        os.write(fd, b"\x03")  # Ctrl-C, as typed
        stop_by = time.monotonic() + 45
        while time.monotonic() < stop_by and _read(fd, screen, 0.5):
            pass
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 0, _CSI.sub(b"", screen)[-2000:]
        assert b"demo stopped." in screen
        assert wait_gone(tag, 0) == []
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        kill_all(tag)  # never leave a worker behind, even failing
        os.close(fd)
