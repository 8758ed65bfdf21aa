"""The pure helpers of ``benchmarks/scaleout.py``."""

from __future__ import annotations

import doctest
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
import scaleout as so  # noqa: E402


def test_cpu_seconds_from_a_command_name_with_spaces_and_parentheses() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    line = f"7 (a (b) c) R 1 7 7 0 -1 4194304 100 0 0 0 {3 * ticks} {ticks} 0 0 20 0 1 0"
    assert so.cpu_seconds_from_stat(line) == 4.0


def test_cpu_seconds_of_this_process_follow_process_time() -> None:
    stat = Path(f"/proc/{os.getpid()}/stat")
    before, cpu0 = so.cpu_seconds_from_stat(stat.read_text()), time.process_time()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    after, cpu1 = so.cpu_seconds_from_stat(stat.read_text()), time.process_time()
    assert abs((after - before) - (cpu1 - cpu0)) < 0.05


def test_events_per_member_sums_its_input_partitions() -> None:
    ends = {("clicks", 0): 10, ("clicks", 1): 20, ("spend", 0): 3, ("spend", 1): 4}
    got = so.events_per_member({"w1": [("clicks", 0), ("spend", 0)], "w2": [("clicks", 1)]}, ends)
    assert got == {"w1": 13, "w2": 20}


def test_ratios_are_taken_within_a_round() -> None:
    runs = [(0, 1, 100.0), (0, 2, 150.0), (0, 4, 160.0), (1, 1, 50.0), (1, 2, 90.0), (2, 2, 1.0)]
    assert so.ratios_to_base(runs) == {1: 1.0, 2: 1.65, 4: 1.6}  # round 2 has no base


def test_last_record_ends_are_past_the_last_record_not_the_markers() -> None:
    # partition 0: records at 0, 1, markers at 2, 3 (two producers); partition 1: none read
    assert so.last_record_ends([(0, 0), (0, 1)]) == {0: 2}
    assert so.last_record_ends([]) == {}


def test_metric_value_reads_one_labelled_sample() -> None:
    text = (
        "# HELP stream_app_transactions_total Committed\n"
        'stream_app_transactions_total{worker="roi"} 12.0\n'
        'stream_app_transactions_total{worker="sentiment"} 3.0\n'
    )
    assert so.metric_value(text, "stream_app_transactions_total", 'worker="roi"') == 12.0
    assert so.metric_value(text, "stream_app_missing") == 0.0


def test_the_examples_in_the_docstrings() -> None:
    assert doctest.testmod(so).failed == 0
