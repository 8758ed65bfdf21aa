"""The online models on the real broker: state that survives a restart, labels once each.

A worker learns from generated traffic and stops; a new worker takes over from the
changelogs. Its models must continue where the first left off — same samples seen, the
same prediction for a fixed input — and the clicks still waiting for their label must be
labelled exactly once afterwards, so that in the end every click taught the model once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry

from stream_app.agents.aggregation import PartitionAggregation
from stream_app.agents.attribution import PartitionAttribution
from stream_app.domain.events import Click
from stream_app.domain.records import ClickScored, ModelQualityRecord, WindowRoi
from stream_app.engine import Worker
from stream_app.generator import GroundTruth, Scenario, generate_to_kafka
from stream_app.learning import click_features
from stream_app.observability import Metrics
from stream_app.outputs import decode_all, read_all
from stream_app.runner import build_worker
from stream_app.settings import Settings
from stream_app.topics import create_topics

from .probes import advance_conversion_time
from .running import run_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

T0 = 1_767_225_600.0
WINDOW = 60.0  # attribution window: labels come within a minute of event time
FIXED = click_features(
    Click(1, "e", "k", "cmp-001", "search", "u", T0, "mobile", "US", "top", "cmp-001-cr1")
)


def scenario(seed: int, start: float) -> Scenario:
    return Scenario(
        seed=seed,
        n_campaigns=4,
        start_ts=start,
        duration_seconds=120.0,
        clicks_per_second=25.0,
        conversion_delay_mean_seconds=10.0,
        conversion_delay_cap_seconds=45.0,
        late_max_seconds=5.0,
        attribution_window_seconds=WINDOW,
        conversion_grace_seconds=30.0,
        dedup_horizon_seconds=3600.0,
    )


def models(worker: Worker) -> dict[int, tuple[int, float, int]]:
    """Per partition: samples seen, p(conversion) of FIXED, clicks awaiting a label."""
    out = {}
    for (stage, partition), state in worker.states.items():
        if stage == "attribution":
            assert isinstance(state, PartitionAttribution)
            assert state.model is not None
            p = state.model.predict(FIXED).p_conversion
            out[partition] = (state.model.samples_seen, p, len(state.open))
    return out


def forecasters(worker: Worker) -> dict[int, int]:
    out = {}
    for (stage, partition), state in worker.states.items():
        if stage == "aggregation":
            assert isinstance(state, PartitionAggregation)
            assert state.forecaster is not None
            out[partition] = state.forecaster.samples_seen
    return out


def clicks(*truths: GroundTruth) -> int:
    return sum(c.clicks for truth in truths for c in truth.campaigns.values())


async def test_models_continue_after_a_restart_and_every_click_teaches_once(
    make_settings,  # type: ignore[no-untyped-def]
) -> None:
    settings: Settings = make_settings(
        attribution_window_seconds=WINDOW,
        conversion_grace_seconds=30.0,
        allowed_lateness_seconds=5.0,
        window_size_seconds=10,
    )
    await create_topics(settings)
    first = await generate_to_kafka(scenario(1, T0), settings)
    n_first = clicks(first)

    def scored_all_first(worker: Worker) -> bool:
        state = models(worker)
        total_clicks = sum(
            len(s.clicks) for (stage, _), s in worker.states.items() if stage == "attribution"
        )
        learned = sum(seen for seen, _, _ in state.values())
        # forecasters learn once aggregation has every source's progress, a commit later
        forecasts = sum(forecasters(worker).values())
        return total_clicks >= n_first and learned > 0 and forecasts > 0

    before = await run_until(settings, scored_all_first)
    saved, saved_forecasts = models(before), forecasters(before)
    assert sum(open_ for _, _, open_ in saved.values()) > 0  # clicks still awaiting labels
    assert sum(saved_forecasts.values()) > 0

    # a new worker restores from the changelogs (the engine's own restore, before it
    # processes anything): warm, not cold
    after = build_worker(settings)
    # what its partition-assignment callback runs, with a consumer of the worker's group
    # that never subscribes (it only reads the committed offsets)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": after._group_id,
            "enable.auto.commit": False,
        }
    )
    after._loop = asyncio.get_running_loop()  # which run() sets: _assign signals ready there
    after._restorer = ThreadPoolExecutor(2, "restore")  # which _session makes
    after.consumer = consumer
    try:
        assigned = [(topic, p) for topic in after._stage_of for p in range(settings.partitions)]
        await asyncio.to_thread(after._assign, consumer, assigned)
        # attribution restores on the restore threads; the loop installs what they rebuilt
        while after._restoring:
            await asyncio.to_thread(wait, list(after._restoring.values()))
            await after._install_restored()
    finally:
        after._restorer.shutdown()
        consumer.close()
    assert not after.unrestored
    assert models(after) == saved
    assert forecasters(after) == saved_forecasts

    # more traffic, then conversion time far enough ahead that every click has its label
    second = await generate_to_kafka(scenario(2, T0 + 120.0), settings)
    await advance_conversion_time(settings, T0 + 240.0 + 10 * WINDOW)
    total = clicks(first, second)
    registry = CollectorRegistry()
    last = await run_until(
        settings,
        lambda w: sum(seen for seen, _, _ in models(w).values()) >= total,
        Metrics(registry, max_campaigns=10),
    )
    final = models(last)
    assert sum(seen for seen, _, _ in final.values()) == total  # each click taught once
    assert all(open_ == 0 for _, _, open_ in final.values())

    # run_until returned once the final transaction's commit markers were written: until
    # then read_all, which stops at the last stable offset, would miss that transaction,
    # and with it every click the second run scored if it scored them all in one go
    bootstrap, t = settings.bootstrap_servers, settings.topics
    scored = decode_all(await read_all(bootstrap, t.clicks_scored), ClickScored)
    assert len({s.click_id for s in scored}) == len(scored) == total
    quality = decode_all(await read_all(bootstrap, t.model_quality), ModelQualityRecord)
    conversion = [q for q in quality if q.model == "conversion"]
    assert {q.partition for q in conversion} == set(range(settings.partitions))
    last = {q.partition: q for q in conversion}
    assert all(q.samples_seen == final[p][0] for p, q in last.items())
    # quality on this little traffic is for tests/unit/learning; here: it is reported
    assert all(q.auc is not None and q.log_loss is not None for q in last.values())
    windows = decode_all(await read_all(bootstrap, t.campaign_roi), WindowRoi)
    closed = [w for w in windows if w.closed and w.metrics.spend > 0]
    assert closed
    assert all(w.predictions.roi_forecast is not None for w in closed)
    assert all(w.predictions.roi_nowcast is not None for w in windows if w.metrics.spend > 0)
    seen = registry.get_sample_value(
        "stream_app_model_samples_seen", {"model": "conversion", "partition": "0"}
    )
    assert seen == final[0][0]
