"""Measure the online models on generated traffic with drift; draws docs/online-models.png.

Every number in docs/online-models.md comes from this script (default run: about two
minutes on two cores, well under five)::

    .venv/bin/python tools/evaluate_models.py                 # 3 days, 1 click/s, collapse
    .venv/bin/python tools/evaluate_models.py --days 1 --collapse-at-days 0.6 \
        --no-candidates --plot ''                              # a 40 s smoke run

Labels are delayed as the worker sees them (``stream_app.learning.replay``): positive at
the conversion, negative when the label window passes. Sections:

1. conversion pipelines compared on the first hours (before the collapse): AUC against the
   generator's true probabilities, log loss, µs per predict and per learn;
2. drift: the chosen pipeline with and without drift detectors over the whole run, with
   the clicks it takes to recover after one campaign's conversion rate collapses;
3. warm-up: after how many clicks the AUC stays >= 0.97 x the oracle's;
4. ROI forecaster: online models against scikit-learn LinearRegression on spend, clicks
   and conversions, fitted in hindsight on all windows, and refitted daily on the past.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from river import facto, linear_model, naive_bayes, optim, preprocessing, stats, tree
from sklearn.linear_model import LinearRegression

from stream_app.generator import Scenario
from stream_app.generator.labelled import labelled_traffic
from stream_app.learning import (
    ClickPrediction,
    ConversionConfig,
    ConversionModel,
    Features,
    ForecastConfig,
    RoiForecaster,
    ValueModel,
    roi_nowcast,
)
from stream_app.learning.features import campaign_of
from stream_app.learning.progressive import RankAUC, log_loss
from stream_app.learning.replay import (
    LabelledClick,
    Predictor,
    Traffic,
    WindowCase,
    build_windows,
    event_order,
    replay,
    replay_batched,
)

REPO = Path(__file__).resolve().parents[1]
DAY = 86400.0
console = Console(width=150)


# -- traffic --------------------------------------------------------------------------------
def make_traffic(args: argparse.Namespace) -> tuple[Scenario, Traffic]:
    """Multi-day traffic (so a daily refit means something) with one conversion collapse."""
    scenario = Scenario(
        seed=args.seed,
        duration_seconds=args.days * DAY,
        clicks_per_second=args.clicks_per_second,
        spend_interval_seconds=60.0,
        reviews_per_minute=0.2,
        attribution_window_seconds=args.label_window,
        collapse_campaign=args.collapse_campaign,
        collapse_at=args.collapse_at_days * DAY,
        collapse_factor=0.2,
        bad_share=0.0,
        duplicate_share=0.0,
        late_share=0.0,
    )
    return scenario, labelled_traffic(scenario, args.label_window)


# -- metrics --------------------------------------------------------------------------------
def auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    metric = RankAUC()
    for y, p in zip(labels, scores, strict=True):
        metric.update(y, p)
    value = metric.get()
    return math.nan if value is None else value


def mean_log_loss(labels: Sequence[bool], scores: Sequence[float]) -> float:
    return sum(log_loss(y, p) for y, p in zip(labels, scores, strict=True)) / len(labels)


# -- conversion candidates ------------------------------------------------------------------
class RiverCandidate:
    """Any River binary classifier behind the replay's predict / learn interface."""

    def __init__(self, model: Any, bias: bool = True) -> None:
        self.model = model
        self.bias = bias

    def predict(self, features: Features) -> ClickPrediction:
        x = features | {"bias": 1.0} if self.bias else features
        return ClickPrediction(float(self.model.predict_proba_one(x).get(True, 0.0)), 0.0)

    def learn(
        self, features: Features, predicted: float, converted: bool, revenue: float | None
    ) -> None:
        x = features | {"bias": 1.0} if self.bias else features
        self.model.learn_one(x, converted)


CHOSEN = ConversionConfig()


def candidates() -> dict[str, Callable[[], Predictor]]:
    def lr(**kw: Any) -> Callable[[], Predictor]:
        return lambda: ConversionModel(ConversionConfig(**kw))

    return {
        "LR FTRL a=0.3, 1/10 negatives (chosen)": lambda: ConversionModel(CHOSEN),
        "LR FTRL a=0.1, all labels": lr(learning_rate=0.1, negative_sampling=1),
        "LR FTRL a=0.3, all labels": lr(negative_sampling=1),
        "LR SGD 0.01, 1/10 negatives": lr(optimizer="sgd", learning_rate=0.01),
        "LR SGD 0.01, all labels": lr(optimizer="sgd", learning_rate=0.01, negative_sampling=1),
        "LR FTRL a=0.1, hashed 2^10": lambda: RiverCandidate(
            preprocessing.FeatureHasher(n_features=1024, seed=1)
            | linear_model.LogisticRegression(optim.FTRLProximal(alpha=0.1), intercept_lr=0.0)
        ),
        "FM 4 factors (SGD 0.05)": lambda: RiverCandidate(
            facto.FMClassifier(
                n_factors=4,
                weight_optimizer=optim.SGD(0.05),
                latent_optimizer=optim.SGD(0.05),
                seed=1,
            )
        ),
        "ALMA": lambda: RiverCandidate(linear_model.ALMAClassifier()),  # type: ignore[no-untyped-call]
        "Hoeffding adaptive tree": lambda: RiverCandidate(
            tree.HoeffdingAdaptiveTreeClassifier(seed=1), bias=False
        ),
        "Bernoulli naive Bayes": lambda: RiverCandidate(
            naive_bayes.BernoulliNB(),  # type: ignore[no-untyped-call]
            bias=False,
        ),
    }


@dataclass
class Scored:
    name: str
    auc: float
    ratio: float
    log_loss: float
    predict_us: float
    learn_us: float
    extra: dict[str, Any] = field(default_factory=dict)


def compare_candidates(clicks: Sequence[LabelledClick], warmup: int) -> list[Scored]:
    labels = [c.converted for c in clicks][warmup:]
    oracle = auc(labels, [c.p_true for c in clicks][warmup:])
    events = event_order(clicks)
    rows = []
    for name, factory in candidates().items():
        result = replay(factory(), clicks, events)
        preds = result.predictions[warmup:]
        a = auc(labels, preds)
        rows.append(
            Scored(
                name,
                a,
                a / oracle,
                mean_log_loss(labels, preds),
                result.predict_seconds / len(clicks) * 1e6,
                result.learn_seconds / result.n_learn * 1e6,
            )
        )
        console.print(f"  {name}: AUC {a:.4f}", style="dim")
    return rows


# -- value model ----------------------------------------------------------------------------
def value_candidates() -> dict[str, Callable[[], Any]]:
    """Order-value learners behind ``predict(features) / learn(features, revenue)``."""
    return {
        "per-campaign running mean (chosen)": CampaignMean,
        "all-campaign running mean": lambda: RiverValue(stats.Mean()),
        "River LinearRegression on click features, SGD 0.01": lambda: RiverValue(
            linear_model.LinearRegression(optimizer=optim.SGD(0.01), intercept_lr=0.01)
        ),
        "River LinearRegression on click features, SGD 0.05": lambda: RiverValue(
            linear_model.LinearRegression(optimizer=optim.SGD(0.05), intercept_lr=0.05)
        ),
    }


class CampaignMean:
    def __init__(self) -> None:
        self.model = ValueModel()

    def predict(self, features: Features) -> float:
        return self.model.predict(campaign_of(features))

    def learn(self, features: Features, revenue: float) -> None:
        self.model.learn(campaign_of(features), revenue)


class RiverValue:
    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, features: Features) -> float:
        if isinstance(self.model, stats.Mean):
            return float(self.model.get())
        return float(self.model.predict_one(features))

    def learn(self, features: Features, revenue: float) -> None:
        if isinstance(self.model, stats.Mean):
            self.model.update(revenue)
        else:
            self.model.learn_one(features, revenue)


def compare_value_models(clicks: Sequence[LabelledClick]) -> list[list[str]]:
    """Progressive MAE of the order value on conversions in label order, against the
    realised value and against the true mean order value (ClickTruth: value / p)."""
    converted = sorted((c for c in clicks if c.converted), key=lambda c: c.label_ts)
    rows = []
    for name, factory in value_candidates().items():
        model = factory()
        err_real = err_true = 0.0
        t = 0
        for c in converted:
            t0 = time.perf_counter_ns()
            predicted = model.predict(c.features)
            model.learn(c.features, c.revenue or 0.0)
            t += time.perf_counter_ns() - t0
            err_real += abs(predicted - (c.revenue or 0.0))
            err_true += abs(predicted - c.true_value / c.p_true)
        n = len(converted)
        rows.append([name, f"{err_real / n:.2f}", f"{err_true / n:.2f}", f"{t / n / 1000:.1f}"])
    return rows


# -- drift ----------------------------------------------------------------------------------
CHOSEN_NAME = "FTRL, no detector (chosen)"
SGD = ConversionConfig(optimizer="sgd", learning_rate=0.01)
DRIFT_CONFIGS: dict[str, ConversionConfig] = {
    CHOSEN_NAME: CHOSEN,
    "FTRL + ADWIN(log loss) -> rate boost": ConversionConfig(drift="boost", drift_signal="loss"),
    "FTRL + ADWIN(campaign residual) -> rate boost": ConversionConfig(drift="boost"),
    "FTRL + ADWIN(campaign residual) -> reset": ConversionConfig(drift="reset"),
    "SGD 0.01, no detector": SGD,
    "SGD 0.01 + ADWIN(campaign residual) -> 5x rate": replace(SGD, drift="boost"),
}
CALIBRATION_CLICKS = 300
RECOVERED = (1.5, 1.25)
BATCH = 1250
"""Events per model call in the worker-like replay: a partition's share of one consume()."""


def calibration_series(
    clicks: Sequence[LabelledClick], preds: Sequence[float], campaign: str
) -> tuple[list[float], list[float]]:
    """(event time, mean prediction / mean true p) over the campaign's last 300 clicks."""
    idx = [i for i, c in enumerate(clicks) if c.click.campaign_id == campaign]
    times, ratios = [], []
    pred_sum = true_sum = 0.0
    for j, i in enumerate(idx):
        pred_sum += preds[i]
        true_sum += clicks[i].p_true
        if j >= CALIBRATION_CLICKS:
            old = idx[j - CALIBRATION_CLICKS]
            pred_sum -= preds[old]
            true_sum -= clicks[old].p_true
            times.append(clicks[i].click.ts)
            ratios.append(pred_sum / true_sum)
    return times, ratios


def recovery(
    clicks: Sequence[LabelledClick],
    preds: Sequence[float],
    campaign: str,
    collapse_ts: float,
    within: float,
) -> tuple[int, int, float] | None:
    """First point after the collapse where the campaign's mean prediction is below
    ``within`` x the truth: (its clicks since the collapse, all clicks since, seconds)."""
    times, ratios = calibration_series(clicks, preds, campaign)
    first = next((i for i, c in enumerate(clicks) if c.click.ts >= collapse_ts), len(clicks))
    campaign_clicks = 0
    for t, r in zip(times, ratios, strict=True):
        if t < collapse_ts:
            continue
        campaign_clicks += 1
        # a full window of post-collapse clicks, so the ratio is about the new regime
        if campaign_clicks >= CALIBRATION_CLICKS and r <= within:
            overall = sum(1 for c in clicks[first:] if c.click.ts <= t)
            return campaign_clicks, overall, t - collapse_ts
    return None


def worst_calibration(clicks: Sequence[LabelledClick], preds: Sequence[float]) -> float:
    """Largest |mean predicted p / mean true p - 1| over the campaigns (ranking hides this;
    the expected revenue, the nowcast and the bidders do not)."""
    sums: dict[str, list[float]] = {}
    for c, p in zip(clicks, preds, strict=True):
        acc = sums.setdefault(c.click.campaign_id, [0.0, 0.0])
        acc[0] += p
        acc[1] += c.p_true
    return max(abs(pred / true - 1.0) for pred, true in sums.values())


def rolling_auc_series(
    clicks: Sequence[LabelledClick], preds: Sequence[float], window: int, every: int
) -> tuple[list[float], list[float]]:
    metric = RankAUC(window=window)
    times, values = [], []
    for i, (c, p) in enumerate(zip(clicks, preds, strict=True)):
        metric.update(c.converted, p)
        if i >= window and i % every == 0:
            times.append(c.click.ts)
            values.append(metric.get() or math.nan)
    return times, values


# -- forecaster -----------------------------------------------------------------------------
FORECASTERS: dict[str, ForecastConfig | None] = {
    "nowcast only (no learning)": None,
    "River linreg on ROI, squared loss": ForecastConfig(target="roi", loss="squared"),
    "River linreg on ROI - nowcast, squared loss (first choice)": ForecastConfig(
        target="residual", loss="squared"
    ),
    "River linreg on ROI - nowcast, squared loss, SGD 0.005": ForecastConfig(
        target="residual", loss="squared", learning_rate=0.005
    ),
    "River linreg on ROI - nowcast, Huber loss": ForecastConfig(target="residual", loss="huber"),
    "River linreg on ROI - nowcast, absolute loss": ForecastConfig(target="residual"),
    "River linreg on ROI, absolute loss (chosen)": ForecastConfig(),
}
CHOSEN_FORECASTER = "River linreg on ROI, absolute loss (chosen)"


def online_forecasts(cases: Sequence[WindowCase], config: ForecastConfig | None) -> list[float]:
    """Forecast at each window's close, learn when it matures, in event-time order."""
    preds: list[float] = [math.nan] * len(cases)
    model = RoiForecaster(config) if config is not None else None
    events = sorted(
        [(c.close_ts, 0, i) for i, c in enumerate(cases)]
        + [(c.mature_ts, 1, i) for i, c in enumerate(cases)]
    )
    for _, kind, i in events:
        case = cases[i]
        if kind == 0:
            if model is None:
                x = case.inputs
                value = roi_nowcast(x.revenue, x.open_expected_revenue, x.spend)
            else:
                value = model.predict(case.inputs)
            preds[i] = math.nan if value is None else value
        elif model is not None and case.realised_roi is not None:
            p = preds[i]
            model.learn(case.inputs, None if math.isnan(p) else p, case.realised_roi)
    return preds


def batch_matrix(cases: Sequence[WindowCase]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The batch baselines' features, as known at close: ad spend, clicks, conversions."""
    rows = [[c.inputs.spend, c.inputs.clicks, c.inputs.conversions] for c in cases]
    return np.asarray(rows, dtype=float)


def batch_forecasts(cases: Sequence[WindowCase], start_ts: float) -> tuple[list[float], ...]:
    X = batch_matrix(cases)
    y = np.asarray([c.realised_roi for c in cases], dtype=float)
    hindsight = LinearRegression().fit(X, y).predict(X).tolist()
    daily = [math.nan] * len(cases)
    days = sorted({int((c.close_ts - start_ts) // DAY) for c in cases})
    for day in days:
        known = [i for i, c in enumerate(cases) if c.mature_ts <= start_ts + day * DAY]
        todo = [i for i, c in enumerate(cases) if int((c.close_ts - start_ts) // DAY) == day]
        if len(known) < 10 or not todo:
            continue
        model = LinearRegression().fit(X[known], y[known])
        for i, value in zip(todo, model.predict(X[todo]).tolist(), strict=True):
            daily[i] = value
    return hindsight, daily


def error(predicted: float, case: WindowCase) -> float:
    assert case.realised_roi is not None  # windows without spend are filtered out
    return abs(predicted - case.realised_roi)


def mae(preds: Sequence[float], cases: Sequence[WindowCase], idx: Sequence[int]) -> float:
    errors = [error(preds[i], cases[i]) for i in idx if not math.isnan(preds[i])]
    return sum(errors) / len(errors) if errors else math.nan


# -- report ---------------------------------------------------------------------------------
def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--clicks-per-second", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--collapse-campaign", default="cmp-003")
    parser.add_argument("--collapse-at-days", type=float, default=1.5)
    parser.add_argument("--label-window", type=float, default=1800.0)
    parser.add_argument("--window-size", type=int, default=3600, help="forecast windows, s")
    parser.add_argument("--candidate-hours", type=float, default=12.0)
    parser.add_argument("--warmup", type=int, default=5000, help="clicks left out of AUCs")
    parser.add_argument("--candidates", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--plot", default=str(REPO / "docs" / "online-models.png"))
    args = parser.parse_args(argv)
    if args.collapse_at_days * DAY < args.candidate_hours * 3600:
        parser.error("the candidate comparison must end before the collapse")

    t0 = time.perf_counter()
    scenario, traffic = make_traffic(args)
    clicks = traffic.clicks
    collapse_ts = scenario.collapse_ts or math.inf
    console.print(
        f"traffic: {len(clicks):,} clicks over {args.days:g} days, "
        f"{sum(c.converted for c in clicks):,} conversions within {args.label_window:g} s; "
        f"{args.collapse_campaign} p(conversion) x0.2 from day {args.collapse_at_days:g} "
        f"({time.perf_counter() - t0:.0f} s)"
    )

    # 1. candidates, on the stationary first hours
    if args.candidates:
        head_end = scenario.start_ts + args.candidate_hours * 3600
        head = [c for c in clicks if c.click.ts < head_end]
        console.print(f"1. comparing conversion pipelines on the first {len(head):,} clicks")
        rows = compare_candidates(head, args.warmup)
        oracle = auc(
            [c.converted for c in head][args.warmup :], [c.p_true for c in head][args.warmup :]
        )
        table(
            f"Conversion pipelines: first {args.candidate_hours:g} h, AUC from click "
            f"{args.warmup:,} on (oracle AUC {oracle:.4f})",
            ["pipeline", "AUC", "AUC / oracle", "log loss", "µs / predict", "µs / learn"],
            [
                [
                    r.name,
                    f"{r.auc:.4f}",
                    f"{r.ratio:.3f}",
                    f"{r.log_loss:.4f}",
                    f"{r.predict_us:.1f}",
                    f"{r.learn_us:.1f}",
                ]
                for r in rows
            ],
        )

    console.print(f"1b. order-value models on the {sum(c.converted for c in clicks):,} conversions")
    table(
        "Order value (reporting currency), progressive MAE over all conversions in label order",
        ["value model", "MAE vs realised", "MAE vs true mean", "µs / predict+learn"],
        compare_value_models(clicks),
    )

    # 2. drift, whole run
    console.print("2. drift: whole run, with and without detectors")
    labels = [c.converted for c in clicks]
    truth = [c.p_true for c in clicks]
    first_after = next((i for i, c in enumerate(clicks) if c.click.ts >= collapse_ts), len(clicks))
    W = args.warmup
    oracle_all = auc(labels[W:], truth[W:])
    oracle_post = auc(labels[first_after:], truth[first_after:])
    n_head = sum(1 for c in clicks if c.click.ts < scenario.start_ts + args.candidate_hours * 3600)
    events = event_order(clicks)
    runs: dict[str, list[float]] = {}
    chosen_values: list[float] = []
    drift_rows = []
    for name, config in DRIFT_CONFIGS.items():
        model = ConversionModel(config)
        result = replay(model, clicks, events)
        preds = result.predictions
        runs[name] = preds
        if config == CHOSEN:
            chosen_values = result.expected_values
            chosen_model = model
            chosen_result = result
        recoveries = []
        for within in RECOVERED:
            rec = recovery(clicks, preds, args.collapse_campaign, collapse_ts, within)
            recoveries.append(
                "not in the run"
                if rec is None
                else f"{rec[0]:,} / {rec[1]:,} / {rec[2] / 3600:.1f} h"
            )
        drift_rows.append(
            [
                name,
                f"{auc(labels[W:], preds[W:]) / oracle_all:.3f}",
                f"{auc(labels[first_after:], preds[first_after:]) / oracle_post:.3f}",
                f"{worst_calibration(clicks[W:n_head], preds[W:n_head]):.0%}",
                f"{worst_calibration(clicks[n_head:first_after], preds[n_head:first_after]):.0%}",
                str(model.drifts),
                *recoveries,
            ]
        )
    table(
        f"Drift: AUC / oracle (oracle {oracle_all:.4f}; after the collapse {oracle_post:.4f}); "
        f"recovery of {args.collapse_campaign}: its clicks / all clicks / event time until its "
        f"mean p over its last {CALIBRATION_CLICKS} clicks is within 1.5x and 1.25x of the truth",
        [
            "pipeline",
            "AUC/oracle",
            "after collapse",
            "worst campaign p error",
            "drifts",
            "recovery to 1.5x",
            "recovery to 1.25x",
        ],
        drift_rows,
    )

    # 2b. when positives are learnt: at their conversion, or at the label window like negatives
    console.print("2b. positives learnt at the conversion vs at the label window (the worker)")
    at_window = [
        replace(c, label_ts=c.click.ts + args.label_window) if c.converted else c for c in clicks
    ]
    cold = [
        i for i, c in enumerate(clicks) if c.click.ts < scenario.start_ts + 2 * args.label_window
    ]
    policy_rows = []
    policies = (
        ("at the conversion", clicks, False),
        ("at the label window", at_window, False),
        (f"at the label window, batched as the worker ({BATCH:,} events)", at_window, True),
    )
    for policy, labelled, batched in policies:
        run = replay_batched if batched else replay
        result_p = run(ConversionModel(CHOSEN), labelled, event_order(labelled))
        preds_p = result_p.predictions
        console.print(
            f"  {policy}: {result_p.predict_seconds / len(labelled) * 1e6:.2f} µs / score, "
            f"{result_p.learn_seconds / max(1, result_p.n_learn) * 1e6:.2f} µs / label",
            style="dim",
        )
        rec = recovery(labelled, preds_p, args.collapse_campaign, collapse_ts, RECOVERED[-1])
        policy_rows.append(
            [
                policy,
                f"{auc(labels[W:], preds_p[W:]) / oracle_all:.3f}",
                f"{auc(labels[first_after:], preds_p[first_after:]) / oracle_post:.3f}",
                f"{sum(preds_p[i] for i in cold) / sum(truth[i] for i in cold):.2f}",
                "not in the run" if rec is None else f"{rec[0]:,} / {rec[2] / 3600:.1f} h",
            ]
        )
    table(
        "When positives are learnt (chosen pipeline): AUC / oracle; cold start = mean predicted "
        f"p / true p over the first {2 * args.label_window:g} s; recovery to "
        f"{RECOVERED[-1]}x (campaign clicks / event time)",
        ["positives learnt", "AUC/oracle", "after collapse", "cold start p ratio", "recovery"],
        policy_rows,
    )

    # 3. warm-up of the chosen model
    preds = runs[CHOSEN_NAME]
    warm_rows = []
    warmed = None
    for start in (500, 1000, 2000, 5000, 10000, 20000, 50000):
        if start >= len(clicks):
            break
        segment = slice(start, min(start + 20000, first_after))
        if segment.stop - segment.start < 5000:
            continue
        ratio = auc(labels[segment], preds[segment]) / auc(labels[segment], truth[segment])
        warm_rows.append([f"{start:,}", f"{segment.stop - start:,}", f"{ratio:.3f}"])
        if warmed is None and ratio >= 0.97:
            warmed = start
    table(
        "Warm-up: AUC / oracle over the next 20,000 clicks (before the collapse)",
        ["from click", "clicks scored", "AUC / oracle"],
        warm_rows,
    )
    q = chosen_model.quality()
    state = chosen_model.to_state()
    console.print(
        f"chosen: warmed up (>= 0.97 x oracle) from click {warmed}; progressive AUC "
        f"{q.auc:.4f}, log loss {q.log_loss:.4f}, rolling AUC {q.rolling_auc:.4f}; "
        f"{chosen_result.predict_seconds / len(clicks) * 1e6:.1f} µs / predict, "
        f"{chosen_result.learn_seconds / chosen_result.n_learn * 1e6:.1f} µs / learn; "
        f"state {len(state):,} bytes"
    )

    # 4. forecaster
    console.print(f"4. ROI forecaster on {args.window_size} s windows")
    cases = [
        c
        for c in build_windows(traffic, chosen_values, args.window_size)
        if c.realised_roi is not None
    ]
    day1 = [i for i, c in enumerate(cases) if c.close_ts >= scenario.start_ts + DAY]
    post = [i for i, c in enumerate(cases) if c.close_ts >= collapse_ts]
    everything = list(range(len(cases)))
    hindsight, daily = batch_forecasts(cases, scenario.start_ts)
    forecasts: dict[str, list[float]] = {
        name: online_forecasts(cases, config) for name, config in FORECASTERS.items()
    }
    forecasts["batch LinearRegression, hindsight (all data)"] = hindsight
    forecasts["batch LinearRegression, refitted daily"] = daily
    table(
        f"ROI forecast MAE over {len(cases):,} campaign windows",
        ["model", "all windows", "from day 2", "after the collapse"],
        [
            [
                name,
                f"{mae(p, cases, everything):.3f}",
                f"{mae(p, cases, day1):.3f}",
                f"{mae(p, cases, post):.3f}",
            ]
            for name, p in forecasts.items()
        ],
    )

    if args.plot:
        plot(args, scenario, clicks, runs, cases, forecasts)
        console.print(f"plot: {args.plot}")
    console.print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def plot(
    args: argparse.Namespace,
    scenario: Scenario,
    clicks: Sequence[LabelledClick],
    runs: dict[str, list[float]],
    cases: Sequence[WindowCase],
    forecasts: dict[str, list[float]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = scenario.start_ts
    collapse_s = (scenario.collapse_ts or math.nan) - start

    def hours(ts: Sequence[float]) -> list[float]:
        return [(t - start) / 3600 for t in ts]

    fig, axes = plt.subplots(3, 1, figsize=(10, 11), sharex=True)
    ax = axes[0]
    window, every = 5000, 1000
    t, v = rolling_auc_series(clicks, [c.p_true for c in clicks], window, every)
    ax.plot(hours(t), v, color="black", lw=1.2, label="oracle (true p)")
    for name in (CHOSEN_NAME, "SGD 0.01, no detector"):
        t, v = rolling_auc_series(clicks, runs[name], window, every)
        ax.plot(hours(t), v, lw=1, label=name)
    ax.set_ylabel(f"rolling AUC, last {window:,} clicks")
    ax.legend(loc="lower right", fontsize=8)

    ax = axes[1]
    for name in (
        CHOSEN_NAME,
        "FTRL + ADWIN(log loss) -> rate boost",
        "SGD 0.01, no detector",
        "SGD 0.01 + ADWIN(campaign residual) -> 5x rate",
    ):
        t, v = calibration_series(clicks, runs[name], args.collapse_campaign)
        ax.plot(hours(t), v, lw=1, label=name)
    ax.axhline(1.0, color="black", lw=0.8)
    for level in RECOVERED:
        ax.axhline(level, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_ylabel(f"{args.collapse_campaign}: mean predicted / true p")
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[2]
    order = sorted(range(len(cases)), key=lambda i: cases[i].close_ts)
    for name in (
        CHOSEN_FORECASTER,
        "batch LinearRegression, hindsight (all data)",
        "batch LinearRegression, refitted daily",
    ):
        preds = forecasts[name]
        pts = [
            (cases[i].close_ts, error(preds[i], cases[i]))
            for i in order
            if not math.isnan(preds[i])
        ]
        errs = np.convolve([e for _, e in pts], np.ones(100) / 100, mode="valid")
        ax.plot(hours([ts for ts, _ in pts][99:]), errs, lw=1, label=name)
    ax.set_ylabel("ROI forecast MAE, last 100 windows (12.5 h)")
    ax.set_xlabel("hours of event time")
    ax.legend(loc="upper left", fontsize=8)
    for ax in axes:
        ax.axvline(collapse_s / 3600, color="red", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    axes[0].set_title(
        f"Online models on {args.days:g} days of generated traffic; red: "
        f"{args.collapse_campaign} conversions x0.2"
    )
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
