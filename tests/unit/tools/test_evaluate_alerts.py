"""The evaluation's ``CampaignRoiDrop`` column against ``promtool test rules`` (issue 15).

``tools/evaluate_alerts.py`` re-implements the rule on the gauges as Prometheus would scrape
them (15 s) and evaluate them (30 s, ``delta()`` extrapolation, ``offset``, ``for``). Here
the same scraped series go to promtool with the real ``prometheus/rules/campaigns.yml``, and
at every evaluation the campaigns firing must be the same. A tampered expectation must fail,
so the check cannot pass vacuously (e.g. if promtool did not keep ``ALERTS``).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tools"))
import evaluate_alerts as ev  # noqa: E402


def _promtool(tests: dict[str, object]) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: `make system-deps` installs it"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evaluation.test.yml"
        path.write_text(yaml.safe_dump(tests, width=1 << 30))
        return subprocess.run(
            [promtool, "test", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


def test_the_rule_column_fires_when_promtool_does() -> None:
    # 3 h with the collapse at 2 h: the rule fires on the collapsed campaign and, from
    # noise, on another one (seed 1), and resolves in between: starts, holds and ends.
    outcome = ev.run("cvr-collapse", seed=1, hours=3.0, change_hour=2.0, cps=10.0)
    firing = [(t, f) for t, f in outcome.rule_firing if f]
    assert len({c for _, f in firing for c in f}) >= 2, outcome.rule
    assert len(firing) < len(outcome.rule_firing) / 2

    tests = ev.promtool_tests(outcome)
    done = _promtool(tests)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "SUCCESS" in done.stdout

    # the first firing evaluation, expected silent instead: promtool must object
    tampered = copy.deepcopy(tests)
    checks = tampered["tests"][0]["promql_expr_test"]
    first = next(c for c in checks if c["exp_samples"])
    first["exp_samples"] = []
    seconds = int(first["eval_time"].rstrip("s"))
    done = _promtool(tampered)
    assert done.returncode != 0
    report = done.stdout + done.stderr
    h, m, sec = seconds // 3600, seconds % 3600 // 60, seconds % 60
    when = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{sec}s" if sec else "")
    assert f"time: {when}," in report, report
    assert report.count("FAILED") == 1, report  # that one evaluation, no other
