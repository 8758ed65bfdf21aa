"""Bounded label values: the first N campaigns keep their id, the rest become ``other``."""

from __future__ import annotations

OTHER = "other"


class LabelBudget:
    """Hands out at most ``limit`` distinct label values, first come first served.

    Examples
    --------
    >>> budget = LabelBudget(2)
    >>> [budget.label(c) for c in ["a", "b", "c", "a"]]
    ['a', 'b', 'other', 'a']
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: set[str] = set()

    def label(self, value: str) -> str:
        if value in self._kept:
            return value
        if len(self._kept) < self.limit:
            self._kept.add(value)
            return value
        return OTHER
