"""Progressive (test-then-train) metrics with bounded memory, and the model state codec.

River's ``metrics.ROCAUC`` approximates the curve with a handful of thresholds, and an exact
AUC over every score seen would grow without bound. :class:`RankAUC` is exact on scores
quantised to ``BINS`` logit bins (0.01 wide: scores closer than that count as ties), costs
O(log BINS) per update through Fenwick trees, and optionally forgets labels older than a
window, which gives the rolling AUC used to watch drift and recovery.
"""

from __future__ import annotations

import base64
import math
import pickle
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

BINS = 2048
LOGIT_RANGE = 10.0
"""Scores are binned on the logit scale over [-10, 10]; outside it they share the end bins."""


def score_bin(p: float) -> int:
    """The bin of a probability: equal bins on the logit scale, clamped at the ends.

    >>> score_bin(0.5), score_bin(0.0), score_bin(1.0), score_bin(float("nan"))
    (1024, 0, 2047, 0)
    """
    if not p > 0.0:  # also NaN
        return 0
    if p >= 1.0:
        return BINS - 1
    logit = math.log(p / (1.0 - p))
    b = int((logit + LOGIT_RANGE) * (BINS / (2 * LOGIT_RANGE)))
    return 0 if b < 0 else BINS - 1 if b >= BINS else b


class _Fenwick:
    """Counts per bin with O(log n) prefix sums."""

    __slots__ = ("counts", "tree")

    def __init__(self, n: int) -> None:
        self.tree = [0] * (n + 1)
        self.counts = [0] * n

    def add(self, i: int, delta: int) -> None:
        self.counts[i] += delta
        i += 1
        tree, n = self.tree, len(self.tree)
        while i < n:
            tree[i] += delta
            i += i & -i

    def below(self, i: int) -> int:
        """How many items sit in bins strictly below ``i``."""
        total, tree = 0, self.tree
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total


class RankAUC:
    """Exact ROC AUC of binned scores, since the start or over the last ``window`` labels.

    Twice the number of concordant pairs (ties count one) is kept as an integer, so the
    value matches a batch computation on the same bins exactly, whatever the order.

    >>> auc = RankAUC()
    >>> for y, p in [(True, 0.9), (False, 0.1), (False, 0.8), (True, 0.4)]:
    ...     auc.update(y, p)
    >>> auc.get()
    0.75
    """

    def __init__(self, window: int | None = None) -> None:
        self.window = window
        self._pos = _Fenwick(BINS)
        self._neg = _Fenwick(BINS)
        self.n_pos = 0
        self.n_neg = 0
        self._concordant2 = 0
        self._recent: deque[int] | None = None if window is None else deque()

    def update(self, y: bool, p: float) -> None:
        b = score_bin(p)
        self._add(y, b, 1)
        recent = self._recent
        if recent is not None:
            recent.append(2 * b + int(y))
            if self.window is not None and len(recent) > self.window:
                old = recent.popleft()
                self._add(bool(old & 1), old >> 1, -1)

    def _add(self, y: bool, b: int, sign: int) -> None:
        # Pairs are counted against the other class as it stands without this item.
        if y:
            if sign < 0:
                self._pos.add(b, -1)
                self.n_pos -= 1
            pairs = 2 * self._neg.below(b) + self._neg.counts[b]
            if sign > 0:
                self._pos.add(b, 1)
                self.n_pos += 1
        else:
            if sign < 0:
                self._neg.add(b, -1)
                self.n_neg -= 1
            pairs = 2 * (self.n_pos - self._pos.below(b + 1)) + self._pos.counts[b]
            if sign > 0:
                self._neg.add(b, 1)
                self.n_neg += 1
        self._concordant2 += sign * pairs

    def get(self) -> float | None:
        """The AUC, or ``None`` until both classes have been seen."""
        if not (self.n_pos and self.n_neg):
            return None
        return self._concordant2 / (2 * self.n_pos * self.n_neg)


class MeanTracker:
    """Running mean since the start, plus one over the last ``window`` values.

    >>> m = MeanTracker(window=2)
    >>> for v in (1.0, 2.0, 6.0):
    ...     m.update(v)
    >>> m.mean(), m.rolling_mean()
    (3.0, 4.0)
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.n = 0
        self._total = 0.0
        self._recent: deque[float] = deque(maxlen=window)

    def update(self, value: float) -> None:
        self.n += 1
        self._total += value
        self._recent.append(value)

    def mean(self) -> float | None:
        return self._total / self.n if self.n else None

    def rolling_mean(self) -> float | None:
        # summed on demand (quality() is rare): no running total to drift over months
        return math.fsum(self._recent) / len(self._recent) if self._recent else None


def log_loss(y: bool, p: float, eps: float = 1e-15) -> float:
    """Binary cross-entropy of one prediction, clipped so a confident miss stays finite.

    >>> round(log_loss(True, 0.5), 4), round(log_loss(False, 0.0), 4)
    (0.6931, 0.0)
    """
    p = min(max(p, eps), 1.0 - eps)
    return -math.log(p if y else 1.0 - p)


@dataclass(frozen=True, slots=True)
class ModelQuality:
    """Progressive quality of a model: every label scored against the prediction made
    before it was known. Fields that do not apply to a model are ``None``."""

    samples_seen: int
    auc: float | None
    log_loss: float | None
    rolling_auc: float | None
    mae: float | None
    drifts: int
    rolling_log_loss: float | None = None
    """Over the same last labels as ``rolling_auc`` (``rolling_mae`` for the forecaster)."""
    rolling_mae: float | None = None


def encode_state(obj: Any) -> str:
    """Pickle, zlib and base64: a JSON-storable string for a compacted changelog record.

    Only for state this service wrote itself (unpickling runs code from the payload).
    """
    return base64.b64encode(zlib.compress(pickle.dumps(obj, protocol=5), 6)).decode("ascii")


def decode_state(state: str) -> Any:
    """Inverse of :func:`encode_state`."""
    return pickle.loads(zlib.decompress(base64.b64decode(state)))
