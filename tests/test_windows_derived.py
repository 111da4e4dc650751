"""Derived in-flight requests (Little's law) in the windows: cumulative and windowed latency
summaries, counter resets, 5xx left out, the per-replica split, and the fallback order."""

from __future__ import annotations

import pytest

from controller.platform.signals import FeedSample
from controller.platform.windows import EndpointWindow

T0 = 1_700_000_000.0


def feed(
    at: float,
    *,
    ok: dict[str, float],
    count: float | None,
    total: float | None,
    errors: float = 0.0,
    pending: float | None = None,
) -> FeedSample:
    """A published-shape sample: 200s per replica, 503s at the proxy, the summary's count/sum."""
    series = {(r, "2xx"): v for r, v in ok.items()}
    if errors:
        series[("proxy", "5xx")] = errors
    return FeedSample(
        at=T0 + at,
        pending=pending,
        request_series=series,
        latency_count=count,
        latency_sum=total,
    )


def window(*samples: FeedSample) -> EndpointWindow:
    w = EndpointWindow(retention_s=900)
    for s in samples:
        w.add(s)
    return w


def test_cumulative_summary_uses_the_increases():
    """Cumulative summary: rate x (sum increase / count increase) over the span."""
    w = window(
        feed(0, ok={"a": 100, "b": 50}, count=150, total=300),  # lifetime mean 2 s
        feed(15, ok={"a": 130, "b": 80}, count=210, total=480),  # 60 done in 15 s at 3 s each
    )
    got = w.derived_in_flight(span_s=15, now=T0 + 15)
    assert got is not None
    assert got.source == "littles_law"
    assert got.rate == pytest.approx(4.0)
    assert got.latency_s == pytest.approx(3.0)
    assert got.value == pytest.approx(12.0)
    assert got.per_replica == pytest.approx({"a": 6.0, "b": 6.0})
    assert "Little's law" in got.describe()


def test_windowed_summary_uses_each_samples_mean_once_it_is_seen_to_fall():
    """A summary whose count falls with no counter reset covers a recent window: its sum/count
    is the mean, not the increase (which here would be negative)."""
    w = window(
        feed(0, ok={"a": 0}, count=0, total=0),
        feed(15, ok={"a": 30}, count=30, total=30.0),  # rising: indistinguishable yet
        feed(30, ok={"a": 60}, count=20, total=40.0),  # fell: windowed, mean 2 s
        feed(45, ok={"a": 90}, count=20, total=40.0),
    )
    got = w.derived_in_flight(span_s=15, now=T0 + 45)
    assert got is not None
    assert got.latency_s == pytest.approx(2.0)
    assert got.value == pytest.approx(2.0 * 2.0)
    # once windowed, always: even a rising stretch is read as window means
    w.add(feed(60, ok={"a": 150}, count=60, total=60.0))
    later = w.derived_in_flight(span_s=15, now=T0 + 60)
    assert later is not None
    assert later.latency_s == pytest.approx(1.0)


def test_a_fall_with_a_counter_reset_is_a_restart_not_a_window():
    """A replica restart resets its counter and the summary together: still cumulative."""
    w = window(
        feed(0, ok={"a": 500}, count=500, total=500.0),
        feed(15, ok={"a": 10}, count=10, total=20.0),  # restarted
        feed(30, ok={"a": 40}, count=40, total=110.0),  # 30 done at 3 s
    )
    got = w.derived_in_flight(span_s=15, now=T0 + 30)
    assert got is not None
    assert got.latency_s == pytest.approx(3.0)
    assert got.value == pytest.approx(2.0 * 3.0)


def test_rejections_are_not_in_flight():
    """503s (5xx) add to the request rate but were never in flight: left out."""
    w = window(
        feed(0, ok={"a": 0}, count=0, total=0, errors=0),
        feed(10, ok={"a": 10}, count=10, total=10.0, errors=500),
    )
    got = w.derived_in_flight(span_s=10, now=T0 + 10)
    assert got is not None
    assert got.rate == pytest.approx(1.0)
    assert got.value == pytest.approx(1.0)
    assert "proxy" not in got.per_replica


def test_idle_is_zero_and_unknown_latency_is_no_data():
    """Nothing completed: 0 in flight even with no latency; completions without any latency
    figure: None (a guess would be an action on missing data)."""
    idle = window(
        feed(0, ok={"a": 5}, count=None, total=None), feed(15, ok={"a": 5}, count=None, total=None)
    )
    got = idle.derived_in_flight(span_s=15, now=T0 + 15)
    assert got is not None
    assert got.value == 0.0
    assert got.latency_s is None
    busy = window(
        feed(0, ok={"a": 5}, count=None, total=None), feed(15, ok={"a": 9}, count=None, total=None)
    )
    assert busy.derived_in_flight(span_s=15, now=T0 + 15) is None
    assert (
        window(feed(0, ok={"a": 5}, count=1, total=1)).derived_in_flight(span_s=15, now=T0) is None
    )


def test_span_reaches_back_to_the_sample_before_it():
    """A span of one tick spans the two newest samples; a longer one the sample at or before
    its start."""
    w = window(
        *(feed(15 * i, ok={"a": 10 * i * i}, count=10 * i * i, total=20 * i * i) for i in range(6))
    )
    one = w.derived_in_flight(span_s=15, now=T0 + 75)
    assert one is not None
    assert one.span_s == 15
    assert one.rate == pytest.approx((250 - 160) / 15)
    four = w.derived_in_flight(span_s=60, now=T0 + 75)
    assert four is not None
    assert four.span_s == 60
    assert four.rate == pytest.approx((250 - 10) / 60)
    assert four.value == pytest.approx(four.rate * 2.0)


def test_in_flight_prefers_the_pending_series():
    """`in_flight` is the mean pending when the feed has it, the derived figure otherwise."""
    with_pending = window(
        feed(0, ok={"a": 0}, count=0, total=0, pending=3),
        feed(15, ok={"a": 30}, count=30, total=60, pending=5),
    )
    got = with_pending.in_flight(span_s=30, now=T0 + 15)
    assert got is not None
    assert (got.value, got.source) == (4.0, "pending")
    without = window(
        feed(0, ok={"a": 0}, count=0, total=0), feed(15, ok={"a": 30}, count=30, total=60)
    )
    got = without.in_flight(span_s=30, now=T0 + 15)
    assert got is not None
    assert got.source == "littles_law"
    assert got.value == pytest.approx(2.0 * 2.0)
    values, sources = without.readings(span_s=15, now=T0 + 15)
    assert sources == {"in_flight": "littles_law"}
    assert values["in_flight"] == values["derived_in_flight"] == pytest.approx(4.0)
    assert "pending" not in values
