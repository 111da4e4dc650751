"""Time-indexed sliding windows of feed samples, one per endpoint (Knative/Ray style).

Samples are kept with *their* scrape timestamp; every read takes `now` and a span and looks at the
samples with `at` in `(now - span_s, now]`, so a missed scrape shortens the evidence instead of
shifting it, and a window with nothing recent says "no data" (None) rather than repeating old news.
Nothing here reads a clock.

Memory: a window keeps the full latest `FeedSample` and, per older sample, only a compact point: the
five scalar signals (per-replica signals already averaged over replicas) and running totals of the
reset-safe request increase (overall and per status class). Rates over any span are then one
subtraction, like a Knative running sum. Points live in two flat `array('d')`s, not as Python
objects (each point was three GC-tracked objects and a dozen float objects, ~500 bytes): `_at`
holds the timestamps (sorted, so a span is found by bisection) and `_data` one row of `_stride`
doubles per point. A row only has columns for the signals and totals this endpoint has ever had:
a signal never seen is NaN ("no value") in every point and a status class never served is 0.0, so
neither is stored until it appears (the rows are then widened once). A typical endpoint (five
signals, 2xx only) costs 64 bytes per point: ~4 KB for 15 minutes of 15 s ticks. A NaN signal
value therefore reads as missing; `parse_feed` never produces one.

Counter resets follow Prometheus `rate()` per series, a series being one (replica, status class)
counter: a decrease means the counter restarted, so its new value is all increase; a series never
seen before (a new replica) counts from 0; a series that vanished and comes back is compared with
its last value seen within the retention.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator, Mapping

from controller.platform.signals import STATUS_CLASSES, FeedSample, Signal

__all__ = ["READINGS", "SIGNALS", "EndpointWindow", "WindowStore"]

SIGNALS: tuple[Signal, ...] = ("pending", "cpu", "gpu", "memory", "gpu_memory")
_SIGNAL_INDEX = {s: i for i, s in enumerate(SIGNALS)}
_CLASS_INDEX = {c: i + 1 for i, c in enumerate(STATUS_CLASSES)}  # 0 is "all classes"
_NAN = float("nan")
# A point's logical columns: SIGNALS (missing: NaN), then the served totals (all, then classes).
_SERVED = len(SIGNALS)
_COLUMNS = len(SIGNALS) + 1 + len(STATUS_CLASSES)
_DEFAULTS = (_NAN,) * len(SIGNALS) + (0.0,) * (1 + len(STATUS_CLASSES))
# What `readings` reports (Governor's own /metrics re-exports them): a fixed vocabulary, so the
# exported label values stay bounded. `in_flight` is the load the demand policies size for.
_QUANTILES = {0.5: "latency_p50_seconds", 0.9: "latency_p90_seconds", 0.99: "latency_p99_seconds"}
READINGS: tuple[str, ...] = (
    "in_flight",
    "pending",
    *SIGNALS[1:],
    "request_rate",
    *_QUANTILES.values(),
)


def _request_series(sample: FeedSample) -> Mapping[tuple[str, str], float]:
    """Counters per (replica, class); hand-built samples may only carry the coarser mappings."""
    if sample.request_series:
        return sample.request_series
    if sample.requests:
        return {("", cls): v for cls, v in sample.requests.items()}
    return {(replica, "other"): v for replica, v in sample.requests_by_replica.items()}


class EndpointWindow:
    """One endpoint's samples over the last `retention_s` seconds (measured from its newest)."""

    __slots__ = (
        "_at",
        "_col",
        "_cols",
        "_data",
        "_last_seen",
        "_latest",
        "_served",
        "_stride",
        "retention_s",
    )

    def __init__(self, *, retention_s: float = 900.0) -> None:
        if retention_s <= 0:
            raise ValueError(f"retention_s must be > 0, got {retention_s}")
        self.retention_s = retention_s
        self._at = array("d")  # one timestamp per point, strictly increasing
        self._data = array("d")  # one row of `_stride` doubles per point
        self._col = [-1] * _COLUMNS  # logical column -> its place in a row; -1: not stored
        self._cols: list[int] = []  # the stored logical columns, in row order
        self._stride = 0
        self._latest: FeedSample | None = None
        self._served = [0.0] * (1 + len(STATUS_CLASSES))
        self._last_seen: dict[tuple[str, str], tuple[float, float]] = {}  # series -> (value, at)

    def __len__(self) -> int:
        return len(self._at)

    def __repr__(self) -> str:
        at = self._latest.at if self._latest is not None else None
        return f"EndpointWindow(samples={len(self._at)}, latest_at={at})"

    @property
    def latest(self) -> FeedSample | None:
        return self._latest

    def age(self, now: float) -> float | None:
        """Seconds since the newest sample was scraped, or None when there is none."""
        return None if self._latest is None else now - self._latest.at

    def add(self, sample: FeedSample) -> None:
        """Append a sample; one not newer than the latest is ignored. Prunes past retention."""
        if self._latest is not None and sample.at <= self._latest.at:
            return
        served = self._served
        for series, value in _request_series(sample).items():
            seen = self._last_seen.get(series)
            increase = value if seen is None or value < seen[0] else value - seen[0]
            served[0] += increase
            served[_CLASS_INDEX.get(series[1], _CLASS_INDEX["other"])] += increase
            self._last_seen[series] = (value, sample.at)
        point = [_NAN if (v := sample.value(s)) is None else v for s in SIGNALS]
        point.extend(served)
        col = self._col
        for c, v in enumerate(point):
            # NaN != NaN: a missing signal, like a 0.0 total, needs no column of its own yet.
            if col[c] < 0 and v != _DEFAULTS[c] and not (c < _SERVED and v != v):
                self._widen(c)
        row = array("d", [point[c] for c in self._cols])  # built first: a bad value must
        self._at.append(sample.at)  # not leave `_at` and `_data` uneven
        self._data.extend(row)
        self._latest = sample
        horizon = sample.at - self.retention_s
        # Points are sorted by `at`, so the expired ones are a prefix; retention/interval points
        # at most, so the memmove is cheaper than a ring's bookkeeping.
        expired = bisect_right(self._at, horizon)
        if expired:
            del self._at[:expired]
            del self._data[: expired * self._stride]
        if len(self._last_seen) > 0:
            stale = [k for k, (_, at) in self._last_seen.items() if at <= horizon]
            for k in stale:
                del self._last_seen[k]

    def _widen(self, c: int) -> None:
        """Give logical column `c` a place at the end of every row; old points get its default."""
        stride, default = self._stride, _DEFAULTS[c]
        old, wide = self._data, array("d")
        for i in range(len(self._at)):
            wide.extend(old[i * stride : (i + 1) * stride])
            wide.append(default)
        self._data = wide
        self._col[c] = stride
        self._cols.append(c)
        self._stride = stride + 1

    def _bounds(self, span_s: float, now: float) -> tuple[int, int]:
        """Point indices [lo, hi), lo <= hi, of the points with `at` in (now - span_s, now].

        NaN compares false, as in a scan: a NaN `now` selects nothing, a NaN start no lower bound.
        """
        at = self._at
        hi = bisect_right(at, now) if now == now else 0
        start = now - span_s
        lo = bisect_right(at, start, 0, hi) if start == start else 0
        return lo, hi

    def count(self, span_s: float, now: float) -> int:
        """How many samples fall in (now - span_s, now]."""
        lo, hi = self._bounds(span_s, now)
        return hi - lo

    def _values(self, signal: Signal, span_s: float, now: float) -> list[float]:
        """The signal's values in the span, newest first (the order the sums are taken in)."""
        place = self._col[_SIGNAL_INDEX[signal]]
        lo, hi = self._bounds(span_s, now)
        if lo >= hi or place < 0:
            return []
        stride = self._stride
        column = self._data[lo * stride + place : hi * stride : stride]
        return [v for v in reversed(column) if v == v]  # NaN: no value in that sample

    def mean(self, signal: Signal, *, span_s: float, now: float) -> float | None:
        """Mean of the per-sample values in the span (per-replica signals averaged per sample)."""
        values = self._values(signal, span_s, now)
        return sum(values) / len(values) if values else None

    def max(self, signal: Signal, *, span_s: float, now: float) -> float | None:
        """Largest per-sample value in the span (per-replica signals averaged per sample)."""
        values = self._values(signal, span_s, now)
        return max(values) if values else None

    def _interval(self, span_s: float, now: float) -> tuple[int, int] | None:
        """Point indices (base, newest) of the interval a rate over `span_s` is taken on.

        `newest` is the last point at or before `now`; `base` the last one at or before
        `newest - span_s`, else the oldest kept. Unlike `_bounds`, the span reaches back to the
        sample before it, so a span of one tick interval still spans two samples. None with fewer
        than two points.
        """
        at = self._at
        hi = bisect_right(at, now) if now == now else 0
        if hi < 2:
            return None
        newest = hi - 1
        base = bisect_right(at, at[newest] - span_s, 0, newest) - 1
        return max(base, 0), newest

    def readings(self, *, span_s: float, now: float) -> tuple[dict[str, float], dict[str, str]]:
        """The signals as read at `now` by name (`READINGS`), and the source of `in_flight`.

        Levels come from the newest sample (utilisation averaged over replicas), rates from the
        interval `_interval` picks over `span_s`; a signal the feed does not carry is left out.
        """
        latest = self._latest
        out: dict[str, float] = {}
        sources: dict[str, str] = {}
        if latest is None or latest.at > now:
            return out, sources
        for signal in SIGNALS:
            if (v := latest.value(signal)) is not None:
                out[signal] = v
        if "pending" in out:
            out["in_flight"] = out["pending"]
            sources["in_flight"] = "pending"
        span = self._interval(span_s, now)
        if span is not None:
            base, newest = span
            elapsed = self._at[newest] - self._at[base]
            place = self._col[_SERVED]
            if elapsed > 0:
                data, stride = self._data, self._stride
                served = (
                    0.0
                    if place < 0
                    else (data[newest * stride + place] - data[base * stride + place])
                )
                out["request_rate"] = served / elapsed
        for q, name in _QUANTILES.items():
            if (v := latest.latency.get(q)) is not None:
                out[name] = v
        return out, sources

    def request_rate(
        self, *, span_s: float, now: float, status_class: str | None = None
    ) -> float | None:
        """Requests per second between the oldest and newest sample in the span; None with < 2.

        `status_class` is one of "2xx", "3xx", "4xx", "5xx", "other" (None: all requests).
        """
        idx = 0 if status_class is None else _CLASS_INDEX.get(status_class)
        if idx is None:
            raise ValueError(f"status_class must be one of {STATUS_CLASSES}, got {status_class!r}")
        lo, hi = self._bounds(span_s, now)
        if hi - lo < 2:
            return None
        newest, oldest = hi - 1, lo
        elapsed = self._at[newest] - self._at[oldest]
        if elapsed <= 0:
            return None
        place = self._col[_SERVED + idx]
        if place < 0:  # never served in this class: 0.0 at every point
            return (0.0 - 0.0) / elapsed
        data, stride = self._data, self._stride
        return (data[newest * stride + place] - data[oldest * stride + place]) / elapsed


class WindowStore:
    """Per-endpoint windows keyed `ns/name`; `get` creates one on first use."""

    def __init__(self, *, retention_s: float = 900.0) -> None:
        self.retention_s = retention_s
        self._windows: dict[str, EndpointWindow] = {}

    def get(self, key: str) -> EndpointWindow:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = EndpointWindow(retention_s=self.retention_s)
        return window

    def add(self, key: str, sample: FeedSample) -> None:
        self.get(key).add(sample)

    def set_retention(self, retention_s: float) -> None:
        """A reloaded `scrape.retention_s`: every window prunes to it from its next sample."""
        if retention_s <= 0:
            raise ValueError(f"retention_s must be > 0, got {retention_s}")
        self.retention_s = retention_s
        for window in self._windows.values():
            window.retention_s = retention_s

    def forget_except(self, keys: set[str] | frozenset[str]) -> None:
        """Drop the windows of endpoints no longer managed (deleted, renamed, excluded)."""
        for key in [k for k in self._windows if k not in keys]:
            del self._windows[key]

    def __getitem__(self, key: str) -> EndpointWindow:
        return self._windows[key]

    def __contains__(self, key: object) -> bool:
        return key in self._windows

    def __len__(self) -> int:
        return len(self._windows)

    def __iter__(self) -> Iterator[str]:
        return iter(self._windows)

    def keys(self) -> list[str]:
        return list(self._windows)
