"""Attribution rules: window, grace, duplicates, and state that survives a restore."""

from __future__ import annotations

from dataclasses import replace

from stream_app.domain.attribution import Attribution, AttributionConfig, Scored
from stream_app.domain.events import Click, Conversion
from stream_app.domain.outcomes import Outcome
from stream_app.domain.records import CampaignDelta
from stream_app.domain.roi import Totals
from stream_app.learning import ConversionModel

from .compacted import restore_through

T0 = 1_767_225_600.0
CONFIG = AttributionConfig(
    window_size_seconds=60,
    attribution_window_seconds=600.0,
    conversion_grace_seconds=30.0,
    dedup_horizon_seconds=3600.0,
    currency="USD",
)


def click(n: int, ts: float, campaign: str = "c1") -> Click:
    return Click(1, f"click-ev-{n}", f"k{n}", campaign, "search", "u1", ts)


def conversion(n: int, ts: float, click_n: int | None = None) -> Conversion:
    return Conversion(
        1, f"conv-ev-{n}", f"k{click_n if click_n is not None else n}", 10.0, "USD", ts
    )


def sums(deltas: list[CampaignDelta]) -> dict[tuple[str, float, str], Totals]:
    out: dict[tuple[str, float, str], Totals] = {}
    for d in deltas:
        out.setdefault((d.campaign_id, d.window_start, d.kind), Totals()).add(
            Totals.from_list(d.totals)
        )
    return out


def test_conversion_within_window_counts_in_the_click_window() -> None:
    a = Attribution(CONFIG)
    assert a.on_click(click(1, T0 + 5)) is Outcome.ACCEPTED
    assert a.on_conversion(conversion(1, T0 + 500), 10.0) is Outcome.ATTRIBUTED
    got = sums(a.drain_deltas())
    assert got[("c1", T0, "click")].clicks == 1
    assert got[("c1", T0, "conversion")].conversions == 1
    assert got[("c1", T0, "conversion")].revenue == 10.0


def test_conversion_outside_window_is_unattributed_not_dropped() -> None:
    a = Attribution(CONFIG)
    a.on_click(click(1, T0))
    assert a.on_conversion(conversion(1, T0 + 601), 10.0) is Outcome.UNATTRIBUTED
    [lost] = a.drain_unattributed()
    assert (lost.reason, lost.revenue, lost.click_id) == ("outside_window", 10.0, "k1")


def test_conversion_before_its_click_waits_within_grace() -> None:
    a = Attribution(CONFIG)
    assert a.on_conversion(conversion(1, T0 + 3), 10.0) is Outcome.PENDING
    a.expire_pending()
    assert a.drain_unattributed() == []
    a.on_click(click(1, T0 + 1))
    got = sums(a.drain_deltas())
    assert got[("c1", T0, "conversion")].conversions == 1
    assert a.pending == {}


def test_conversion_whose_click_never_comes_expires_after_grace() -> None:
    a = Attribution(CONFIG)
    a.on_conversion(conversion(1, T0), 10.0)
    a.on_click(click(2, T0 + 29))
    a.expire_pending()
    assert a.drain_unattributed() == []
    a.on_click(click(3, T0 + 31))
    a.expire_pending()
    [lost] = a.drain_unattributed()
    assert lost.reason == "unknown_click"


def test_duplicates_are_counted_once() -> None:
    a = Attribution(CONFIG)
    assert a.on_click(click(1, T0)) is Outcome.ACCEPTED
    assert a.on_click(click(1, T0)) is Outcome.DUPLICATE
    assert a.on_conversion(conversion(1, T0 + 1), 10.0) is Outcome.ATTRIBUTED
    assert a.on_conversion(conversion(1, T0 + 1), 10.0) is Outcome.DUPLICATE
    got = sums(a.drain_deltas())
    assert got[("c1", T0, "click")].clicks == 1
    assert got[("c1", T0, "conversion")].conversions == 1


def restored(a: Attribution, log: dict[str, object]) -> Attribution:
    return restore_through(log, a, lambda: Attribution(CONFIG))


def test_state_survives_a_restore_mid_stream() -> None:
    log: dict[str, object] = {}
    a = Attribution(CONFIG)
    a.on_click(click(1, T0))
    a.on_conversion(conversion(2, T0 + 1), 10.0)  # waits for click 2
    a.drain_deltas()
    b = restored(a, log)
    assert b.on_click(click(1, T0)) is Outcome.DUPLICATE
    assert b.on_conversion(conversion(1, T0 + 2), 10.0) is Outcome.ATTRIBUTED
    b.on_click(click(2, T0 + 2))
    got = sums(b.drain_deltas())
    assert got[("c1", T0, "conversion")].conversions == 2
    assert (b.click_watermark, b.conversion_watermark) == (T0 + 2, T0 + 2)


def test_expired_clicks_and_ids_are_deleted_from_the_log() -> None:
    log: dict[str, object] = {}
    a = Attribution(CONFIG)
    a.on_click(click(1, T0))
    a = restored(a, log)
    assert any(k.startswith("click|") for k in log)
    late = T0 + 3 * 3600 + 1000  # far past window + grace and the dedup horizon
    a.on_click(click(2, late))
    b = restored(a, log)
    assert "k1" in b.clicks, "clicks wait for the conversion stream's event time"
    b.on_conversion(conversion(8, late, click_n=8), 1.0)
    b = restored(b, log)
    assert "k1" not in b.clicks
    assert "k2" in b.clicks
    assert b.on_conversion(conversion(9, late + 1, click_n=1), 1.0) is Outcome.PENDING
    assert b.on_click(click(1, T0)) is Outcome.ACCEPTED, "its event id was forgotten too"


def test_pending_conversions_wait_for_click_time_not_conversion_time() -> None:
    a = Attribution(CONFIG)
    a.on_conversion(conversion(1, T0), 10.0)
    a.on_conversion(conversion(2, T0 + 5000), 10.0)  # conversions read far ahead of clicks
    a.expire_pending()
    assert a.drain_unattributed() == []
    a.on_click(click(1, T0 + 10))
    assert sums(a.drain_deltas())[("c1", T0, "conversion")].conversions == 1


# -- delayed labels for the conversion model ----------------------------------------------
LABELLED = AttributionConfig(
    window_size_seconds=60,
    attribution_window_seconds=600.0,
    conversion_grace_seconds=30.0,
    dedup_horizon_seconds=3600.0,
    currency="USD",
    label_lateness_seconds=20.0,
)


def scored(n: int) -> Scored:
    return Scored({f"f={n}": 1.0}, p_conversion=0.1 * n, expected_value=2.0 * n)


def advance(a: Attribution, to: float) -> None:
    """Move the conversion watermark with a conversion for a click nobody saw."""
    a.on_conversion(Conversion(1, f"probe-{to}", f"nobody-{to}", 1.0, "USD", to), 1.0)
    a.expire_labels()


def test_a_converted_click_is_learnt_positive_at_the_same_age_as_a_negative() -> None:
    a = Attribution(LABELLED)
    a.on_click(click(1, T0 + 5), scored(1))
    a.on_conversion(conversion(1, T0 + 100), 10.0)
    assert a.drain_labels() == []  # revenue now, the label when its window has passed
    got = sums(a.drain_deltas())
    assert got[("c1", T0, "click")].expected_revenue == 2.0
    assert got[("c1", T0, "click")].open_expected_revenue == 2.0
    assert got[("c1", T0, "click")].p_conversion_sum == 0.1
    assert got[("c1", T0, "conversion")].revenue == 10.0
    assert got[("c1", T0, "conversion")].open_expected_revenue == -2.0  # no longer open
    advance(a, T0 + 5 + 600 + 21)
    [label] = a.drain_labels()
    assert (label.click_id, label.scored, label.converted, label.revenue) == (
        "k1",
        scored(1),
        True,
        10.0,
    )
    assert all(t.open_expected_revenue == 0 for t in sums(a.drain_deltas()).values())


def test_an_unconverted_click_is_negative_once_window_and_lateness_pass() -> None:
    a = Attribution(LABELLED)
    a.on_click(click(2, T0), scored(2))
    advance(a, T0 + 600 + 19)
    assert a.drain_labels() == []
    advance(a, T0 + 600 + 21)
    [label] = a.drain_labels()
    assert (label.click_id, label.converted, label.revenue) == ("k2", False, None)
    closed = sum(d.open_expected_revenue for d in sums(a.drain_deltas()).values())
    assert closed == 0.0  # opened +4, closed -4
    advance(a, T0 + 5000)
    assert a.drain_labels() == []  # labelled once


def rebuild(a: Attribution, log: dict[str, object], reverse: bool = False) -> Attribution:
    """Restore, optionally with the changelog keys in the opposite order."""
    rebuilt = restore_through(log, a, lambda: Attribution(LABELLED))
    if not reverse:
        return rebuilt
    again = Attribution(LABELLED)
    for key in reversed(list(log)):
        again.restore(key, log[key])
    return again


def test_open_and_converted_clicks_survive_restores_and_each_is_labelled_once() -> None:
    for reverse in (False, True):
        log: dict[str, object] = {}
        a = Attribution(LABELLED)
        for n in (1, 2, 3):
            a.on_click(click(n, T0 + n), scored(n))
        a.on_conversion(conversion(1, T0 + 50), 10.0)  # k1 converts before a restore
        a = rebuild(a, log, reverse)
        revenue = {k: a.open.get(k)[5] for k in a.open}  # OpenEntry: revenue last
        assert revenue == {"k1": 10.0, "k2": None, "k3": None}
        a.on_conversion(conversion(2, T0 + 60), 7.0)  # k2 converts after it
        advance(a, T0 + 2 + 600 + 20.5)  # past k1's and k2's label windows, not k3's
        labels = [(lb.click_id, lb.converted, lb.revenue) for lb in a.drain_labels()]
        a = rebuild(a, log, reverse)
        assert set(a.open) == {"k3"}
        advance(a, T0 + 700)
        labels += [(lb.click_id, lb.converted, lb.revenue) for lb in a.drain_labels()]
        a = rebuild(a, log, reverse)
        assert a.open == {}
        advance(a, T0 + 9000)
        assert a.drain_labels() == []
        assert labels == [("k1", True, 10.0), ("k2", True, 7.0), ("k3", False, None)]


def test_a_shorter_label_window_labels_sooner_and_a_later_conversion_still_counts() -> None:
    a = Attribution(replace(LABELLED, label_window_seconds=100.0))
    a.on_click(click(4, T0), scored(4))
    advance(a, T0 + 100 + 21)
    [label] = a.drain_labels()
    assert (label.click_id, label.converted) == ("k4", False)
    assert a.on_conversion(conversion(4, T0 + 300), 10.0) is Outcome.ATTRIBUTED
    assert a.drain_labels() == []  # learnt once, as a negative
    conversions = sums(a.drain_deltas())[("c1", T0, "conversion")]
    assert (conversions.conversions, conversions.revenue) == (1, 10.0)
    assert conversions.open_expected_revenue == -scored(4).expected_value  # closed once


def test_the_order_value_is_learnt_at_the_conversion_and_p_at_the_label() -> None:
    a = Attribution(LABELLED, ConversionModel())
    first = click(5, T0)
    a.on_click(first)
    [(_, seen)] = a.drain_scored_clicks()
    assert seen.expected_value == 0.0  # no order value known yet
    a.on_conversion(conversion(5, T0 + 30), 40.0)
    assert a.model is not None
    assert a.model.samples_seen == 0
    assert a.model.predict(seen.features).expected_value > 0
    assert "model|conversion" in dict(a.changes())  # snapshotted with the offsets
    advance(a, T0 + 600 + 21)
    assert a.learn() is not None
    assert a.model.samples_seen == 1


# -- event-time progress and lateness, for the aggregation stage ---------------------------
TIMED = replace(CONFIG, allowed_lateness_seconds=30.0, conversion_grace_seconds=3600.0)


def late_sums(deltas: list[CampaignDelta]) -> dict[tuple[float, str, bool], int]:
    out: dict[tuple[float, str, bool], int] = {}
    for d in deltas:
        t = Totals.from_list(d.totals)
        key = (d.window_start, d.kind, d.late)
        out[key] = out.get(key, 0) + (t.clicks if d.kind == "click" else t.conversions)
    return out


def test_progress_is_reported_after_the_deltas_whenever_it_moves() -> None:
    a = Attribution(TIMED, partition=3)
    assert a.drain_progress() is None  # nothing read yet
    a.on_click(click(1, T0 + 5))
    [delta] = a.drain_deltas()
    assert (delta.source, delta.late) == (3, False)
    progress = a.drain_progress()
    assert progress == CampaignDelta.progress(3, T0 + 5, 0.0)
    assert (progress.kind, progress.click_watermark, progress.conversion_watermark) == (
        "progress",
        T0 + 5,
        0.0,
    )
    assert a.drain_progress() is None  # unchanged
    a.on_click(click(2, T0 + 1))  # older: the watermark does not move
    assert a.drain_progress() is None
    a.on_conversion(conversion(1, T0 + 9), 10.0)
    assert a.drain_progress() == CampaignDelta.progress(3, T0 + 5, T0 + 9)
    assert Attribution(TIMED).drain_progress() is None  # no partition, nothing to report


def test_clicks_and_conversions_late_in_their_own_stream_go_in_late_deltas() -> None:
    a = Attribution(TIMED, partition=0)
    a.on_click(click(1, T0 + 5))
    a.on_click(click(2, T0 + 200))
    a.on_click(click(3, T0 + 30))  # window T0 ends at 60: 60 + 30 <= 200
    a.on_click(click(4, T0 + 170))  # window T0+120 ends at 180: 180 + 30 > 200
    a.on_conversion(conversion(9, T0 + 60 + 600 + 30, click_n=99), 1.0)  # conversion time
    a.on_conversion(conversion(1, T0 + 500), 10.0)  # T0 + 60 + 600 + 30 <= 690
    a.on_conversion(conversion(4, T0 + 600), 10.0)  # window T0+120: 180 + 630 > 690
    assert late_sums(a.drain_deltas()) == {
        (T0, "click", False): 1,
        (T0, "click", True): 1,
        (T0 + 180, "click", False): 1,
        (T0 + 120, "click", False): 1,
        (T0, "conversion", True): 1,
        (T0 + 120, "conversion", False): 1,
    }


def test_a_waiting_conversion_is_judged_by_when_it_was_read() -> None:
    log: dict[str, object] = {}
    a = Attribution(TIMED, partition=0)
    a.on_conversion(conversion(0, T0 + 800, click_n=100), 1.0)  # conversion time is at 800
    a.on_conversion(conversion(1, T0 + 50), 10.0)  # read late: 60 + 600 + 30 <= 800
    a.on_conversion(conversion(2, T0 + 799), 10.0)  # on time
    a = restore_through(log, a, lambda: Attribution(TIMED, partition=0))
    a.on_click(click(1, T0 + 10))
    a.on_click(click(2, T0 + 700))
    assert late_sums(a.drain_deltas()) == {
        (T0, "click", False): 1,
        (T0 + 660, "click", False): 1,
        (T0, "conversion", True): 1,
        (T0 + 660, "conversion", False): 1,
    }
    # entries written before the read-at watermark was kept count as read on time
    old = Attribution(TIMED, partition=0)
    old.restore("pending|k1", [["conv-ev-1", 10.0, T0 + 50]])
    old.on_click(click(1, T0 + 10))
    assert late_sums(old.drain_deltas())[(T0, "conversion", False)] == 1


def test_a_late_conversion_still_closes_its_clicks_expected_revenue_in_the_window() -> None:
    a = Attribution(replace(LABELLED, allowed_lateness_seconds=30.0), partition=0)
    a.on_click(click(1, T0 + 5), scored(1))
    a.on_conversion(conversion(9, T0 + 700, click_n=99), 1.0)
    a.on_conversion(conversion(1, T0 + 100), 10.0)  # late: 60 + 600 + 30 <= 700
    deltas = {(d.kind, d.late): Totals.from_list(d.totals) for d in a.drain_deltas()}
    assert (deltas["conversion", True].conversions, deltas["conversion", True].revenue) == (1, 10.0)
    assert deltas["conversion", True].open_expected_revenue == 0.0
    assert deltas["conversion", False].open_expected_revenue == -2.0  # no longer open
