"""A scenario's clicks with their delayed labels and true probabilities, for model evaluation."""

from __future__ import annotations

from ..domain.money import CurrencyTable
from ..learning.replay import Traffic, collect
from ..settings import DEFAULT_RATES
from .profiles import Scenario
from .traffic import ClickTruth, TrafficGenerator


def labelled_traffic(scenario: Scenario, label_window: float) -> Traffic:
    """Generate ``scenario`` in memory; each click gets its label and the oracle's p."""
    truths: list[ClickTruth] = []
    generator = TrafficGenerator(scenario, on_click=truths.append)
    table = CurrencyTable(DEFAULT_RATES, "USD")
    return collect(generator, truths, label_window, table.to_reporting)
