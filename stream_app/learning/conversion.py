"""p(conversion) and expected value of a click, learnt online from delayed labels.

The pipeline was chosen by measurement on the generator's traffic (docs/online-models.md):
a River logistic regression with the FTRL-Proximal optimiser (alpha 0.3) on one-hot click
features (:mod:`.features`), learning from every positive and one negative in ten
(weighted ten), for p(conversion); and a per-campaign running mean of order values for
the value. Plain SGD ranked as well but left rare campaigns' p off by up to 2x (one step
size for all coordinates), and no drift detector made recovery from a conversion-rate
collapse faster, so there is none by default.

Labels arrive late (a conversion minutes after its click, a negative only when the label
window passes), so the progressive metrics score each label against the prediction
emitted at click time, which the caller keeps with the pending click.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal

import numpy as np
from river import drift, linear_model, optim, stats

from .features import Features, campaign_of
from .progressive import (
    FloatArray,
    MeanTracker,
    ModelQuality,
    RankAUC,
    config_version,
    decode_state,
    encode_state,
    log_loss,
    log_losses,
    score_bin,
    score_bins,
)

ROLLING_LABELS = 5000
"""Labels in the rolling AUC / log loss: about 150 positives at a 3 % conversion rate."""

DriftAction = Literal["none", "reset", "boost"]


@dataclass(frozen=True, slots=True)
class ClickPrediction:
    p_conversion: float
    expected_value: float
    """p_conversion x predicted order value, in the reporting currency."""


@dataclass(frozen=True, slots=True)
class ConversionConfig:
    """The knobs the comparison in tools/evaluate_models.py varies; defaults are chosen."""

    optimizer: Literal["ftrl", "sgd"] = "ftrl"
    learning_rate: float = 0.3
    """FTRL alpha, or the SGD step size."""
    l2: float = 0.0
    prior_rate: float = 0.02
    """p(conversion) before any learning (the initial bias)."""
    negative_sampling: int = 10
    """Learn from every k-th negative only, weighted k (McMahan et al. 2013, section 6.1):
    the learner's cost is paid for about 1/k of the labels, the loss stays unbiased."""
    drift: DriftAction = "none"
    """What an ADWIN detection triggers (measured: none helps, docs/online-models.md)."""
    drift_signal: Literal["loss", "campaign-residual"] = "campaign-residual"
    """ADWIN on the global log loss, or one ADWIN per campaign on ``converted - predicted``."""
    drift_delta: float = 0.002
    boost_factor: float = 0.01
    """``boost`` on FTRL: its per-coordinate squared-gradient sums are scaled by this."""
    sgd_boost: float = 5.0
    """``boost`` on SGD: the step size is multiplied by this for ``boost_labels`` labels."""
    boost_labels: int = 2000

    @property
    def version(self) -> str:
        """``conversion-ftrl-v1`` for the defaults; other configs get a digest of theirs."""
        return config_version(f"conversion-{self.optimizer}-v1", self, ConversionConfig())


class ValueModel:
    """Order value per campaign: a running mean, with the all-campaign mean as the prior.

    Order values in the traffic depend on the campaign (its product) and nothing else a
    click carries. Measured over 8,622 conversions, its error against the true mean order
    value is 1.25 vs 6.8 for a River linear regression on the click features
    (docs/online-models.md).

    >>> v = ValueModel()
    >>> v.predict("cmp-001")
    0.0
    >>> v.learn("cmp-001", 30.0); v.learn("cmp-002", 10.0)
    >>> v.predict("cmp-001"), v.predict("cmp-009")
    (30.0, 20.0)
    """

    def __init__(self) -> None:
        self._by_campaign: dict[str, stats.Mean] = {}
        self._overall = stats.Mean()

    def predict(self, campaign: str | None) -> float:
        mean = self._by_campaign.get(campaign) if campaign is not None else None
        if mean is not None:
            return float(mean.get())
        return float(self._overall.get())

    def learn(self, campaign: str | None, revenue: float) -> None:
        if not math.isfinite(revenue):
            return
        self._overall.update(revenue)
        if campaign is not None:
            self._by_campaign.setdefault(campaign, stats.Mean()).update(revenue)


class ConversionModel:
    """p(conversion) per click and its expected value; see the module docstring.

    >>> m = ConversionModel()
    >>> m.predict({"campaign_id=cmp-001": 1.0})  # doctest: +ELLIPSIS
    ClickPrediction(p_conversion=0.02..., expected_value=0.0)
    >>> m.learn({"campaign_id=cmp-001": 1.0}, 0.5, converted=True, revenue=40.0)
    >>> m.samples_seen, m.predict({"campaign_id=cmp-001": 1.0}).expected_value > 0
    (1, True)
    """

    def __init__(self, config: ConversionConfig | None = None) -> None:
        self.config = config or ConversionConfig()
        self.version = self.config.version
        self.samples_seen = 0
        self.drifts = 0
        self._negatives = 0
        self._boost_left = 0
        self._classifier = self._new_classifier()
        self._value = ValueModel()
        self._detectors: dict[str, drift.ADWIN] = {}
        self._auc = RankAUC()
        self._rolling_auc = RankAUC(window=ROLLING_LABELS)
        self._loss = MeanTracker(window=ROLLING_LABELS)

    def _new_classifier(self) -> linear_model.LogisticRegression:
        c = self.config
        if c.optimizer == "ftrl":
            opt: optim.base.Optimizer = FTRLProximal(alpha=c.learning_rate, l2=c.l2)
        else:
            opt = optim.SGD(c.learning_rate)
        # the intercept is learnt by the same optimiser through a constant "bias" feature
        return linear_model.LogisticRegression(
            optimizer=opt,
            intercept_lr=0.0,
            intercept_init=math.log(c.prior_rate / (1.0 - c.prior_rate)),
        )

    def p_conversion(self, features: Features) -> float:
        """p(conversion) alone: what the replay and the value-free callers need."""
        proba = self._classifier.predict_proba_one(features | _BIAS)  # type: ignore[no-untyped-call]
        return float(proba[True])

    def predict(self, features: Features) -> ClickPrediction:
        p = self.p_conversion(features)
        return ClickPrediction(p, p * self._value.predict(campaign_of(features)))

    def p_conversion_many(self, features: Sequence[Features]) -> FloatArray:
        """:meth:`p_conversion` of many clicks in one vectorised step (equal up to rounding).

        River's own ``predict_proba_many`` wants a dataframe (pandas or polars, neither a
        dependency here); building one costs more than it saves (measured in
        docs/throughput.md). The maths is River's: the dot product of the features with the
        classifier's public ``weights`` plus its ``intercept``, through its loss's link.
        """
        n = len(features)
        if not n:
            return np.zeros(0)
        # one column per distinct feature; the loops over every key run in C (map, chain)
        columns = {key: i for i, key in enumerate(set(chain.from_iterable(features)))}
        lengths = np.fromiter(map(len, features), dtype=np.intp, count=n)
        index = np.fromiter(
            map(columns.__getitem__, chain.from_iterable(features)),
            dtype=np.intp,
            count=int(lengths.sum()),
        )
        weights = self._classifier.weights
        w = np.array([weights.get(key, 0.0) for key in columns], dtype=np.float64)
        rows = np.repeat(np.arange(n), lengths)
        # float even with no keys at all (bincount of nothing counts in integers)
        logit = np.bincount(rows, weights=w[index], minlength=n).astype(np.float64, copy=False)
        logit += weights.get(_BIAS_KEY, 0.0)
        logit += self._classifier.intercept
        p = np.asarray(self._classifier.loss.mean_func(logit), dtype=np.float64)
        # River's one-at-a-time link saturates beyond |logit| 30; so does this one
        return np.where(logit < -30.0, 0.0, np.where(logit > 30.0, 1.0, p))

    def score_many(
        self, features: Sequence[Features], campaigns: Sequence[str]
    ) -> tuple[list[float], list[float]]:
        """p(conversion) and expected value of many clicks: :meth:`predict` of each, batched.

        ``campaigns[i]`` is the campaign of ``features[i]`` (the caller has it at hand).

        >>> m = ConversionModel()
        >>> m.learn_value({"campaign_id=c": 1.0}, 50.0)
        >>> p, ev = m.score_many([{"campaign_id=c": 1.0}, {"geo=US": 1.0}], ["c", "d"])
        >>> [round(x, 4) for x in p], [round(x, 4) for x in ev]
        ([0.02, 0.02], [1.0, 1.0])
        """
        p = self.p_conversion_many(features)
        value = self._value.predict
        values = {c: value(c) for c in set(campaigns)}
        expected = p * np.array([values[c] for c in campaigns], dtype=np.float64)
        return p.tolist(), expected.tolist()

    def order_value(self, campaign: str | None) -> float:
        """The predicted order value of a conversion of ``campaign`` (reporting currency)."""
        return self._value.predict(campaign)

    def learn_value(self, features: Features, revenue: float) -> None:
        """An order value, as soon as its conversion is known.

        Order values carry no click-time bias, so the value model need not wait for the
        click's label; :meth:`learn` then gets ``revenue=None`` for that click.
        """
        self._value.learn(campaign_of(features), revenue)

    def learn(
        self, features: Features, predicted: float, converted: bool, revenue: float | None
    ) -> None:
        """One delayed label; metrics first, with the prediction emitted at click time.

        A ``predicted`` outside [0, 1] (a corrupt pending record) is not scored, but the
        label is still learnt.
        """
        loss = 0.0
        if 0.0 <= predicted <= 1.0:  # also False for NaN
            loss = log_loss(converted, predicted)
            b = score_bin(predicted)
            self._auc.add(converted, b)
            self._rolling_auc.add(converted, b)
            self._loss.update(loss)
        k = self.config.negative_sampling
        if converted:
            self._classifier.learn_one(features | _BIAS, True)
        else:
            self._negatives += 1
            if self._negatives % k == 0:
                self._classifier.learn_one(features | _BIAS, False, w=float(k))
        if converted and revenue is not None:
            self._value.learn(campaign_of(features), revenue)
        self.samples_seen += 1
        if self.config.drift != "none":
            self._watch(features, converted, predicted, loss)
        if self._boost_left:
            self._boost_left -= 1
            if not self._boost_left:
                self._classifier.optimizer.lr = optim.schedulers.Constant(self.config.learning_rate)

    def learn_many(
        self, features: Sequence[Features], predicted: Sequence[float], converted: Sequence[bool]
    ) -> None:
        """:meth:`learn` of each label in order (``revenue=None``), with the metrics vectorised.

        The classifier gets the same ``learn_one`` calls in the same order as the loop (every
        positive and every k-th negative), so it ends in the same state; the metrics equal
        the loop's up to float rounding. With a drift detector the loop itself runs (a
        detection changes the learner between two labels).
        """
        if self.config.drift != "none" or self._boost_left:
            for f, p_i, y_i in zip(features, predicted, converted, strict=True):
                self.learn(f, p_i, y_i, None)
            return
        n = len(features)
        if not n:
            return
        pred = np.asarray(predicted, dtype=np.float64)
        y = np.asarray(converted, dtype=np.bool_)
        ok = (pred >= 0.0) & (pred <= 1.0)  # also False for NaN
        scored_p, scored_y = pred[ok], y[ok]
        bins = score_bins(scored_p)
        self._auc.add_many(scored_y, bins)
        self._rolling_auc.add_many(scored_y, bins)
        self._loss.update_many(log_losses(scored_y, scored_p))
        k = self.config.negative_sampling
        negative = ~y
        nth_negative = self._negatives + np.cumsum(negative)
        learnt = y | (negative & (nth_negative % k == 0))
        self._negatives += int(np.count_nonzero(negative))
        learn_one = self._classifier.learn_one
        weight = float(k)
        for i in np.flatnonzero(learnt).tolist():
            if converted[i]:
                learn_one(features[i] | _BIAS, True)
            else:
                learn_one(features[i] | _BIAS, False, w=weight)
        self.samples_seen += n

    def _watch(self, features: Features, converted: bool, predicted: float, loss: float) -> None:
        if self.config.drift_signal == "loss":
            key, value = "", loss
        else:
            key, value = campaign_of(features) or "", float(converted) - predicted
        detector = self._detectors.get(key)
        if detector is None:
            detector = self._detectors[key] = _adwin(self.config.drift_delta)
        detector.update(value)  # type: ignore[no-untyped-call]
        if detector.drift_detected:
            self.drifts += 1
            self._adapt()

    def _adapt(self) -> None:
        if self.config.drift == "reset":
            self._classifier = self._new_classifier()
            return
        opt = self._classifier.optimizer
        if isinstance(opt, optim.FTRLProximal):
            _boost_ftrl(opt, self.config.boost_factor)
        else:
            boosted = self.config.learning_rate * self.config.sgd_boost
            opt.lr = optim.schedulers.Constant(boosted)
            self._boost_left = self.config.boost_labels

    def quality(self) -> ModelQuality:
        return ModelQuality(
            samples_seen=self.samples_seen,
            auc=self._auc.get(),
            log_loss=self._loss.mean(),
            rolling_auc=self._rolling_auc.get(),
            mae=None,
            drifts=self.drifts,
            rolling_log_loss=self._loss.rolling_mean(),
        )

    def to_state(self) -> str:
        return encode_state(self)

    @classmethod
    def from_state(cls, state: str) -> ConversionModel:
        model = decode_state(state)
        if not isinstance(model, cls):
            raise TypeError(f"state holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        opt = self._classifier.optimizer
        if type(opt) is optim.FTRLProximal:  # a state written before FTRLProximal below
            opt.__class__ = FTRLProximal


class FTRLProximal(optim.FTRLProximal):
    """River's FTRL-Proximal, the same update step for step, without its per-call overhead.

    River's step calls ``np.sign`` on a Python float for every feature (about 0.7 µs each)
    and first tries a vector step that raises ``NotImplementedError`` on every call; this
    uses the same arithmetic in plain floats, so the weights come out bit for bit the same
    (``tests/unit/learning/test_batched.py``) at about a third of the cost of a learn.
    """

    def _step_with_vector(self, w: Any, g: Any) -> Any:
        return self._step_with_dict(w, g)

    def _step_with_dict(self, w: Any, g: Any) -> Any:
        alpha, beta, l1, l2 = self.alpha, self.beta, self.l1, self.l2
        z, n = self.z, self.n
        for i in g:
            zi = z[i]
            if abs(zi) > l1:
                sign = 1.0 if zi > 0 else -1.0 if zi < 0 else 0.0
                w[i] = -(((beta + n[i] ** 0.5) / alpha + l2) ** -1) * (zi - sign * l1)
        w_is_array = isinstance(w, np.ndarray)
        for i, gi in g.items():
            ni = n[i]
            s = ((ni + gi**2) ** 0.5 - ni**0.5) / alpha
            z[i] += gi - s * (w[i] if w_is_array else w.get(i, 0))
            n[i] = ni + gi**2
        return w


_BIAS_KEY = "bias"
_BIAS: Features = {_BIAS_KEY: 1.0}


def _adwin(delta: float) -> drift.ADWIN:
    return drift.ADWIN(delta=delta)  # type: ignore[no-untyped-call]


def _boost_ftrl(opt: optim.FTRLProximal, factor: float) -> None:
    """Raise FTRL's per-coordinate learning rates without moving the current weights.

    FTRL's rate for a coordinate is alpha / (beta + sqrt(n)); after a long stable period n
    is large and the model adapts slowly. Scaling n down and z by the matching ratio keeps
    w = -z / ((beta + sqrt(n)) / alpha + l2) (with l1 = 0) where it is.
    """
    a, b, l2 = opt.alpha, opt.beta, opt.l2
    for key, n in opt.n.items():
        new_n = n * factor
        old_denominator = (b + math.sqrt(n)) / a + l2
        new_denominator = (b + math.sqrt(new_n)) / a + l2
        opt.n[key] = new_n
        opt.z[key] *= new_denominator / old_denominator
