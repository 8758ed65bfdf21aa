"""Money in one reporting currency, through a configured rate table."""

from __future__ import annotations

from collections.abc import Mapping


class UnknownCurrencyError(ValueError):
    """The event's currency has no rate: bad input, never silently treated as 1:1."""


class CurrencyTable:
    """Converts amounts into the reporting currency.

    Examples
    --------
    >>> table = CurrencyTable({"USD": 1.0, "EUR": 1.1}, reporting="USD")
    >>> table.to_reporting(10.0, "EUR")
    11.0
    >>> "GBP" in table
    False
    """

    def __init__(self, rates: Mapping[str, float], reporting: str) -> None:
        if reporting not in rates:
            raise ValueError(f"reporting currency {reporting} has no rate")
        base = rates[reporting]
        # Rates are stored relative to the reporting currency so conversion is one multiply.
        self._factor = {code: rate / base for code, rate in rates.items()}
        self.reporting = reporting

    def __contains__(self, currency: object) -> bool:
        return currency in self._factor

    def to_reporting(self, amount: float, currency: str) -> float:
        try:
            return amount * self._factor[currency]
        except KeyError:
            raise UnknownCurrencyError(currency) from None
