"""Replay generated traffic with delayed labels, as the worker will see it.

A click is scored when it arrives. Its label arrives later: positive at its conversion's
event time, negative once ``label_window`` seconds pass without one. Everything is ordered
by event time, so a prediction only ever uses labels that were known before the click.
Used by ``tools/evaluate_models.py`` and the learning tests; it takes the generator's
records and ``ClickTruth`` side output duck-typed, so this package never imports the
generator (which pulls in the local-Kafka launcher).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from ..domain.events import Click, Conversion, Review, Spend
from .conversion import ClickPrediction, ConversionModel
from .features import Features, click_features
from .forecast import ForecastInputs


class EmittedLike(Protocol):
    @property
    def topic_kind(self) -> str: ...
    @property
    def value(self) -> bytes: ...
    @property
    def bad(self) -> object: ...
    @property
    def duplicate(self) -> bool: ...


class ClickTruthLike(Protocol):
    @property
    def click_id(self) -> str: ...
    @property
    def p_true(self) -> float: ...
    @property
    def expected_value(self) -> float: ...


ToReporting = Callable[[float, str], float]


@dataclass(frozen=True, slots=True)
class LabelledClick:
    click: Click
    features: Features
    p_true: float
    """The generator's true p(conversion): the oracle the model is compared with."""
    true_value: float
    """p_true x mean order value (reporting currency)."""
    converted: bool
    """Converted within the label window."""
    label_ts: float
    """When the label becomes known: the conversion's time, else click ts + window."""
    revenue: float | None
    """Order value in the reporting currency when converted."""


@dataclass(frozen=True, slots=True)
class SpendRow:
    campaign_id: str
    ts: float
    amount: float
    impressions: int


@dataclass(frozen=True, slots=True)
class ReviewRow:
    campaign_id: str
    ts: float
    score: float | None
    """Rating mapped to [-1, 1] (a stand-in for the ONNX sentiment score), or None."""


@dataclass(slots=True)
class Traffic:
    clicks: list[LabelledClick] = field(default_factory=list)
    spend: list[SpendRow] = field(default_factory=list)
    reviews: list[ReviewRow] = field(default_factory=list)
    label_window: float = 1800.0


def collect(
    records: Iterable[EmittedLike],
    truths: Sequence[ClickTruthLike],
    label_window: float,
    to_reporting: ToReporting,
) -> Traffic:
    """Valid first deliveries of one generator run, each click with its delayed label.

    ``truths`` is filled by the generator's ``on_click`` hook while ``records`` is iterated.
    """
    clicks: list[Click] = []
    first_conversion: dict[str, Conversion] = {}
    out = Traffic(label_window=label_window)
    for r in records:
        if r.bad is not None or r.duplicate:
            continue
        kind = r.topic_kind
        if kind == "click":
            clicks.append(msgspec.json.decode(r.value, type=Click))
        elif kind == "conversion":
            cv = msgspec.json.decode(r.value, type=Conversion)
            seen = first_conversion.get(cv.click_id)
            if seen is None or cv.ts < seen.ts:
                first_conversion[cv.click_id] = cv
        elif kind == "spend":
            sp = msgspec.json.decode(r.value, type=Spend)
            amount = to_reporting(sp.amount, sp.currency)
            out.spend.append(SpendRow(sp.campaign_id, sp.ts, amount, sp.impressions))
        elif kind == "review":
            rv = msgspec.json.decode(r.value, type=Review)
            score = None if rv.rating is None else (rv.rating - 3) / 2
            out.reviews.append(ReviewRow(rv.campaign_id, rv.ts, score))
    by_id = {t.click_id: t for t in truths}
    for c in sorted(clicks, key=lambda c: (c.ts, c.click_id)):
        truth = by_id[c.click_id]
        first = first_conversion.get(c.click_id)
        converted = first is not None and first.ts - c.ts <= label_window
        if first is not None and converted:
            label_ts = max(first.ts, c.ts)
            revenue: float | None = to_reporting(first.revenue, first.currency)
        else:
            label_ts, revenue = c.ts + label_window, None
        out.clicks.append(
            LabelledClick(
                c,
                click_features(c),
                truth.p_true,
                truth.expected_value,
                converted,
                label_ts,
                revenue,
            )
        )
    return out


def event_order(clicks: Sequence[LabelledClick]) -> list[tuple[float, int, int]]:
    """``(ts, kind, index)`` sorted by event time; kind 0 = click arrives, 1 = its label."""
    events = [(c.click.ts, 0, i) for i, c in enumerate(clicks)]
    events += [(c.label_ts, 1, i) for i, c in enumerate(clicks)]
    events.sort()
    return events


class Predictor(Protocol):
    """What the replay needs of a conversion model (ConversionModel or a candidate)."""

    def predict(self, features: Features) -> ClickPrediction: ...
    def learn(
        self, features: Features, predicted: float, converted: bool, revenue: float | None
    ) -> None: ...


@dataclass(slots=True)
class ReplayResult:
    predictions: list[float]
    """p(conversion) emitted for each click, before its label was known."""
    expected_values: list[float]
    predict_seconds: float
    learn_seconds: float
    n_learn: int


def replay(
    model: Predictor,
    clicks: Sequence[LabelledClick],
    events: Sequence[tuple[float, int, int]] | None = None,
    on_label: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Test-then-train in event-time order; times predict and learn calls separately."""
    if events is None:
        events = event_order(clicks)
    preds = [0.0] * len(clicks)
    values = [0.0] * len(clicks)
    t_predict = t_learn = 0
    n_learn = 0
    clock = time.perf_counter_ns
    for _, kind, i in events:
        c = clicks[i]
        if kind == 0:
            t0 = clock()
            prediction = model.predict(c.features)
            t_predict += clock() - t0
            preds[i] = prediction.p_conversion
            values[i] = prediction.expected_value
        else:
            t0 = clock()
            model.learn(c.features, preds[i], c.converted, c.revenue)
            t_learn += clock() - t0
            n_learn += 1
            if on_label is not None:
                on_label(i)
    return ReplayResult(preds, values, t_predict / 1e9, t_learn / 1e9, n_learn)


@dataclass(frozen=True, slots=True)
class WindowCase:
    """One campaign window: the forecast inputs at close and the ROI it finally realised."""

    inputs: ForecastInputs
    close_ts: float
    mature_ts: float
    """close_ts + label window: every click's label is known, the ROI is final."""
    realised_roi: float | None
    conversions_final: int


def build_windows(
    traffic: Traffic, expected_values: Sequence[float], window_size: int
) -> list[WindowCase]:
    """Campaign windows of ``traffic`` as the aggregation stage would close them.

    ``expected_values`` are the conversion model's per-click values emitted at click time.
    """
    label_window = traffic.label_window
    Key = tuple[str, float]
    spend: dict[Key, list[float]] = {}
    for s in traffic.spend:
        acc = spend.setdefault((s.campaign_id, _start(s.ts, window_size)), [0.0, 0.0])
        acc[0] += s.amount
        acc[1] += s.impressions
    reviews: dict[Key, list[float]] = {}
    for r in traffic.reviews:
        if r.score is not None:
            reviews.setdefault((r.campaign_id, _start(r.ts, window_size)), []).append(r.score)
    # clicks, conversions so far, revenue so far, expected, open expected, final conv, final rev
    acc_clicks: dict[Key, list[float]] = {}
    for c, ev in zip(traffic.clicks, expected_values, strict=True):
        key = (c.click.campaign_id, _start(c.click.ts, window_size))
        acc = acc_clicks.setdefault(key, [0.0] * 7)
        close = key[1] + window_size
        acc[0] += 1
        acc[3] += ev
        if c.converted:
            acc[5] += 1
            acc[6] += c.revenue or 0.0
        if c.label_ts <= close:
            if c.converted:
                acc[1] += 1
                acc[2] += c.revenue or 0.0
        else:
            acc[4] += ev
    cases: list[WindowCase] = []
    matured: dict[str, list[tuple[float, float]]] = {}
    for key in sorted(set(spend) | set(acc_clicks), key=lambda k: (k[1], k[0])):
        campaign, start = key
        amount, impressions = spend.get(key, [0.0, 0.0])
        n, conv, rev, expected, open_expected, conv_final, rev_final = acc_clicks.get(
            key, [0.0] * 7
        )
        close = start + window_size
        history = matured.get(campaign, [])
        previous = next((roi for ts, roi in reversed(history) if ts <= close), None)
        scores = reviews.get(key)
        inputs = ForecastInputs(
            campaign_id=campaign,
            window_start=start,
            window_size_seconds=window_size,
            spend=amount,
            impressions=int(impressions),
            clicks=int(n),
            conversions=int(conv),
            revenue=rev,
            expected_revenue=expected,
            open_expected_revenue=open_expected,
            sentiment_mean=sum(scores) / len(scores) if scores else None,
            previous_roi=previous,
        )
        realised = (rev_final - amount) / amount if amount > 0 else None
        cases.append(WindowCase(inputs, close, close + label_window, realised, int(conv_final)))
        if realised is not None:
            history.append((close + label_window, realised))
            matured[campaign] = history
    return cases


def _start(ts: float, size: int) -> float:
    return math.floor(ts / size) * size


def replay_batched(
    model: ConversionModel,
    clicks: Sequence[LabelledClick],
    events: Sequence[tuple[float, int, int]] | None = None,
    batch: int = 1250,
) -> ReplayResult:
    """:func:`replay` the way the worker calls the model: in batches of ``batch`` events.

    New clicks are scored in one :meth:`ConversionModel.score_many` call and the labels
    that became known meanwhile are learnt in one :meth:`ConversionModel.learn_many` call
    at the end of each batch (a commit), so a click is scored without the labels of its own
    batch, as in the worker. Order values are learnt at the batch's positives before
    their labels (the worker learns them at the conversion).
    """
    if events is None:
        events = event_order(clicks)
    preds = [0.0] * len(clicks)
    values = [0.0] * len(clicks)
    t_predict = t_learn = 0
    n_learn = 0
    clock = time.perf_counter_ns
    for start in range(0, len(events), batch):
        part = events[start : start + batch]
        new = [i for _, kind, i in part if kind == 0]
        labelled = [i for _, kind, i in part if kind == 1]
        t0 = clock()
        p, ev = model.score_many(
            [clicks[i].features for i in new], [clicks[i].click.campaign_id for i in new]
        )
        t_predict += clock() - t0
        for i, p_i, ev_i in zip(new, p, ev, strict=True):
            preds[i], values[i] = p_i, ev_i
        t0 = clock()
        for i in labelled:
            c = clicks[i]
            if c.converted and c.revenue is not None:
                model.learn_value(c.features, c.revenue)
        model.learn_many(
            [clicks[i].features for i in labelled],
            [preds[i] for i in labelled],
            [clicks[i].converted for i in labelled],
        )
        t_learn += clock() - t0
        n_learn += len(labelled)
    return ReplayResult(preds, values, t_predict / 1e9, t_learn / 1e9, n_learn)
