"""Progressive metrics equal their batch formulas after every prefix of random data."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.learning import ConversionModel
from stream_app.learning.progressive import MeanTracker, RankAUC, log_loss, score_bin

# well apart on the logit scale, so binning keeps their order and their ties
SCORES = [0.001, 0.01, 0.03, 0.1, 0.3, 0.5, 0.8, 0.97]
labelled = st.lists(st.tuples(st.booleans(), st.sampled_from(SCORES)), max_size=60)


def batch_auc(pairs: list[tuple[bool, float]]) -> float | None:
    """The textbook definition: P(score of a positive > score of a negative), ties 1/2."""
    pos = [p for y, p in pairs if y]
    neg = [p for y, p in pairs if not y]
    if not (pos and neg):
        return None
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


@given(labelled)
def test_auc_matches_batch_after_every_prefix(pairs: list[tuple[bool, float]]) -> None:
    metric = RankAUC()
    for i, (y, p) in enumerate(pairs):
        metric.update(y, p)
        _same(metric.get(), batch_auc(pairs[: i + 1]))


def _same(got: float | None, expected: float | None) -> None:
    assert (got is None) == (expected is None)
    if got is not None and expected is not None:
        assert math.isclose(got, expected, abs_tol=1e-12)


@given(labelled, st.integers(min_value=1, max_value=10))
def test_rolling_auc_matches_batch_on_the_last_window(
    pairs: list[tuple[bool, float]], window: int
) -> None:
    metric = RankAUC(window=window)
    for i, (y, p) in enumerate(pairs):
        metric.update(y, p)
        _same(metric.get(), batch_auc(pairs[max(0, i + 1 - window) : i + 1]))


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=50))
def test_bins_keep_the_order_of_scores(scores: list[float]) -> None:
    for a, b in itertools.pairwise(scores):
        if a <= b:
            assert score_bin(a) <= score_bin(b)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=50))
def test_mean_tracker_mean_is_the_batch_mean(values: list[float]) -> None:
    m = MeanTracker(window=5)
    for v in values:
        m.update(v)
    assert math.isclose(m.mean() or 0.0, math.fsum(values) / len(values), abs_tol=1e-6)
    if len(values) <= 5:  # the recent mean is exact until the window fills
        assert math.isclose(m.rolling_mean() or 0.0, math.fsum(values) / len(values), abs_tol=1e-6)


@settings(max_examples=30)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from(SCORES), st.sampled_from(["cmp-1", "cmp-2"])),
        min_size=1,
        max_size=40,
    )
)
def test_model_quality_scores_the_predictions_it_was_given(
    labels: list[tuple[bool, float, str]],
) -> None:
    """The model scores each label against ``predicted`` (emitted at click time), not
    against what it would predict now."""
    model = ConversionModel()
    for y, p, campaign in labels:
        model.learn({"campaign_id=" + campaign: 1.0}, p, y, 10.0 if y else None)
    q = model.quality()
    pairs = [(y, p) for y, p, _ in labels]
    assert q.samples_seen == len(labels)
    _same(q.auc, batch_auc(pairs))
    expected_loss = sum(-math.log(p if y else 1 - p) for y, p in pairs) / len(pairs)
    assert math.isclose(q.log_loss or 0.0, expected_loss, rel_tol=1e-12)
    assert q.mae is None
    assert q.drifts == 0


def test_log_loss_is_finite_on_confident_misses() -> None:
    assert math.isfinite(log_loss(True, 0.0))
    assert log_loss(True, 0.0) > log_loss(True, 0.01) > log_loss(True, 0.5)


def test_a_corrupt_prediction_is_not_scored_but_the_label_is_learnt() -> None:
    model = ConversionModel()
    model.learn({"campaign_id=cmp-1": 1.0}, 0.2, True, 10.0)
    model.learn({"campaign_id=cmp-1": 1.0}, math.nan, False, None)
    model.learn({"campaign_id=cmp-1": 1.0}, 0.1, False, None)
    q = model.quality()
    assert q.samples_seen == 3
    assert q.auc == 1.0
    assert q.log_loss == pytest.approx((-math.log(0.2) - math.log(0.9)) / 2)
