"""The demo's collapse is an alert end to end (issue 15): generator → worker → ``campaign-alerts``
→ the line under the demo's table.

The demo runs against the session broker at 8× the wall clock
(``STREAM_APP_DEMO_TIME_SCALE``), with the demo's own short-span detector settings: the
busiest campaign's conversion rate falls to a tenth 5 minutes (event time) in, 38 s of wall
time here (the demo says which campaign); the others must not alert.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

from .demos import PipedDemo, demo_env, kill_all, wait_gone

COLLAPSED = re.compile(r"^(cmp-\d{3})'s conversion rate collapses to a tenth 5 minutes in")
ALERT = re.compile(
    r"^\d\d:\d\d:\d\d alert (cmp-\d{3}) (firing|resolved): ROI ([+-]\d+\.\d\d) -> "
    r"([+-]\d+\.\d\d)(?:, first driver (CTR|CVR|order value|cost per mille) ([+-]?\d+%))?$"
)


def test_the_collapse_shows_as_one_alert_line_naming_cvr(kafka: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    env = {**demo_env(kafka, tmp_path, tag), "STREAM_APP_DEMO_TIME_SCALE": "8"}
    demo = PipedDemo(env)
    try:
        demo.wait_tables(1)
        began = time.monotonic()

        said = [m for m in map(COLLAPSED.match, demo.lines) if m]
        assert len(said) == 1, demo.text()
        collapsed = said[0][1]

        def alerted() -> list[re.Match[str]]:
            found = [ALERT.match(line) for line in list(demo.lines)]
            return [m for m in found if m and m[1] == collapsed and m[2] == "firing"]

        demo.wait_for(lambda: bool(alerted()), seconds=90)
        took = time.monotonic() - began
        match = alerted()[0]
        roi_before, roi_now = float(match[3]), float(match[4])
        # material as the detector defines it: ROI down 0.25, or ROAS (1 + ROI) down 25 %
        roas_fell = (1 + roi_now) <= 0.75 * (1 + roi_before)
        assert roi_now < roi_before - 0.25 or roas_fell, match[0]
        assert match[5] == "CVR", match[0]  # the collapse is of the conversion rate
        # and it fell; by how much depends on how much of the collapse the detector's
        # window held when it fired (-69 % in a quiet run, -44 % on a machine under double
        # load), so only the sign is the behaviour
        assert int(match[6].rstrip("%")) < 0, match[0]
        # the other campaigns did not change: no alert of theirs
        others = [m[0] for m in map(ALERT.match, demo.lines) if m and m[1] != collapsed]
        assert others == [], others
        print(f"alert line after {took:.0f} s of tables: {match[0]}")

        assert demo.interrupt() == 0, demo.text()
        assert wait_gone(tag) == []
        log = (tmp_path / "demo" / "worker.log").read_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        kill_all(tag)
