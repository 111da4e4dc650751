"""EndpointWindow / WindowStore: span selection, per-replica averaging, reset-safe rates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.platform.signals import FeedSample
from controller.platform.windows import EndpointWindow, WindowStore

T0 = 1_700_000_000.0


def window(*samples: FeedSample, retention_s: float = 900.0) -> EndpointWindow:
    w = EndpointWindow(retention_s=retention_s)
    for s in samples:
        w.add(s)
    return w


def pending_series(*values: float | None, step: float = 10.0) -> EndpointWindow:
    return window(*(FeedSample(at=T0 + i * step, pending=v) for i, v in enumerate(values)))


def reqs(at: float, **by_replica: float) -> FeedSample:
    """A sample whose 2xx counters are given per replica."""
    series = {(r, "2xx"): v for r, v in by_replica.items()}
    return FeedSample(
        at=T0 + at,
        requests={"2xx": sum(by_replica.values())},
        requests_by_replica=dict(by_replica),
        request_series=series,
    )


# ------------------------------------------------------------------------------ span selection


@pytest.mark.parametrize(
    ("span_s", "now_offset", "expected"),
    [
        pytest.param(30.0, 50.0, (3 + 4 + 5) / 3, id="last-three"),
        pytest.param(1000.0, 50.0, 2.5, id="all"),
        pytest.param(10.0, 50.0, 5.0, id="start-excluded-end-included"),
        pytest.param(30.0, 25.0, (0 + 1 + 2) / 3, id="samples-after-now-ignored"),
        pytest.param(5.0, 55.0, None, id="empty-span"),
        pytest.param(30.0, -1.0, None, id="before-everything"),
    ],
)
def test_mean_over_span(span_s, now_offset, expected):
    """mean() averages the samples with `at` in (now - span, now]."""
    w = pending_series(0, 1, 2, 3, 4, 5)  # at T0, T0+10, ..., T0+50
    assert w.mean("pending", span_s=span_s, now=T0 + now_offset) == expected


def test_mean_skips_missing_values_and_max():
    """Samples without the signal are skipped; max() takes the largest per-sample value."""
    w = pending_series(4, None, 8)
    assert w.mean("pending", span_s=100, now=T0 + 20) == 6.0
    assert w.max("pending", span_s=100, now=T0 + 20) == 8.0
    assert w.max("gpu", span_s=100, now=T0 + 20) is None
    assert w.count(100, T0 + 20) == 3


def test_per_replica_signals_are_averaged_per_sample_first():
    """Each sample's replicas are averaged before the samples are (a 2-replica sample weighs 1)."""
    w = window(
        FeedSample(at=T0, cpu={"a": 10.0, "b": 30.0, "c": 50.0}),  # 30
        FeedSample(at=T0 + 10, cpu={"a": 90.0}),  # 90
    )
    assert w.mean("cpu", span_s=60, now=T0 + 10) == 60.0
    assert w.max("cpu", span_s=60, now=T0 + 10) == 90.0


def test_latest_and_age():
    """latest is the newest sample; age is measured from the given `now`."""
    w = EndpointWindow()
    assert w.latest is None
    assert w.age(T0) is None
    w.add(FeedSample(at=T0, pending=1))
    w.add(FeedSample(at=T0 + 15, pending=2))
    assert w.latest is not None
    assert w.latest.pending == 2
    assert w.age(T0 + 20) == 5.0


@pytest.mark.parametrize("offset", [pytest.param(-5.0, id="older"), pytest.param(0.0, id="same")])
def test_out_of_order_samples_are_ignored(offset):
    """A sample not newer than the latest is dropped (late or duplicate scrape)."""
    w = window(FeedSample(at=T0, pending=1), FeedSample(at=T0 + 10, pending=2))
    w.add(FeedSample(at=T0 + 10 + offset, pending=100))
    assert w.latest is not None
    assert w.latest.pending == 2
    assert len(w) == 2


def test_retention_prunes_old_samples():
    """Samples older than retention (relative to the newest) are dropped."""
    w = window(*(FeedSample(at=T0 + t, pending=t) for t in range(0, 201, 10)), retention_s=60)
    assert len(w) == 6  # 150..200
    assert w.count(10_000, T0 + 200) == 6
    assert w.mean("pending", span_s=10_000, now=T0 + 200) == 175.0


def test_invalid_retention():
    """Retention must be positive."""
    with pytest.raises(ValueError, match="retention_s"):
        EndpointWindow(retention_s=0)


# ------------------------------------------------------------------------------ request rates


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        pytest.param([reqs(0, a=100), reqs(60, a=160)], 1.0, id="monotone"),
        pytest.param([reqs(0, a=100), reqs(30, a=10), reqs(60, a=30)], 0.5, id="reset"),
        pytest.param([reqs(0, a=100), reqs(60, a=110, b=50)], 1.0, id="replica-appears"),
        pytest.param([reqs(0, a=100, b=50), reqs(60, a=160)], 1.0, id="replica-disappears"),
        pytest.param(
            [reqs(0, a=100, b=50), reqs(30, a=110), reqs(60, a=120, b=70)],
            40 / 60,
            id="replica-flaps-back",
        ),
        pytest.param(
            [reqs(0, a=100), reqs(30, b=5), reqs(60, c=7)], 12 / 60, id="full-replica-churn"
        ),
        pytest.param([reqs(0, a=100), reqs(60, a=100)], 0.0, id="idle"),
        pytest.param([reqs(0, a=100)], None, id="one-sample"),
        pytest.param([], None, id="no-samples"),
    ],
)
def test_request_rate_is_reset_safe(samples, expected):
    """Rates count a decrease or a new replica as increase from 0, per series, like rate()."""
    w = window(*samples)
    rate = w.request_rate(span_s=120, now=T0 + 60)
    assert rate == (pytest.approx(expected) if expected is not None else None)


def test_request_rate_uses_only_the_span():
    """Only samples inside (now - span, now] count; fewer than two gives None."""
    w = window(reqs(0, a=0), reqs(60, a=600), reqs(120, a=660))
    assert w.request_rate(span_s=61, now=T0 + 120) == pytest.approx(1.0)
    assert w.request_rate(span_s=200, now=T0 + 120) == pytest.approx(5.5)
    assert w.request_rate(span_s=30, now=T0 + 120) is None


def test_request_rate_by_status_class():
    """status_class restricts the rate to one class; each class is reset-safe on its own."""
    a = FeedSample(
        at=T0,
        request_series={("r1", "2xx"): 100.0, ("r1", "5xx"): 10.0},
    )
    b = FeedSample(
        at=T0 + 10,
        request_series={("r1", "2xx"): 150.0, ("r1", "5xx"): 2.0, ("r1", "4xx"): 3.0},
    )
    w = window(a, b)
    assert w.request_rate(span_s=60, now=T0 + 10) == pytest.approx((50 + 2 + 3) / 10)
    assert w.request_rate(span_s=60, now=T0 + 10, status_class="2xx") == pytest.approx(5.0)
    assert w.request_rate(span_s=60, now=T0 + 10, status_class="5xx") == pytest.approx(0.2)
    assert w.request_rate(span_s=60, now=T0 + 10, status_class="4xx") == pytest.approx(0.3)
    assert w.request_rate(span_s=60, now=T0 + 10, status_class="3xx") == 0.0
    with pytest.raises(ValueError, match="status_class"):
        w.request_rate(span_s=60, now=T0 + 10, status_class="2XX")


def test_request_rate_from_hand_built_class_counters():
    """A sample carrying only per-class totals still yields rates (one series per class)."""
    w = window(
        FeedSample(at=T0, requests={"2xx": 10.0, "5xx": 1.0}),
        FeedSample(at=T0 + 10, requests={"2xx": 30.0, "5xx": 1.0}),
    )
    assert w.request_rate(span_s=60, now=T0 + 10) == pytest.approx(2.0)
    assert w.request_rate(span_s=60, now=T0 + 10, status_class="5xx") == 0.0


# ------------------------------------------------------------------------------ store


def test_window_store_creates_adds_and_forgets():
    """get() creates on first use, add() appends, forget_except() drops unmanaged endpoints."""
    store = WindowStore(retention_s=120)
    store.add("ns/a", FeedSample(at=T0, pending=1))
    store.add("ns/b", FeedSample(at=T0, pending=2))
    assert store.get("ns/c").latest is None
    assert set(store) == {"ns/a", "ns/b", "ns/c"}
    assert store.get("ns/a").retention_s == 120
    store.forget_except({"ns/a"})
    assert "ns/a" in store
    assert "ns/b" not in store
    assert len(store) == 1
    assert store["ns/a"].latest is not None
    assert store.keys() == ["ns/a"]


# ------------------------------------------------------------------------------ invariants

_offsets = st.lists(
    st.floats(min_value=0.1, max_value=100, allow_nan=False), min_size=1, max_size=30
)


@settings(max_examples=150, deadline=None)
@given(
    gaps=_offsets,
    data=st.data(),
    span_s=st.floats(min_value=0.1, max_value=5000, allow_nan=False),
    now_back=st.floats(min_value=0, max_value=500, allow_nan=False),
)
def test_mean_lies_between_min_and_max_of_span(gaps, data, span_s, now_back):
    """For any samples and span, min <= mean <= max of the per-sample values in the span."""
    values = data.draw(
        st.lists(
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
            min_size=len(gaps),
            max_size=len(gaps),
        )
    )
    w = EndpointWindow(retention_s=1e9)
    at = T0
    points = []
    for gap, v in zip(gaps, values, strict=True):
        at += gap
        w.add(FeedSample(at=at, pending=v))
        points.append((at, v))
    now = at - now_back
    inside = [v for t, v in points if now - span_s < t <= now]
    mean = w.mean("pending", span_s=span_s, now=now)
    if not inside:
        assert mean is None
        assert w.max("pending", span_s=span_s, now=now) is None
    else:
        assert mean is not None
        tol = 1e-9 * max(1.0, max(inside))
        assert min(inside) - tol <= mean <= max(inside) + tol
        assert w.max("pending", span_s=span_s, now=now) == max(inside)
    assert w.count(span_s, now) == len(inside)


_counter_sample = st.dictionaries(
    keys=st.sampled_from(["r1", "r2", "r3"]),
    values=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    max_size=3,
)


@settings(max_examples=150, deadline=None)
@given(
    gaps=_offsets,
    data=st.data(),
    span_s=st.floats(min_value=0.1, max_value=5000, allow_nan=False),
)
def test_rate_never_negative_under_arbitrary_resets(gaps, data, span_s):
    """Whatever counters do (reset, vanish, reappear), the request rate is >= 0 or None."""
    w = EndpointWindow(retention_s=1e9)
    at = T0
    for gap in gaps:
        at += gap
        counters = data.draw(_counter_sample)
        w.add(reqs(at - T0, **counters))
    for status_class in (None, "2xx", "5xx"):
        rate = w.request_rate(span_s=span_s, now=at, status_class=status_class)
        assert rate is None or (rate >= 0 and math.isfinite(rate))


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.5, max_value=60, allow_nan=False), min_size=2, max_size=20),
    data=st.data(),
)
def test_rate_of_monotone_counter_is_exact(gaps, data):
    """With a single never-reset counter the rate is (last - first) / elapsed."""
    incs = data.draw(
        st.lists(st.integers(min_value=0, max_value=10_000), min_size=len(gaps), max_size=len(gaps))
    )
    w = EndpointWindow(retention_s=1e9)
    at, value = 0.0, 0
    first = None
    for gap, inc in zip(gaps, incs, strict=True):
        at += gap
        value += inc
        first = value if first is None else first
        w.add(reqs(at, a=value))
    elapsed = at - gaps[0]
    expected = (value - first) / elapsed
    rate = w.request_rate(span_s=1e9, now=T0 + at)
    assert rate == pytest.approx(expected, rel=1e-6, abs=1e-9)  # epoch-sized floats


def test_public_names_exist():
    """Every name in __all__ is defined (guards the public surface)."""
    import controller.platform.windows as mod

    assert all(hasattr(mod, name) for name in mod.__all__)
