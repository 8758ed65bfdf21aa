"""Additive campaign totals and the ratios derived from them.

Totals are sums, so windows, batches and partitions merge by addition; ratios are derived
at read time and are ``None`` whenever their denominator is zero (never inf or NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Self


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or ``None`` when it is undefined or overflows.

    >>> ratio(3, 4), ratio(1, 0), ratio(1.0, 1e-320)
    (0.75, None, None)
    """
    if not denominator:
        return None
    value = numerator / denominator
    return value if math.isfinite(value) else None


def roi_nowcast(revenue: float, open_expected_revenue: float, spend: float) -> float | None:
    """(revenue so far + expected revenue still to come − spend) / spend.

    ``None`` when spend is zero or any input is not finite (never inf or NaN).

    >>> roi_nowcast(revenue=80.0, open_expected_revenue=40.0, spend=100.0)
    0.2
    >>> roi_nowcast(10.0, 0.0, 0.0) is None, roi_nowcast(10.0, math.nan, 5.0) is None
    (True, True)
    """
    if not (math.isfinite(revenue) and math.isfinite(open_expected_revenue)):
        return None
    if not (math.isfinite(spend) and spend > 0):
        return None
    value = (revenue + open_expected_revenue - spend) / spend
    return value if math.isfinite(value) else None


@dataclass(slots=True)
class Totals:
    """Sums for one campaign over a window or over all time (money in reporting currency).

    Examples
    --------
    >>> t = Totals(spend=100.0, impressions=10_000, clicks=200, conversions=10, revenue=150.0)
    >>> t.roi(), t.roas(), t.cpa(), t.ctr(), t.cvr()
    (0.5, 1.5, 10.0, 0.02, 0.05)
    >>> Totals(revenue=5.0).roi() is None
    True
    """

    spend: float = 0.0
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    revenue: float = 0.0
    reviews: int = 0
    scored_reviews: int = 0
    sentiment_sum: float = 0.0
    negative_reviews: int = 0
    expected_revenue: float = 0.0
    """Σ of the conversion model's expected value over the clicks (at click time)."""
    open_expected_revenue: float = 0.0
    """The part of ``expected_revenue`` from clicks still awaiting their label."""
    p_conversion_sum: float = 0.0

    def add(self, other: Totals) -> None:
        self.spend += other.spend
        self.impressions += other.impressions
        self.clicks += other.clicks
        self.conversions += other.conversions
        self.revenue += other.revenue
        self.reviews += other.reviews
        self.scored_reviews += other.scored_reviews
        self.sentiment_sum += other.sentiment_sum
        self.negative_reviews += other.negative_reviews
        self.expected_revenue += other.expected_revenue
        self.open_expected_revenue += other.open_expected_revenue
        self.p_conversion_sum += other.p_conversion_sum

    def roi(self) -> float | None:
        """(revenue − spend) / spend."""
        return ratio(self.revenue - self.spend, self.spend)

    def roas(self) -> float | None:
        return ratio(self.revenue, self.spend)

    def cpa(self) -> float | None:
        """Cost per acquisition: spend / conversions."""
        return ratio(self.spend, self.conversions)

    def ctr(self) -> float | None:
        return ratio(self.clicks, self.impressions)

    def cvr(self) -> float | None:
        return ratio(self.conversions, self.clicks)

    def sentiment_mean(self) -> float | None:
        """Mean sentiment score in [-1, 1] of the reviews that were scored."""
        return ratio(self.sentiment_sum, self.scored_reviews)

    def negative_share(self) -> float | None:
        return ratio(self.negative_reviews, self.scored_reviews)

    def p_conversion_mean(self) -> float | None:
        return ratio(self.p_conversion_sum, self.clicks)

    def roi_nowcast(self) -> float | None:
        """ROI once the open clicks convert as the model expects.

        (revenue + expected value of clicks still open − spend) / spend: realised ROI of a
        recent window is low until its attribution window closes; this is not.

        >>> Totals(spend=100.0, revenue=50.0, open_expected_revenue=70.0).roi_nowcast()
        0.2
        """
        return roi_nowcast(self.revenue, self.open_expected_revenue, self.spend)

    def to_list(self) -> list[int | float]:
        """Compact positional form for state changelogs and deltas (field order)."""
        return [
            self.spend,
            self.impressions,
            self.clicks,
            self.conversions,
            self.revenue,
            self.reviews,
            self.scored_reviews,
            self.sentiment_sum,
            self.negative_reviews,
            self.expected_revenue,
            self.open_expected_revenue,
            self.p_conversion_sum,
        ]

    @classmethod
    def from_list(cls, values: list[int | float]) -> Self:
        (
            spend,
            impressions,
            clicks,
            conversions,
            revenue,
            reviews,
            scored,
            sentiment,
            negative,
            expected,
            open_expected,
            p_sum,
        ) = values
        return cls(
            float(spend),
            int(impressions),
            int(clicks),
            int(conversions),
            float(revenue),
            int(reviews),
            int(scored),
            float(sentiment),
            int(negative),
            float(expected),
            float(open_expected),
            float(p_sum),
        )


TOTAL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Totals))
