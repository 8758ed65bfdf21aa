"""Named changes to the traffic, each with its ground truth, to prove ROI-drop alerts on.

A :class:`Shocks` is passed to :class:`~stream_app.generator.TrafficGenerator` next to the
scenario (``TrafficGenerator(scenario, shocks=...)``); without one the generator is
byte-for-byte what it was. Each named scenario (:data:`SCENARIOS`) says what changed,
for which campaign, from when, and which ROI driver an explanation must name first
(``None``: nothing changed, so any alert is a false one). docs/alerts.md has the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from .profiles import CampaignProfile

Driver = Literal["ctr", "cvr", "order_value", "cpm"]
DAY = 86400.0

COMPLAINT_THEME = (
    "The battery overheats and the charger smells of burnt plastic.",
    "The battery died and the charger got too hot to touch.",
    "It overheats while charging and the battery swelled.",
)
"""The new complaint of the sentiment-crash scenario: words no other review uses."""


@dataclass(frozen=True, slots=True)
class Shocks:
    """Multipliers on one campaign's traffic from ``start + at`` on (1 = unchanged).

    ``ramp_seconds`` > 0 moves linearly from 1 to the factor over that long. Seasonality
    (``daily_amplitude``) applies to every campaign: clicks × (1 + a sin(2π t / day)) and
    CVR × (1 + a/3 sin(…)), so ROI moves slowly over the day.
    """

    campaign_id: str | None = None
    at: float = 0.0
    start_ts: float = 0.0
    cvr: float = 1.0
    cpc: float = 1.0
    order_value: float = 1.0
    clicks: float = 1.0
    tone_shift: float = 0.0
    complaint_theme: bool = False
    ramp_seconds: float = 0.0
    daily_amplitude: float = 0.0

    def _weight(self, campaign_id: str, ts: float) -> float:
        """0 before the change (or for another campaign), 1 once fully in."""
        if campaign_id != self.campaign_id:
            return 0.0
        since = ts - self.start_ts - self.at
        if since < 0:
            return 0.0
        if self.ramp_seconds > 0:
            return min(1.0, since / self.ramp_seconds)
        return 1.0

    def _factor(self, factor: float, campaign_id: str, ts: float) -> float:
        return 1.0 + (factor - 1.0) * self._weight(campaign_id, ts)

    def _season(self, ts: float) -> float:
        return math.sin(2 * math.pi * (ts - self.start_ts) / DAY)

    def cvr_factor(self, campaign_id: str, ts: float) -> float:
        season = 1.0 + self.daily_amplitude / 3 * self._season(ts)
        return self._factor(self.cvr, campaign_id, ts) * season

    def cpc_factor(self, campaign_id: str, ts: float) -> float:
        return self._factor(self.cpc, campaign_id, ts)

    def order_value_factor(self, campaign_id: str, ts: float) -> float:
        return self._factor(self.order_value, campaign_id, ts)

    def click_factor(self, campaign_id: str, ts: float) -> float:
        season = 1.0 + self.daily_amplitude * self._season(ts)
        return self._factor(self.clicks, campaign_id, ts) * season

    def tone(self, campaign_id: str, ts: float) -> float:
        return self.tone_shift * self._weight(campaign_id, ts)

    def theme(self, campaign_id: str, ts: float) -> bool:
        return self.complaint_theme and self._weight(campaign_id, ts) > 0


@dataclass(frozen=True, slots=True)
class NamedScenario:
    name: str
    description: str
    shocks: Shocks
    true_driver: Driver | None
    """What an explanation must name first; ``None``: no ROI change, every alert is false."""
    theme: bool = False
    """Whether the new complaint theme must be among the topics that grew."""


def target_campaign(profiles: list[CampaignProfile]) -> str:
    """The campaign the changes hit: the one with the most conversions per second, so
    that the change is visible within an hour at the evaluation's click rates."""
    return max(profiles, key=lambda p: (p.traffic_weight * p.cvr, p.campaign_id)).campaign_id


def scenarios(campaign_id: str, start_ts: float, at: float) -> dict[str, NamedScenario]:
    """Every named scenario, the change (if any) on ``campaign_id`` at ``start_ts + at``."""

    def hit(**kw: float | bool) -> Shocks:
        return Shocks(campaign_id=campaign_id, at=at, start_ts=start_ts, **kw)  # type: ignore[arg-type]

    rows = [
        NamedScenario("cvr-collapse", "CVR × 0.3", hit(cvr=0.3), "cvr"),
        NamedScenario("cpc-spike", "CPC × 2.5 (impressions unchanged)", hit(cpc=2.5), "cpm"),
        NamedScenario("order-value-drop", "order value × 0.4", hit(order_value=0.4), "order_value"),
        NamedScenario(
            "sentiment-crash",
            "review tone −1.5 with a new complaint theme; CVR × 0.5 as buyers read them",
            hit(tone_shift=-1.5, complaint_theme=True, cvr=0.5),
            "cvr",
            theme=True,
        ),
        NamedScenario("noise", "nothing changes", Shocks(start_ts=start_ts), None),
        NamedScenario(
            "seasonality",
            "daily cycle: clicks ± 60 %, CVR ± 20 %, every campaign",
            Shocks(start_ts=start_ts, daily_amplitude=0.6),
            None,
        ),
        NamedScenario(
            "spend-ramp",
            "clicks and spend × 3 over 2 h, same ROAS",
            hit(clicks=3.0, ramp_seconds=7200.0),
            None,
        ),
    ]
    return {r.name: r for r in rows}
