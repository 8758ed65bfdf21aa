"""What a correct processor must report for a generated run, counted while generating.

Only first deliveries of valid events count towards campaigns; duplicates and bad events
are tallied separately. Money is in the reporting currency, converted with the same
:class:`~stream_app.domain.money.CurrencyTable` arithmetic the processor uses, so totals
agree to float rounding (the JSON form rounds money to 6 decimals).
"""

from __future__ import annotations

from typing import Literal, Self

import msgspec

from .profiles import CampaignProfile, Scenario

UnattributedReason = Literal["unknown_click", "outside_window"]


class CampaignTruth(msgspec.Struct, kw_only=True):
    """Cumulative totals of one campaign, as ``campaign-roi-latest`` should show them."""

    spend: float = 0.0
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    revenue: float = 0.0
    reviews: int = 0


class UnattributedTruth(msgspec.Struct, kw_only=True):
    count: int = 0
    revenue: float = 0.0


class GroundTruth(msgspec.Struct, kw_only=True):
    """Expected processor totals for one scenario; complete once generation finished."""

    currency: str = "USD"
    attribution_window_seconds: float = 7 * 86400.0
    campaigns: dict[str, CampaignTruth] = msgspec.field(default_factory=dict)
    unattributed: dict[str, UnattributedTruth] = msgspec.field(
        default_factory=lambda: {
            r: UnattributedTruth() for r in ("unknown_click", "outside_window")
        }
    )
    bad_events: dict[str, int] = msgspec.field(default_factory=dict)
    """Per dead-letter reason (``stream_app.domain.validation.Reason`` values)."""
    duplicates: dict[str, int] = msgspec.field(default_factory=dict)
    """Re-sent copies per topic kind (the first delivery is not counted here)."""
    emitted: dict[str, int] = msgspec.field(default_factory=dict)
    """Every record written per topic kind: valid, duplicate and bad alike."""
    scenario: Scenario | None = None
    profiles: list[CampaignProfile] = msgspec.field(default_factory=list)

    # -- accumulation (called by the traffic generator) --------------------------------
    def campaign(self, campaign_id: str) -> CampaignTruth:
        found = self.campaigns.get(campaign_id)
        if found is None:
            found = self.campaigns[campaign_id] = CampaignTruth()
        return found

    def add_unattributed(self, reason: UnattributedReason, revenue: float) -> None:
        entry = self.unattributed[reason]
        entry.count += 1
        entry.revenue += revenue

    def add_bad(self, reason: str) -> None:
        self.bad_events[reason] = self.bad_events.get(reason, 0) + 1

    def add_duplicate(self, kind: str) -> None:
        self.duplicates[kind] = self.duplicates.get(kind, 0) + 1

    def add_emitted(self, kind: str) -> None:
        self.emitted[kind] = self.emitted.get(kind, 0) + 1

    # -- summaries ----------------------------------------------------------------------
    @property
    def total_emitted(self) -> int:
        return sum(self.emitted.values())

    def roi(self, campaign_id: str) -> float | None:
        """(revenue − spend) / spend of one campaign, ``None`` without spend."""
        c = self.campaigns[campaign_id]
        return (c.revenue - c.spend) / c.spend if c.spend else None

    # -- JSON ---------------------------------------------------------------------------
    def rounded(self) -> GroundTruth:
        """A copy with money rounded to 6 decimals, as written to JSON."""
        return msgspec.structs.replace(
            self,
            campaigns={
                cid: msgspec.structs.replace(
                    c, spend=round(c.spend, 6), revenue=round(c.revenue, 6)
                )
                for cid, c in sorted(self.campaigns.items())
            },
            unattributed={
                r: UnattributedTruth(count=u.count, revenue=round(u.revenue, 6))
                for r, u in self.unattributed.items()
            },
            bad_events=dict(sorted(self.bad_events.items())),
            duplicates=dict(sorted(self.duplicates.items())),
            emitted=dict(sorted(self.emitted.items())),
        )

    def to_json(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self.rounded()), indent=2) + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        return msgspec.json.decode(data, type=cls)
