"""Generated traffic with delayed labels, shared by the learning tests (built once)."""

from __future__ import annotations

from functools import cache

from stream_app.generator import Scenario
from stream_app.generator.labelled import labelled_traffic
from stream_app.learning.replay import Traffic

LABEL_WINDOW = 1800.0
COLLAPSE_CAMPAIGN = "cmp-002"
COLLAPSE_AT = 4 * 3600.0
"""Seconds after the start; half-way through the default eight hours."""


@cache
def small_traffic(
    seed: int = 3, hours: float = 8.0, clicks_per_second: float = 2.0, collapse: bool = False
) -> Traffic:
    """Eight hours at 2 clicks/s: ~58k clicks in a few seconds; labels 1800 s late at most."""
    scenario = Scenario(
        seed=seed,
        duration_seconds=hours * 3600,
        clicks_per_second=clicks_per_second,
        spend_interval_seconds=60.0,
        reviews_per_minute=0.5,
        attribution_window_seconds=LABEL_WINDOW,
        collapse_campaign=COLLAPSE_CAMPAIGN if collapse else None,
        collapse_at=COLLAPSE_AT,
        bad_share=0.0,
        duplicate_share=0.0,
        late_share=0.0,
    )
    return labelled_traffic(scenario, LABEL_WINDOW)
