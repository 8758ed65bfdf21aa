"""Where ``benchmarks/throughput.py`` starts a worker's clock."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
import throughput as tp  # noqa: E402

from stream_app.engine.stage import PartitionState  # noqa: E402
from stream_app.engine.worker import LOOP_PHASES  # noqa: E402

STATE = cast(PartitionState, object())  # what the state is does not matter here


def test_the_clock_starts_at_the_first_installed_state_and_only_then() -> None:
    """The worker processes a partition once its state is installed, before ``ready``:
    the window must start there, and later installs must not move it."""
    loop = dict.fromkeys(LOOP_PHASES, 0.0)
    loop["poll"] = 1.5  # joining and restoring, before any state
    states = tp.ClockedStates(loop)
    assert states.at is None
    states[("aggregation", 0)] = STATE
    first = states.at
    assert first is not None
    assert states.loop_at == {**dict.fromkeys(LOOP_PHASES, 0.0), "poll": 1.5}
    loop["process"] = 2.0  # processing the first partition
    states[("attribution", 0)] = STATE
    assert states.at == first
    assert states.loop_at["process"] == 0.0
    assert len(states) == 2
