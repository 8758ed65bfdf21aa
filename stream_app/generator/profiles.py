"""Campaign profiles and the scenario knobs that shape synthetic traffic.

Profiles are drawn from the scenario seed alone (not from its duration or shares), so the
same seed always describes the same campaigns, and they differ on purpose: ROAS targets
are spread evenly between clearly losing and clearly profitable before being shuffled.
"""

from __future__ import annotations

import math
import random
from typing import Literal

import msgspec

Channel = Literal["search", "social", "display", "video"]
BadReason = Literal[
    "bad_json", "schema_violation", "unknown_currency", "negative_amount", "non_finite_amount"
]

BAD_REASONS: tuple[BadReason, ...] = (
    "bad_json",
    "schema_violation",
    "unknown_currency",
    "negative_amount",
    "non_finite_amount",
)
CHANNELS: tuple[Channel, ...] = ("search", "social", "display", "video")

# channel -> (cpc range, ctr range, cvr range); roughly what ad platforms report
_CHANNEL_BASE: dict[Channel, tuple[tuple[float, float], ...]] = {
    "search": ((0.8, 2.5), (0.03, 0.07), (0.03, 0.08)),
    "social": ((0.3, 1.2), (0.008, 0.02), (0.015, 0.04)),
    "display": ((0.15, 0.6), (0.002, 0.008), (0.005, 0.02)),
    "video": ((0.2, 0.9), (0.005, 0.015), (0.008, 0.03)),
}
_PRODUCTS = (
    "running shoes",
    "wireless headphones",
    "coffee grinder",
    "yoga mat",
    "travel backpack",
    "smartwatch",
    "desk lamp",
    "skincare set",
    "board game",
    "water bottle",
    "phone case",
    "blender",
)
_ROAS_RANGE = (0.45, 3.0)
EARLY_CONVERSION_MAX_SECONDS = 5.0
"""Upper bound on how far (event time) a conversion sent before its click can be ahead."""


class CampaignProfile(msgspec.Struct, frozen=True, kw_only=True):
    """The hidden truth about one campaign; money in the campaign's own ``currency``."""

    campaign_id: str
    channel: Channel
    currency: str
    cpc: float
    ctr: float
    cvr: float
    aov: float
    aov_spread: float
    review_tone: float
    product: str
    traffic_weight: float
    creatives: tuple[float, ...]
    """p(conversion) multiplier per creative (mean 1), so creatives are worth learning."""

    @property
    def expected_roas(self) -> float:
        """Revenue per unit of spend the profile is built for (before any collapse)."""
        return self.cvr * self.aov / self.cpc


def draw_profiles(seed: int, n_campaigns: int) -> list[CampaignProfile]:
    """Deterministic, clearly different campaigns: some profitable, some losing money.

    >>> [p.campaign_id for p in draw_profiles(1, 3)]
    ['cmp-001', 'cmp-002', 'cmp-003']
    >>> draw_profiles(1, 4) == draw_profiles(1, 4)
    True
    """
    rng = random.Random(f"profiles-{seed}")
    lo, hi = _ROAS_RANGE
    steps = max(n_campaigns - 1, 1)
    targets = [lo + (hi - lo) * i / steps for i in range(n_campaigns)]
    rng.shuffle(targets)
    channels = list(CHANNELS)
    rng.shuffle(channels)
    profiles = []
    for i in range(n_campaigns):
        channel = channels[i % len(channels)]
        (cpc_lo, cpc_hi), (ctr_lo, ctr_hi), (cvr_lo, cvr_hi) = _CHANNEL_BASE[channel]
        cpc = round(rng.uniform(cpc_lo, cpc_hi), 2)
        cvr = rng.uniform(cvr_lo, cvr_hi)
        roas = targets[i] * rng.uniform(0.95, 1.05)
        raw = [rng.uniform(0.6, 1.4) for _ in range(3)]
        mean = sum(raw) / len(raw)
        profiles.append(
            CampaignProfile(
                campaign_id=f"cmp-{i + 1:03d}",
                channel=channel,
                # mostly USD; a fixed pattern so even small scenarios mix currencies
                currency={2: "EUR", 5: "GBP"}.get(i % 6, "USD"),
                cpc=cpc,
                ctr=round(rng.uniform(ctr_lo, ctr_hi), 4),
                cvr=round(cvr, 4),
                aov=round(roas * cpc / cvr, 2),
                aov_spread=round(rng.uniform(0.2, 0.6), 3),
                # loosely follows profitability, with noise so tone alone does not give ROI
                review_tone=round(max(-1.0, min(1.0, (roas - 1.3) * 0.6 + rng.gauss(0, 0.3))), 3),
                product=rng.choice(_PRODUCTS),
                traffic_weight=round(rng.uniform(0.5, 2.0), 3),
                creatives=tuple(round(r / mean, 3) for r in raw),
            )
        )
    return profiles


class Scenario(msgspec.Struct, frozen=True, kw_only=True):
    """Every knob of one synthetic run; the same scenario yields byte-identical traffic.

    Shares are probabilities per generated event (``bad_share``, ``duplicate_share``,
    ``late_share``) or per conversion (``outside_window_share``, ``early_conversion_share``,
    ``orphan_share``). The last three fields must match the processor's settings for the
    ground truth to be exact; they also bound lateness so that exactness is reachable.
    """

    seed: int = 7
    n_campaigns: int = 8
    start_ts: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    duration_seconds: float = 600.0
    clicks_per_second: float = 40.0
    spend_interval_seconds: float = 5.0
    reviews_per_minute: float = 3.0
    """Per campaign."""

    conversion_delay_mean_seconds: float = 180.0
    conversion_delay_cap_seconds: float = 1800.0
    outside_window_share: float = 0.02
    early_conversion_share: float = 0.02
    orphan_share: float = 0.02

    late_share: float = 0.03
    late_max_seconds: float = 300.0
    duplicate_share: float = 0.01
    duplicate_max_delay_seconds: float = 30.0
    bad_share: float = 0.01
    bad_reasons: tuple[BadReason, ...] = BAD_REASONS

    collapse_campaign: str | None = None
    collapse_at: float = 300.0
    """Seconds after ``start_ts``."""
    collapse_factor: float = 0.2
    """Multiplier on p(conversion) from ``collapse_at`` on: 0.2 = drops to a fifth."""

    attribution_window_seconds: float = 7 * 86400.0
    conversion_grace_seconds: float = 3600.0
    dedup_horizon_seconds: float = 86400.0

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid scenario: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        out: list[str] = []
        for name in (
            "outside_window_share",
            "early_conversion_share",
            "orphan_share",
            "late_share",
            "duplicate_share",
            "bad_share",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                out.append(f"{name} must be in [0, 1]")
        if self.outside_window_share + self.early_conversion_share > 1.0:
            out.append("outside_window_share + early_conversion_share must be <= 1")
        for name in (
            "duration_seconds",
            "spend_interval_seconds",
            "conversion_delay_mean_seconds",
            "conversion_delay_cap_seconds",
            "attribution_window_seconds",
            "dedup_horizon_seconds",
        ):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                out.append(f"{name} must be positive")
        if not 1 <= self.n_campaigns <= 999:
            out.append("n_campaigns must be in [1, 999]")
        if not (self.clicks_per_second >= 0 and self.reviews_per_minute >= 0):
            out.append("rates must not be negative")
        if not (math.isfinite(self.start_ts) and self.start_ts >= 0):
            out.append("start_ts must be a non-negative epoch time")
        if not (self.late_max_seconds >= 1.0 and self.duplicate_max_delay_seconds >= 0.1):
            out.append("late_max_seconds >= 1 and duplicate_max_delay_seconds >= 0.1 required")
        if not 0.0 <= self.collapse_factor <= 1.0:
            out.append("collapse_factor must be in [0, 1]")
        if self.collapse_campaign is not None and self.collapse_campaign not in {
            f"cmp-{i + 1:03d}" for i in range(self.n_campaigns)
        }:
            out.append(f"collapse_campaign {self.collapse_campaign!r} is not one of the campaigns")
        if not set(self.bad_reasons) <= set(BAD_REASONS) or (
            self.bad_share > 0 and not self.bad_reasons
        ):
            out.append(f"bad_reasons must be a non-empty subset of {BAD_REASONS}")
        # A conversion that waits for a late click must not outlive the grace period, and an
        # out-of-window conversion must arrive while its click is still remembered.
        need = self.late_max_seconds if self.late_share > 0 else 0.0
        need += EARLY_CONVERSION_MAX_SECONDS if self.early_conversion_share > 0 else 0.0
        need += 1.0 if self.outside_window_share > 0 else 0.0
        if need > self.conversion_grace_seconds:
            out.append(
                f"late_max_seconds (+{EARLY_CONVERSION_MAX_SECONDS:g} s for early conversions,"
                f" +1 s for out-of-window ones) must fit in conversion_grace_seconds"
                f" ({self.conversion_grace_seconds:g})"
            )
        resend = self.late_max_seconds + EARLY_CONVERSION_MAX_SECONDS
        if resend + self.duplicate_max_delay_seconds > self.dedup_horizon_seconds:
            out.append("late_max + duplicate_max_delay must fit in dedup_horizon_seconds")
        return out

    @property
    def end_ts(self) -> float:
        return self.start_ts + self.duration_seconds

    @property
    def collapse_ts(self) -> float | None:
        """Event time the collapse starts, or ``None`` when no campaign collapses."""
        return None if self.collapse_campaign is None else self.start_ts + self.collapse_at

    @property
    def outside_window_overshoot_max(self) -> float:
        """How far past the attribution window an out-of-window conversion may land.

        Bounded by what the processor still remembers: a click is forgotten once the
        watermark passes its time + attribution window + grace period.
        """
        late = self.late_max_seconds if self.late_share > 0 else 0.0
        return max(1.0, min(300.0, self.conversion_grace_seconds - late))

    def profiles(self) -> list[CampaignProfile]:
        return draw_profiles(self.seed, self.n_campaigns)
