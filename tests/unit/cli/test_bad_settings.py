"""A bad ``STREAM_APP_*`` value, as a person meets it: one line per field, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_bad_setting_is_one_line_per_field_and_exit_2() -> None:
    env = {
        **os.environ,
        "STREAM_APP_PARTITIONS": "four",
        "STREAM_APP_COMMIT_INTERVAL_SECONDS": "-1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "stream_app", "create-topics"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("error: STREAM_APP_PARTITIONS: ")
    assert lines[1].startswith("error: STREAM_APP_COMMIT_INTERVAL_SECONDS: ")
    assert "greater than 0" in lines[1]
    assert lines[2] == "see docs/configuration.md for every setting"
    assert done.stdout == ""
