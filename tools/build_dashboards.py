"""Write the Grafana dashboards in ``grafana/dashboards/`` from the panel lists below.

The dashboards are generated, not hand-edited, so that every panel has the same shape and
a reviewer reads queries, not JSON. ``--check`` fails when the committed files differ from
what this script writes (CI runs it through ``tests/unit/monitoring``).

    python tools/build_dashboards.py          # rewrite grafana/dashboards/*.json
    python tools/build_dashboards.py --check  # exit 1 if they are out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
CAMPAIGN = 'campaign=~"$campaign"'
RATE = "[$__rate_interval]"


def per_minute(gauge: str, by: str = "campaign") -> str:
    """Growth per minute of a cumulative per-campaign gauge of the selected campaigns.

    ``max by``: after a rebalance the previous owner's copy stops growing.
    """
    return f"60 * max by ({by}) (deriv({gauge}{{{CAMPAIGN}}}[5m]))"


@dataclass(frozen=True)
class Panel:
    """One time series (or table) panel: a title, PromQL targets as (expr, legend), a unit."""

    title: str
    targets: tuple[tuple[str, str], ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"
    width: int = 12


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    campaign_variable: bool = False
    tags: tuple[str, ...] = field(default=("stream-app",))


CAMPAIGN_ROI = Dashboard(
    uid="stream-app-campaign-roi",
    title="Campaign ROI",
    description="What each campaign earns for what it spends: ROI, ROAS, CPA, CTR, CVR and "
    "review sentiment, from the stream-app workers.",
    campaign_variable=True,
    panels=(
        Panel(
            "Campaigns now",
            (
                (f"max by (campaign) (stream_app_campaign_spend{{{CAMPAIGN}}})", "spend"),
                (f"max by (campaign) (stream_app_campaign_revenue{{{CAMPAIGN}}})", "revenue"),
                (f"max by (campaign) (stream_app_campaign_roi_ratio{{{CAMPAIGN}}})", "ROI"),
                (f"max by (campaign) (stream_app_campaign_roas_ratio{{{CAMPAIGN}}})", "ROAS"),
                (f"max by (campaign) (stream_app_campaign_cpa{{{CAMPAIGN}}})", "CPA"),
                (f"max by (campaign) (stream_app_campaign_ctr_ratio{{{CAMPAIGN}}})", "CTR"),
                (f"max by (campaign) (stream_app_campaign_cvr_ratio{{{CAMPAIGN}}})", "CVR"),
                (
                    f"max by (campaign) (stream_app_campaign_sentiment_mean{{{CAMPAIGN}}})",
                    "sentiment",
                ),
            ),
            description="Cumulative figures per campaign (since the application's state "
            "began), one row per campaign.",
            kind="table",
            width=24,
        ),
        Panel(
            "ROI-drop alerts firing now, and why",
            (
                (
                    "max by (campaign, alert_id, severity, driver, explanation) "
                    f"(stream_app_campaign_alert_info{{{CAMPAIGN}}})",
                    "alert",
                ),
            ),
            description="One row per campaign whose in-stream ROI-drop alert fires: its id, "
            "severity, the driver that pulled ROAS down most and the explanation (drivers, "
            "sentiment, review topics that grew). docs/alerts.md.",
            kind="table",
            width=24,
        ),
        Panel(
            "ROI, last 15 minutes",
            ((f"campaign:stream_app_campaign_roi_ratio:15m{{{CAMPAIGN}}}", "{{campaign}}"),),
            unit="percentunit",
            description="(revenue − spend) / spend over the trailing 15 minutes, counting "
            "revenue when its conversion arrives. The CampaignRoiDrop page compares this "
            "with the 6 hours before.",
        ),
        Panel(
            "ROI, cumulative",
            ((f"stream_app_campaign_roi_ratio{{{CAMPAIGN}}}", "{{campaign}}"),),
            unit="percentunit",
        ),
        Panel(
            "Latest window ROI: observed, nowcast, forecast",
            (
                (f"stream_app_campaign_window_roi_ratio{{{CAMPAIGN}}}", "{{campaign}} observed"),
                (
                    f"stream_app_campaign_window_roi_nowcast_ratio{{{CAMPAIGN}}}",
                    "{{campaign}} nowcast",
                ),
                (
                    f"stream_app_campaign_window_roi_forecast_ratio{{{CAMPAIGN}}}",
                    "{{campaign}} forecast (last closed)",
                ),
            ),
            unit="percentunit",
            description="Observed ROI of the open window is low until its clicks convert; "
            "the nowcast adds the conversions the model expects, the forecast predicts the "
            "last closed window's final ROI.",
        ),
        Panel(
            "ROAS, cumulative",
            ((f"stream_app_campaign_roas_ratio{{{CAMPAIGN}}}", "{{campaign}}"),),
            unit="percentunit",
        ),
        Panel(
            "Cost per conversion (CPA), cumulative",
            ((f"stream_app_campaign_cpa{{{CAMPAIGN}}}", "{{campaign}} ({{currency}})"),),
        ),
        Panel(
            "CTR and CVR, cumulative",
            (
                (f"stream_app_campaign_ctr_ratio{{{CAMPAIGN}}}", "{{campaign}} CTR"),
                (f"stream_app_campaign_cvr_ratio{{{CAMPAIGN}}}", "{{campaign}} CVR"),
            ),
            unit="percentunit",
        ),
        Panel(
            "Spend and revenue per minute",
            (
                (
                    per_minute("stream_app_campaign_spend", "campaign, currency"),
                    "{{campaign}} spend",
                ),
                (
                    per_minute("stream_app_campaign_revenue", "campaign, currency"),
                    "{{campaign}} revenue",
                ),
            ),
        ),
        Panel(
            "Review sentiment, mean (−1 … 1)",
            ((f"stream_app_campaign_sentiment_mean{{{CAMPAIGN}}}", "{{campaign}}"),),
            description="Mean score of the campaign's scored reviews, cumulative.",
        ),
        Panel(
            "Negative review share",
            ((f"stream_app_campaign_negative_review_ratio{{{CAMPAIGN}}}", "{{campaign}}"),),
            unit="percentunit",
        ),
        Panel(
            "Clicks, conversions and reviews per minute",
            (
                (per_minute("stream_app_campaign_clicks"), "{{campaign}} clicks"),
                (per_minute("stream_app_campaign_conversions"), "{{campaign}} conversions"),
                (per_minute("stream_app_campaign_reviews"), "{{campaign}} reviews"),
            ),
        ),
        Panel(
            "Predicted p(conversion), mean",
            ((f"stream_app_campaign_p_conversion_mean_ratio{{{CAMPAIGN}}}", "{{campaign}}"),),
            unit="percentunit",
        ),
        Panel(
            "Recommended bid multiplier (bid-signals)",
            ((f"stream_app_campaign_bid_multiplier_ratio{{{CAMPAIGN}}}", "{{campaign}}"),),
            description="× the campaign's base bid, from its latest committed bid-signals "
            'decision (docs/bidding.md); held while paused. campaign="other": the mean of '
            "the campaigns beyond the label budget.",
        ),
        Panel(
            "Bidding paused",
            ((f"stream_app_campaign_bid_paused{{{CAMPAIGN}}}", "{{campaign}}"),),
            description="1 while the latest decision advises pausing: P(ROI < floor) is high "
            'even at the lowest multiplier. campaign="other": how many of the campaigns '
            "beyond the label budget are paused.",
        ),
        Panel(
            "Bid decisions per minute, by advice",
            (
                (
                    f"sum by (advice) (60 * rate(stream_app_bid_decisions_total{RATE}))",
                    "{{advice}}",
                ),
            ),
            description="All campaigns: one decision per campaign per bid interval of event "
            "time (faster while a backlog is read); pause and resume are the ones to watch.",
        ),
    ),
)

OPERATIONS = Dashboard(
    uid="stream-app-operations",
    title="stream-app operations",
    description="Is the worker up, committing and keeping up, and is its input sane? "
    "The on-call view behind the StreamApp* alerts.",
    panels=(
        Panel("Workers up", (('up{job="stream-app"}', "{{instance}}"),)),
        Panel(
            "Transactions committed per second",
            (
                (
                    f"sum by (instance, worker) (rate(stream_app_transactions_total{RATE}))",
                    "{{instance}} {{worker}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Input events per second, by topic and outcome",
            (
                (
                    f"sum by (topic, outcome) (rate(stream_app_events_total{RATE}))",
                    "{{topic}} {{outcome}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Consumer lag (records waiting)",
            (("sum by (topic) (stream_app_consumer_lag_messages)", "{{topic}}"),),
        ),
        Panel(
            "Event to committed output, p50 and p99",
            tuple(
                (
                    f"histogram_quantile({q}, sum by (worker, le) "
                    f"(rate(stream_app_processing_latency_seconds_bucket{RATE})))",
                    f"{{{{worker}}}} p{round(q * 100)}",
                )
                for q in (0.5, 0.99)
            ),
            unit="s",
        ),
        Panel(
            "Commit duration, p99",
            (
                (
                    "histogram_quantile(0.99, sum by (worker, le) "
                    f"(rate(stream_app_commit_duration_seconds_bucket{RATE})))",
                    "{{worker}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Event-loop thread by phase (mostly poll: waiting for records)",
            (
                (
                    f"sum by (worker, phase) (rate(stream_app_worker_loop_seconds_total{RATE}))",
                    "{{worker}} {{phase}}",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "Dead letters per second, by reason",
            (
                (
                    f"sum by (reason) (rate(stream_app_dead_letters_total{RATE}))",
                    "{{reason}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Unattributed conversions per second, by reason",
            (
                (
                    f"sum by (reason) (rate(stream_app_conversions_unattributed_total{RATE}))",
                    "{{reason}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Reviews scored per second, by label",
            (
                (
                    f"sum by (label) (rate(stream_app_reviews_scored_total{RATE}))",
                    "{{label}}",
                ),
                (
                    f"sum by (reason) (rate(stream_app_reviews_unscored_total{RATE}))",
                    "unscored: {{reason}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Sentiment micro-batch: duration p99 and mean size",
            (
                (
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(stream_app_sentiment_batch_duration_seconds_bucket{RATE})))",
                    "duration p99 (s)",
                ),
                (
                    f"sum(rate(stream_app_sentiment_batch_reviews_sum{RATE})) "
                    f"/ sum(rate(stream_app_sentiment_batch_reviews_count{RATE}))",
                    "reviews per batch",
                ),
            ),
        ),
        Panel(
            "Conversion model: rolling AUC",
            (
                (
                    'stream_app_model_rolling_auc_ratio{model="conversion"}',
                    "partition {{partition}}",
                ),
            ),
            description="ConversionModelDegraded fires below 0.55 after 5,000 labels.",
        ),
        Panel(
            "ROI forecaster: progressive MAE",
            (
                (
                    'stream_app_model_progressive_mae_ratio{model="roi_forecast"}',
                    "partition {{partition}}",
                ),
            ),
        ),
        Panel(
            "Model versions served",
            (("max by (model, version) (stream_app_model_info)", "{{model}} {{version}}"),),
            kind="table",
            width=24,
        ),
    ),
)

DASHBOARDS = (CAMPAIGN_ROI, OPERATIONS)


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    height = 8
    targets = [
        {
            "datasource": DATASOURCE,
            "expr": expr,
            "legendFormat": legend,
            "refId": chr(ord("A") + i),
            **({"instant": True, "format": "table"} if panel.kind == "table" else {}),
        }
        for i, (expr, legend) in enumerate(panel.targets)
    ]
    out: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": height},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": targets,
    }
    if panel.kind == "table":
        # one row per campaign (or model): join the instant queries on their labels
        out["transformations"] = [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}}},
        ]
    else:
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}}
    return out


def _variables(dashboard: Dashboard) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
        }
    ]
    if dashboard.campaign_variable:
        query = "label_values(stream_app_campaign_spend, campaign)"
        out.append(
            {
                "name": "campaign",
                "label": "Campaign",
                "type": "query",
                "datasource": DATASOURCE,
                "definition": query,
                "query": {"query": query, "refId": "campaigns"},
                "refresh": 2,
                "multi": True,
                "includeAll": True,
                "allValue": ".*",
                "current": {"text": "All", "value": "$__all"},
                "sort": 1,
            }
        )
    return out


def render(dashboard: Dashboard) -> dict[str, Any]:
    """The Grafana dashboard model (schema version 39) for one dashboard."""
    panels, x, y = [], 0, 0
    for i, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y = 0, y + 8
        panels.append(_panel_json(panel, i, x, y))
        x += panel.width
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": _variables(dashboard)},
        "annotations": {"list": []},
        "panels": panels,
    }


def expressions(*dashboards: Dashboard) -> list[str]:
    """Every PromQL expression of the given dashboards (default: all), in panel order.

    The tests check their metric names and run them on a real Prometheus.
    """
    return [
        expr
        for dashboard in dashboards or DASHBOARDS
        for panel in dashboard.panels
        for expr, _ in panel.targets
    ]


def _text(dashboard: Dashboard) -> str:
    return json.dumps(render(dashboard), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    stale = []
    for dashboard in DASHBOARDS:
        path = OUT_DIR / f"{dashboard.uid.removeprefix('stream-app-')}.json"
        text = _text(dashboard)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python tools/build_dashboards.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
