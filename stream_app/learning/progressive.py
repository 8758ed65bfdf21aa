"""Progressive (test-then-train) metrics with bounded memory, and the model state codec.

River's ``metrics.ROCAUC`` approximates the curve with a handful of thresholds, and an exact
AUC over every score seen would grow without bound. :class:`RankAUC` is exact on scores
quantised to ``BINS`` logit bins (0.01 wide: scores closer than that count as ties), costs
O(1) per update and a fixed few kilobytes, and optionally forgets labels older than a
window, which gives the rolling AUC used to watch drift and recovery.
"""

from __future__ import annotations

import base64
import hashlib
import math
import pickle
import zlib
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

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


def score_bins(p: FloatArray) -> NDArray[np.intp]:
    """:func:`score_bin` of many probabilities at once.

    >>> score_bins(np.array([0.5, 0.0, 1.0, float("nan")])).tolist()
    [1024, 0, 2047, 0]
    """
    inside = (p > 0.0) & (p < 1.0)  # NaN is neither
    q = np.where(inside, p, 0.5)
    with np.errstate(divide="ignore"):
        logit = np.log(q / (1.0 - q))
    b = np.clip(((logit + LOGIT_RANGE) * (BINS / (2 * LOGIT_RANGE))).astype(np.intp), 0, BINS - 1)
    return np.where(inside, b, np.where(p >= 1.0, BINS - 1, 0))


class RankAUC:
    """Exact ROC AUC of binned scores, since the start or over the last ``window`` labels.

    Updates only count labels per score bin (O(1), on the learn path of every label); the
    AUC is summed over the bins when asked for, which is rare (metrics, snapshots). On the
    same bins it equals a batch computation exactly, ties counting one half.

    >>> auc = RankAUC()
    >>> for y, p in [(True, 0.9), (False, 0.1), (False, 0.8), (True, 0.4)]:
    ...     auc.update(y, p)
    >>> auc.get()
    0.75
    """

    def __init__(self, window: int | None = None) -> None:
        self.window = window
        # arrays rather than lists: a snapshot is a few kB of mostly zeros, zlib-friendly
        self._pos = array("Q", bytes(8 * BINS))
        self._neg = array("Q", bytes(8 * BINS))
        self.n_pos = 0
        self.n_neg = 0
        self._ring = array("H")  # 2 * bin + label of the last ``window`` labels
        self._next = 0

    def update(self, y: bool, p: float) -> None:
        self.add(y, score_bin(p))

    def add(self, y: bool, b: int) -> None:
        """``update`` with the score's bin already computed (one bin for several AUCs)."""
        if y:
            self._pos[b] += 1
            self.n_pos += 1
        else:
            self._neg[b] += 1
            self.n_neg += 1
        if self.window is None:
            return
        code = 2 * b + y
        ring = self._ring
        if len(ring) < self.window:
            ring.append(code)
            return
        old = ring[self._next]
        ring[self._next] = code
        self._next = (self._next + 1) % self.window
        if old & 1:
            self._pos[old >> 1] -= 1
            self.n_pos -= 1
        else:
            self._neg[old >> 1] -= 1
            self.n_neg -= 1

    def add_many(self, y: BoolArray, b: NDArray[np.intp]) -> None:
        """:meth:`add` of each label in order, in a few numpy calls; the same counts."""
        pos = np.frombuffer(self._pos, dtype=np.uint64)
        neg = np.frombuffer(self._neg, dtype=np.uint64)
        pos += np.bincount(b[y], minlength=BINS).astype(np.uint64)
        neg += np.bincount(b[~y], minlength=BINS).astype(np.uint64)
        n_pos = int(np.count_nonzero(y))
        self.n_pos += n_pos
        self.n_neg += len(y) - n_pos
        if self.window is None:
            return
        codes = (2 * b + y).astype(np.uint16)
        space = self.window - len(self._ring)
        if space > 0:
            self._ring.extend(codes[:space].tolist())
            codes = codes[space:]
        ring = np.frombuffer(self._ring, dtype=np.uint16)
        for start in range(0, len(codes), self.window):  # each chunk overwrites distinct slots
            chunk = codes[start : start + self.window]
            slots = (self._next + np.arange(len(chunk))) % self.window
            old = ring[slots].astype(np.intp)
            ring[slots] = chunk
            self._next = int((self._next + len(chunk)) % self.window)
            gone = (old & 1).astype(bool)
            pos -= np.bincount(old[gone] >> 1, minlength=BINS).astype(np.uint64)
            neg -= np.bincount(old[~gone] >> 1, minlength=BINS).astype(np.uint64)
            n_gone = int(np.count_nonzero(gone))
            self.n_pos -= n_gone
            self.n_neg -= len(old) - n_gone

    def get(self) -> float | None:
        """The AUC, or ``None`` until both classes have been seen."""
        if not (self.n_pos and self.n_neg):
            return None
        # twice the concordant pairs, as an integer: exact whatever the order of updates
        concordant2 = 0
        negatives_below = 0
        for pos, neg in zip(self._pos, self._neg, strict=True):
            if pos:
                concordant2 += pos * (2 * negatives_below + neg)
            negatives_below += neg
        return concordant2 / (2 * self.n_pos * self.n_neg)


class MeanTracker:
    """Mean since the start, and an exponentially weighted mean over about ``window`` values.

    The recent mean is exponential rather than a true window so the state stays two floats
    (it is snapshotted with the model); until ``window`` values it equals the plain mean.

    >>> m = MeanTracker(window=2)
    >>> for v in (1.0, 2.0, 6.0):
    ...     m.update(v)
    >>> m.mean(), m.rolling_mean()
    (3.0, 3.75)
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.n = 0
        self._total = 0.0
        self._recent = 0.0

    def update(self, value: float) -> None:
        self.n += 1
        self._total += value
        self._recent += (value - self._recent) / min(self.n, self.window)

    def update_many(self, values: FloatArray) -> None:
        """:meth:`update` of each value in order (equal up to float rounding)."""
        warm = max(0, min(len(values), self.window - self.n))
        for v in values[:warm].tolist():  # the plain mean while fewer than ``window``
            self.update(v)
        rest = values[warm:]
        if not len(rest):
            return
        # then an exponential mean with a fixed rate a: r_k = (1-a)^k r_0 + sum a (1-a)^(k-1-i) v_i
        a = 1.0 / self.window
        decay = (1.0 - a) ** np.arange(len(rest) - 1, -1, -1, dtype=np.float64)
        self._recent = float((1.0 - a) ** len(rest) * self._recent + a * np.dot(decay, rest))
        self.n += len(rest)
        self._total += float(rest.sum())

    def mean(self) -> float | None:
        return self._total / self.n if self.n else None

    def rolling_mean(self) -> float | None:
        return self._recent if self.n else None


def log_loss(y: bool, p: float, eps: float = 1e-15) -> float:
    """Binary cross-entropy of one prediction, clipped so a confident miss stays finite.

    >>> round(log_loss(True, 0.5), 4), round(log_loss(False, 0.0), 4)
    (0.6931, 0.0)
    """
    p = min(max(p, eps), 1.0 - eps)
    return -math.log(p if y else 1.0 - p)


def log_losses(y: BoolArray, p: FloatArray, eps: float = 1e-15) -> FloatArray:
    """:func:`log_loss` of many predictions.

    >>> log_losses(np.array([True, False]), np.array([0.5, 0.0])).round(4).tolist()
    [0.6931, 0.0]
    """
    q = np.clip(p, eps, 1.0 - eps)
    return np.asarray(-np.log(np.where(y, q, 1.0 - q)), dtype=np.float64)


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
    """Exponentially weighted over about as many labels as ``rolling_auc`` covers."""
    rolling_mae: float | None = None
    """The forecaster's, weighted the same way."""


def config_version(base: str, config: object, default: object) -> str:
    """``base`` for the default config, else ``base`` plus a digest of the config's repr,
    so a changed pipeline never loads a state written by another (stable across runs).

    >>> config_version("m-v1", 1, 1), config_version("m-v1", 2, 1)
    ('m-v1', 'm-v1-d4735e3a')
    """
    if config == default:
        return base
    return f"{base}-{hashlib.sha256(repr(config).encode()).hexdigest()[:8]}"


def encode_state(obj: Any) -> str:
    """Pickle, zlib and base64: a JSON-storable string for a compacted changelog record.

    Only for state this service wrote itself (unpickling runs code from the payload).
    """
    return base64.b64encode(zlib.compress(pickle.dumps(obj, protocol=5), 6)).decode("ascii")


def decode_state(state: str) -> Any:
    """Inverse of :func:`encode_state`."""
    return pickle.loads(zlib.decompress(base64.b64decode(state)))
