"""The batched calls (``*_many``) against the one-at-a-time calls they replace (issue 13).

The worker scores each batch of clicks in one call and learns each commit's labels in one
call; the model and its metrics must end where the one-at-a-time loop ends.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.learning import ConversionConfig, ConversionModel, Features
from stream_app.learning.progressive import (
    MeanTracker,
    RankAUC,
    log_loss,
    log_losses,
    score_bin,
    score_bins,
)

from .traffic import small_traffic


def _chunks(n: int, sizes: list[int]) -> list[slice]:
    """``range(n)`` cut into consecutive slices of the given sizes (cycled)."""
    out, start, i = [], 0, 0
    while start < n:
        size = max(1, sizes[i % len(sizes)])
        out.append(slice(start, min(n, start + size)))
        start += size
        i += 1
    return out


probabilities = st.one_of(
    st.floats(min_value=0.0, max_value=1.0),
    st.sampled_from([0.0, 1.0, 1e-300, 1.0 - 1e-16, math.nan, -0.5, 1.5]),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), probabilities), max_size=300),
    st.sampled_from([None, 1, 7, 50]),
    st.lists(st.integers(min_value=1, max_value=120), min_size=1, max_size=6),
)
def test_rank_auc_add_many_keeps_the_counts_of_add(
    labels: list[tuple[bool, float]], window: int | None, sizes: list[int]
) -> None:
    one, many = RankAUC(window), RankAUC(window)
    for y, p in labels:
        one.update(y, p)
    for part in _chunks(len(labels), sizes):
        ys = np.array([y for y, _ in labels[part]], dtype=np.bool_)
        ps = np.array([p for _, p in labels[part]], dtype=np.float64)
        many.add_many(ys, score_bins(ps))
    assert one.get() == many.get()
    assert (one.n_pos, one.n_neg) == (many.n_pos, many.n_neg)
    assert state_of(one) == state_of(many)


def state_of(auc: RankAUC) -> tuple[list[int], list[int], list[int], int]:
    return list(auc._pos), list(auc._neg), list(auc._ring), auc._next


@settings(max_examples=60, deadline=None)
@given(st.lists(probabilities, max_size=200))
def test_score_bins_and_log_losses_equal_the_scalar_versions(ps: list[float]) -> None:
    assert score_bins(np.array(ps, dtype=np.float64)).tolist() == [score_bin(p) for p in ps]
    finite = [p for p in ps if 0.0 <= p <= 1.0]
    for y in (True, False):
        got = log_losses(np.full(len(finite), y), np.array(finite, dtype=np.float64))
        assert got.tolist() == pytest.approx([log_loss(y, p) for p in finite], rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=40.0), max_size=300),
    st.integers(min_value=1, max_value=60),
    st.lists(st.integers(min_value=1, max_value=90), min_size=1, max_size=5),
)
def test_mean_tracker_update_many_equals_update(
    values: list[float], window: int, sizes: list[int]
) -> None:
    one, many = MeanTracker(window), MeanTracker(window)
    for v in values:
        one.update(v)
    for part in _chunks(len(values), sizes):
        many.update_many(np.array(values[part], dtype=np.float64))
    assert many.n == one.n
    for got, want in ((many.mean(), one.mean()), (many.rolling_mean(), one.rolling_mean())):
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def _stream(n: int, seed: int = 5) -> list[tuple[Features, bool]]:
    clicks = small_traffic().clicks[:n]
    rng = random.Random(seed)
    return [(c.features, rng.random() < 0.1) for c in clicks]


@pytest.mark.parametrize("config", [ConversionConfig(), ConversionConfig(optimizer="sgd")])
def test_learn_many_ends_in_the_model_of_the_learn_loop(config: ConversionConfig) -> None:
    stream = _stream(6000)
    one, many = ConversionModel(config), ConversionModel(config)
    predicted = []
    for features, y in stream:
        p = one.p_conversion(features)
        predicted.append(p)
        one.learn(features, p, y, None)
    for part in _chunks(len(stream), [1, 17, 900, 3, 2500]):
        many.learn_many([f for f, _ in stream[part]], predicted[part], [y for _, y in stream[part]])
    assert many._classifier.weights == one._classifier.weights  # the same learn_one calls
    assert many.samples_seen == one.samples_seen
    assert many._negatives == one._negatives
    q1, qn = one.quality(), many.quality()
    assert (qn.auc, qn.rolling_auc) == (q1.auc, q1.rolling_auc)
    assert qn.log_loss == pytest.approx(q1.log_loss, rel=1e-9)
    assert qn.rolling_log_loss == pytest.approx(q1.rolling_log_loss, rel=1e-9)
    # and both keep agreeing after a state round trip
    restored = ConversionModel.from_state(many.to_state())
    assert restored._classifier.weights == one._classifier.weights


def test_learn_many_with_a_drift_detector_is_the_loop() -> None:
    config = ConversionConfig(drift="boost")
    stream = _stream(3000)
    one, many = ConversionModel(config), ConversionModel(config)
    predicted = [0.02 + 0.5 * y for _, y in stream]
    for (features, y), p in zip(stream, predicted, strict=True):
        one.learn(features, p, y, None)
    many.learn_many([f for f, _ in stream], predicted, [y for _, y in stream])
    assert many._classifier.weights == one._classifier.weights
    assert many.quality() == one.quality()


def test_p_conversion_many_is_rivers_predict_proba_one() -> None:
    stream = _stream(4000)
    model = ConversionModel()
    for features, y in stream[:3000]:
        model.learn(features, model.p_conversion(features), y, None)
    batch = [f for f, _ in stream[3000:]] + [{}, {"never=seen": 1.0}]
    got = model.p_conversion_many(batch)
    want = [model.p_conversion(f) for f in batch]
    assert got.tolist() == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert model.p_conversion_many([]).tolist() == []


def test_score_many_is_predict() -> None:
    stream = _stream(2000)
    model = ConversionModel()
    for features, y in stream[:1500]:
        model.learn(features, model.p_conversion(features), y, 30.0 if y else None)
    batch = [f for f, _ in stream[1500:]]
    campaigns = [next(k.split("=", 1)[1] for k in f if k.startswith("campaign_id=")) for f in batch]
    p, ev = model.score_many(batch, campaigns)
    want = [model.predict(f) for f in batch]
    assert p == pytest.approx([w.p_conversion for w in want], rel=1e-12)
    assert ev == pytest.approx([w.expected_value for w in want], rel=1e-12)


def test_ftrl_step_is_rivers_bit_for_bit() -> None:
    from river import optim

    from stream_app.learning.conversion import FTRLProximal

    stream = _stream(5000)
    ours = ConversionModel()
    rivers = ConversionModel()
    assert type(ours._classifier.optimizer) is FTRLProximal
    rivers._classifier.optimizer.__class__ = optim.FTRLProximal
    for features, y in stream:
        for m in (ours, rivers):
            m.learn(features, m.p_conversion(features), y, None)
    assert ours._classifier.weights == rivers._classifier.weights
    assert dict(ours._classifier.optimizer.z) == dict(rivers._classifier.optimizer.z)
    assert dict(ours._classifier.optimizer.n) == dict(rivers._classifier.optimizer.n)
    assert ours._classifier.optimizer.n_iterations == rivers._classifier.optimizer.n_iterations
    # a state written with River's class loads, and learns on with this one
    restored = ConversionModel.from_state(rivers.to_state())
    assert type(restored._classifier.optimizer) is FTRLProximal
    assert restored._classifier.weights == ours._classifier.weights
