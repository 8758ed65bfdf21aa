"""The demo's live table, rendered by rich to a string at a fixed width, as a terminal shows it."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from stream_app.demo import COLUMNS, REQUIRED, _pct, fit_columns, plain_lines, roi_table
from stream_app.domain.records import CampaignLatest, Metrics, Predictions, WindowRoi


def _metrics(spend: float, revenue: float) -> Metrics:
    roi = (revenue - spend) / spend if spend else None
    return Metrics(
        currency="USD",
        spend=spend,
        impressions=1_234_567,
        clicks=54_321,
        conversions=1_234,
        revenue=revenue,
        roi=roi,
        roas=revenue / spend if spend else None,
        cpa=spend / 1_234,
        ctr=0.0123,
        cvr=0.0456,
        reviews=321,
        scored_reviews=300,
        sentiment_mean=-0.42,
        negative_share=0.3,
    )


def _latest(i: int, spend: float, revenue: float) -> CampaignLatest:
    window = WindowRoi(
        campaign_id=f"cmp-{i:03d}",
        window_start=0.0,
        window_end=60.0,
        revision=12,
        metrics=_metrics(spend / 100, revenue / 100),
        predictions=Predictions(roi_nowcast=-0.004, roi_forecast=1.5),
        emitted_at=1.0,
    )
    return CampaignLatest(
        campaign_id=f"cmp-{i:03d}",
        revision=123_456,
        cumulative=_metrics(spend, revenue),
        last_window=window,
        last_closed_window=window,
        too_late_events=0,
        updated_at=1.0,
    )


def _campaigns(n: int = 8) -> dict[str, CampaignLatest]:
    """Six-figure money: what a demo left running for a day shows."""
    rows = [_latest(i, 123_456.78 * i / n, 234_567.89 * (n - i + 1) / n) for i in range(1, n + 1)]
    return {r.campaign_id: r for r in rows}


def render(width: int, latest: dict[str, CampaignLatest] | None = None) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, legacy_windows=False)
    console.print(roi_table(latest or _campaigns(), "USD", width))
    return out.getvalue().splitlines()


def _header(lines: list[str]) -> list[str]:
    line = next(line for line in lines if "campaign" in line)
    return [cell.strip() for cell in line.strip("┃ ").split("┃")]


@pytest.mark.parametrize("width", [80, 200])
def test_every_cell_is_whole_and_the_required_columns_are_there(width: int) -> None:
    lines = render(width)
    text = "\n".join(lines)
    assert "…" not in text, text
    assert max(len(line) for line in lines) <= width
    assert set(REQUIRED) <= set(_header(lines)), text
    for i in range(1, 9):
        row = next(line for line in lines if f"cmp-{i:03d}" in line)
        money = f"{123_456.78 * i / 8:,.2f}"
        assert money in row, (money, row)  # spend in full, thousands separators and all


def test_80_columns_drop_the_optional_columns_200_show_all() -> None:
    narrow, wide = _header(render(80)), _header(render(200))
    assert wide == [c.header for c in COLUMNS]
    assert "revision" not in narrow  # the first to go
    assert narrow == [c.header for c in COLUMNS if c.header in narrow]  # display order kept


def test_columns_go_in_priority_order() -> None:
    rows = list(_campaigns().values())
    seen = [len(fit_columns(rows, width)) for width in range(60, 201)]
    assert seen == sorted(seen)  # a wider terminal never shows fewer columns
    kept_at = {
        c.header: min(w for w in range(60, 201) if c in fit_columns(rows, w)) for c in COLUMNS
    }
    assert kept_at["revision"] >= kept_at["CTR"] >= kept_at["forecast"] >= kept_at["window ROI"]


def test_the_revision_column_is_not_called_rev() -> None:
    assert "rev" not in _header(render(200))
    assert "revision" in _header(render(200))


@pytest.mark.parametrize("value", [-0.004, -0.0, 0.0, 0.004])
def test_percentages_that_round_to_zero_have_no_sign(value: float) -> None:
    assert _pct(value) == "0%"


def test_percentages_keep_their_sign_otherwise() -> None:
    assert (_pct(-0.25), _pct(0.25), _pct(None)) == ("-25%", "+25%", "—")


def test_plain_lines_name_every_value() -> None:
    lines = plain_lines(_campaigns(2))
    assert len(lines) == 2
    assert lines[0].startswith("cmp-001 spend=61,728.39 revenue=234,567.89 ROI=+280% ")
    assert "nowcast=0%" in lines[0]
    assert "revision=123456" in lines[0]
    assert "\x1b" not in "".join(lines)
