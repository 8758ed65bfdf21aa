"""``stream-app generate`` from the command line (into a file: no broker)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import typer.testing

from stream_app.cli import app
from stream_app.generator import Scenario, estimate_records, live_rate, load_records


def test_live_traffic_starts_now(tmp_path: Path) -> None:
    out = tmp_path / "live.jsonl"
    before = time.time()
    result = typer.testing.CliRunner().invoke(
        app, ["generate", "--live", "--duration", "60", "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    first = min(r.ts for r in load_records(out))
    assert before <= first <= time.time() + 60


def test_live_rate_spreads_the_records_over_the_event_time_span() -> None:
    scenario = Scenario(duration_seconds=600.0, clicks_per_second=10.0)
    assert live_rate(scenario) * 600.0 == pytest.approx(estimate_records(scenario))
    assert live_rate(scenario) > scenario.clicks_per_second  # conversions, spend, reviews too
