"""How bids move traffic: a simple auction response, for closed-loop bidding simulations.

Without a :class:`Market` the generator ignores bids and its output is unchanged. With one,
each campaign's click rate and cost per click follow the multiplier its bidder sets
(docs/bidding.md, "Auction response"):

* clicks per second × ``m ** click_elasticity`` — a higher bid wins more auctions, with
  diminishing returns;
* cost per click × ``m ** cpc_elasticity`` — and pays more for each (second-price auctions
  charge the next bid, which rises as a bid climbs into denser competition).

So ROAS ∝ ``m ** -cpc_elasticity`` and spend ∝ ``m ** (click + cpc elasticity)``; profit
peaks where ROAS = (click + cpc elasticity) / click elasticity (1.75 with the defaults).
A multiplier of 0 is a paused campaign: no clicks, no spend. :class:`Shock` changes a
campaign's conversion rate for a while (a broken landing page, a competitor's sale).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Bids = Callable[[str, float], float]
"""(campaign_id, event time) -> the multiplier the bidder applies then (0: paused)."""


@dataclass(frozen=True, slots=True)
class AuctionResponse:
    """Power-law response of clicks and cost per click to a bid multiplier.

    >>> r = AuctionResponse()
    >>> round(r.clicks(2.0), 3), round(r.cpc(2.0), 3), r.clicks(0.0)
    (1.741, 1.516, 0.0)
    >>> round(r.profit_optimal_roas, 6)
    1.75
    """

    click_elasticity: float = 0.8
    cpc_elasticity: float = 0.6

    def clicks(self, multiplier: float) -> float:
        return multiplier**self.click_elasticity if multiplier > 0 else 0.0

    def cpc(self, multiplier: float) -> float:
        return multiplier**self.cpc_elasticity if multiplier > 0 else 1.0

    @property
    def profit_optimal_roas(self) -> float:
        """The ROAS at which one more unit of spend earns exactly one unit of revenue."""
        return (self.click_elasticity + self.cpc_elasticity) / self.click_elasticity


@dataclass(frozen=True, slots=True)
class Shock:
    """From ``start`` until ``end`` (event time; None: for good) the campaign's conversion
    probability is multiplied by ``factor``."""

    campaign_id: str
    start: float
    end: float | None
    factor: float


@dataclass(frozen=True, slots=True)
class Market:
    """What the generator consults per campaign and spend interval when bids matter."""

    bids: Bids
    response: AuctionResponse = AuctionResponse()
    shocks: tuple[Shock, ...] = ()

    def cvr_factor(self, campaign_id: str, ts: float) -> float:
        factor = 1.0
        for s in self.shocks:
            if s.campaign_id == campaign_id and s.start <= ts and (s.end is None or ts < s.end):
                factor *= s.factor
        return factor
