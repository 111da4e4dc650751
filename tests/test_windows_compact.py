"""The compact (flat-array) EndpointWindow answers exactly like the object-per-sample original.

The reference below is the pre-compaction implementation, kept verbatim in behaviour: a deque of
frozen points scanned newest first. Every read of the real window must equal the reference's
bit for bit (same floats, summed in the same order), for random sample sequences with
out-of-order and duplicate timestamps, counter resets, replicas that vanish and come back,
missing signals, short retentions and arbitrary spans and `now`s (including negative, zero,
infinite and NaN ones).
"""

from __future__ import annotations

import gc
import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.platform.signals import STATUS_CLASSES, FeedSample
from controller.platform.windows import SIGNALS, EndpointWindow, WindowStore

T0 = 1_700_000_000.0
_CLASS_INDEX = {c: i + 1 for i, c in enumerate(STATUS_CLASSES)}


# ------------------------------------------------------------------------------ reference model


@dataclass(frozen=True, slots=True)
class _Point:
    at: float
    values: tuple[float | None, ...]
    served: tuple[float, ...]


def _request_series(sample: FeedSample) -> Mapping[tuple[str, str], float]:
    if sample.request_series:
        return sample.request_series
    if sample.requests:
        return {("", cls): v for cls, v in sample.requests.items()}
    return {(replica, "other"): v for replica, v in sample.requests_by_replica.items()}


class RefWindow:
    """The original implementation: one Python object per sample, linear scans."""

    def __init__(self, *, retention_s: float) -> None:
        self.retention_s = retention_s
        self._points: deque[_Point] = deque()
        self._latest: FeedSample | None = None
        self._served = [0.0] * (1 + len(STATUS_CLASSES))
        self._last_seen: dict[tuple[str, str], tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._points)

    @property
    def latest(self) -> FeedSample | None:
        return self._latest

    def age(self, now: float) -> float | None:
        return None if self._latest is None else now - self._latest.at

    def add(self, sample: FeedSample) -> None:
        if self._latest is not None and sample.at <= self._latest.at:
            return
        for series, value in _request_series(sample).items():
            seen = self._last_seen.get(series)
            increase = value if seen is None or value < seen[0] else value - seen[0]
            self._served[0] += increase
            self._served[_CLASS_INDEX.get(series[1], _CLASS_INDEX["other"])] += increase
            self._last_seen[series] = (value, sample.at)
        self._points.append(
            _Point(sample.at, tuple(sample.value(s) for s in SIGNALS), tuple(self._served))
        )
        self._latest = sample
        horizon = sample.at - self.retention_s
        while self._points and self._points[0].at <= horizon:
            self._points.popleft()
        stale = [k for k, (_, at) in self._last_seen.items() if at <= horizon]
        for k in stale:
            del self._last_seen[k]

    def _span(self, span_s: float, now: float) -> Iterator[_Point]:
        start = now - span_s
        for point in reversed(self._points):
            if point.at <= start:
                return
            if point.at <= now:
                yield point

    def count(self, span_s: float, now: float) -> int:
        return sum(1 for _ in self._span(span_s, now))

    def _values(self, signal: str, span_s: float, now: float) -> list[float]:
        i = SIGNALS.index(signal)  # type: ignore[arg-type]
        return [v for p in self._span(span_s, now) if (v := p.values[i]) is not None]

    def mean(self, signal: str, *, span_s: float, now: float) -> float | None:
        values = self._values(signal, span_s, now)
        return sum(values) / len(values) if values else None

    def max(self, signal: str, *, span_s: float, now: float) -> float | None:
        values = self._values(signal, span_s, now)
        return max(values) if values else None

    def request_rate(
        self, *, span_s: float, now: float, status_class: str | None = None
    ) -> float | None:
        idx = 0 if status_class is None else _CLASS_INDEX[status_class]
        newest: _Point | None = None
        oldest: _Point | None = None
        for point in self._span(span_s, now):
            newest = newest or point
            oldest = point
        if newest is None or oldest is None or newest is oldest:
            return None
        elapsed = newest.at - oldest.at
        if elapsed <= 0:
            return None
        return (newest.served[idx] - oldest.served[idx]) / elapsed


# ------------------------------------------------------------------------------ strategies

_REPLICAS = ("r1", "r2", "r3")
_value = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
_counter = st.one_of(
    st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=1000).map(float),  # small: resets and repeats are likely
)
_per_replica = st.dictionaries(st.sampled_from(_REPLICAS), _value, max_size=3)
_classes = st.sampled_from(STATUS_CLASSES)
_series = st.dictionaries(st.tuples(st.sampled_from(("", *_REPLICAS)), _classes), _counter)


@st.composite
def _sample(draw: st.DrawFn, at: float) -> FeedSample:
    """A sample with random signals and one of the three counter granularities."""
    shape = draw(st.sampled_from(("series", "classes", "replicas", "none")))
    series = draw(_series) if shape == "series" else {}
    requests = draw(st.dictionaries(_classes, _counter)) if shape == "classes" else {}
    by_replica = (
        draw(st.dictionaries(st.sampled_from(_REPLICAS), _counter)) if shape == "replicas" else {}
    )
    return FeedSample(
        at=at,
        pending=draw(st.none() | _value),
        cpu=draw(_per_replica),
        gpu=draw(_per_replica),
        memory=draw(_per_replica),
        gpu_memory=draw(_per_replica),
        requests=requests,
        requests_by_replica=by_replica,
        request_series=series,
    )


# Timestamps on a coarse grid around T0, so duplicates and out-of-order arrivals are common.
_at = st.integers(min_value=-5, max_value=400).map(lambda k: T0 + k * 2.5)
_span = st.one_of(
    st.sampled_from([0.0, -10.0, 2.5, 15.0, 60.0, 900.0, math.inf, -math.inf, math.nan]),
    st.floats(min_value=0.01, max_value=2000, allow_nan=False),
)
_retention = st.sampled_from([1.0, 7.5, 30.0, 120.0, 900.0, 1e9])


def _same(a: object, b: object) -> bool:
    """Equal including the type of None, the sign of zero and NaN-ness."""
    if a is None or b is None:
        return a is b
    assert isinstance(a, float | int)
    assert isinstance(b, float | int)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _check(w: EndpointWindow, ref: RefWindow, span_s: float, now: float) -> None:
    assert len(w) == len(ref)
    assert w.latest is ref.latest
    assert _same(w.age(now), ref.age(now))
    assert w.count(span_s, now) == ref.count(span_s, now)
    for signal in SIGNALS:
        got, want = w.mean(signal, span_s=span_s, now=now), ref.mean(signal, span_s=span_s, now=now)
        assert _same(got, want), (signal, "mean", got, want)
        got, want = w.max(signal, span_s=span_s, now=now), ref.max(signal, span_s=span_s, now=now)
        assert _same(got, want), (signal, "max", got, want)
    for cls in (None, *STATUS_CLASSES):
        got = w.request_rate(span_s=span_s, now=now, status_class=cls)
        want = ref.request_rate(span_s=span_s, now=now, status_class=cls)
        assert _same(got, want), (cls, "rate", got, want)


# ------------------------------------------------------------------------------ properties


@settings(max_examples=120, deadline=None)
@given(retention_s=_retention, data=st.data())
def test_compact_window_matches_reference(retention_s, data):
    """After every add, every read agrees with the reference for a random span and `now`."""
    w = EndpointWindow(retention_s=retention_s)
    ref = RefWindow(retention_s=retention_s)
    for _ in range(data.draw(st.integers(min_value=0, max_value=40), label="adds")):
        at = data.draw(_at, label="at")
        sample = data.draw(_sample(at), label="sample")
        w.add(sample)
        ref.add(sample)
        now = data.draw(
            st.one_of(
                st.floats(min_value=-30, max_value=30, allow_nan=False).map(at.__add__),
                _at,
                st.sampled_from([math.inf, -math.inf, math.nan]),
            ),
            label="now",
        )
        _check(w, ref, data.draw(_span, label="span_s"), now)
    assert repr(w).startswith(f"EndpointWindow(samples={len(ref)}, ")


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.001, max_value=40, allow_nan=False), max_size=80),
    data=st.data(),
)
def test_compact_window_matches_reference_on_real_scrape_cadence(gaps, data):
    """Strictly increasing epoch timestamps at irregular gaps, 900 s retention, many queries."""
    w = EndpointWindow(retention_s=900.0)
    ref = RefWindow(retention_s=900.0)
    at = T0
    for gap in gaps:
        at += gap
        sample = data.draw(_sample(at), label="sample")
        w.add(sample)
        ref.add(sample)
    for _ in range(5):
        _check(w, ref, data.draw(_span, label="span_s"), at - data.draw(_value, label="back"))
    _check(w, ref, 60.0, at)


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_window_store_matches_a_dict_of_reference_windows(data):
    """get/add/forget_except keep the same windows as a plain dict of reference windows."""
    store = WindowStore(retention_s=120.0)
    refs: dict[str, RefWindow] = {}
    keys = st.sampled_from(["ns/a", "ns/b", "other/c"])
    for _ in range(data.draw(st.integers(min_value=0, max_value=30))):
        op = data.draw(st.sampled_from(["add", "get", "forget"]))
        if op == "forget":
            keep = data.draw(st.frozensets(keys))
            store.forget_except(keep)
            refs = {k: r for k, r in refs.items() if k in keep}
        else:
            key = data.draw(keys)
            refs.setdefault(key, RefWindow(retention_s=120.0))
            if op == "add":
                sample = data.draw(_sample(data.draw(_at)))
                store.add(key, sample)
                refs[key].add(sample)
            else:
                store.get(key)
        assert sorted(store.keys()) == sorted(refs)
        assert len(store) == len(refs)
        for key, ref in refs.items():
            assert key in store
            _check(store[key], ref, 60.0, T0 + 500)


def _containers_held(w: EndpointWindow) -> int:
    """GC-tracked objects reachable from the window, not counting into the latest sample."""
    seen: set[int] = set()
    todo: list[object] = [w]
    tracked = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type | FeedSample):
            continue
        seen.add(id(obj))
        tracked += gc.is_tracked(obj)
        todo.extend(gc.get_referents(obj))
    return tracked


def test_history_holds_no_object_per_sample():
    """61 samples of history hold as many containers as 2: nothing per sample for GC to walk."""
    windows = []
    for n in (2, 61):
        w = EndpointWindow(retention_s=1e9)
        for i in range(n):
            w.add(FeedSample(at=T0 + 15 * i, pending=float(i), request_series={("a", "2xx"): i}))
        assert len(w) == n
        windows.append(w)
    assert _containers_held(windows[0]) == _containers_held(windows[1])
