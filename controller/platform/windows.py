"""Time-indexed sliding windows of feed samples, one per endpoint (Knative/Ray style).

Samples are kept with *their* scrape timestamp; every read takes `now` and a span and looks at the
samples with `at` in `(now - span_s, now]`, so a missed scrape shortens the evidence instead of
shifting it, and a window with nothing recent says "no data" (None) rather than repeating old news.
Nothing here reads a clock.

Memory: a window keeps the full latest `FeedSample` and, per older sample, only a compact point:
one scalar per signal of `SIGNALS` (per-replica signals already averaged over replicas), running
totals of the reset-safe request increase (overall and per status class), and the latency summary's
`_count` and `_sum` as scraped (for the derived in-flight count, `derived_in_flight`). Rates over
any span are then one subtraction, like a Knative running sum. Points live in two flat
`array('d')`s, not as Python objects (each point was three GC-tracked objects and a dozen float
objects, ~500 bytes): `_at` holds the timestamps (sorted, so a span is found by bisection) and
`_data` one row of `_stride` doubles per point. A row only has columns for the signals and totals
this endpoint has ever had: a signal never seen is NaN ("no value") in every point and a status
class never served is 0.0, so neither is stored until it appears (the rows are then widened once).
A typical endpoint (five signals, 2xx only, a latency summary) costs 80 bytes per point: ~5 KB for
15 minutes of 15 s ticks. A NaN signal value therefore reads as missing; `parse_feed` never
produces one.

Counter resets follow Prometheus `rate()` per series, a series being one (replica, status class)
counter: a decrease means the counter restarted, so its new value is all increase; a series never
seen before (a new replica) counts from 0; a series that vanished and comes back is compared with
its last value seen within the retention.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from controller.platform.signals import STATUS_CLASSES, FeedSample, Signal

__all__ = ["READINGS", "SIGNALS", "EndpointWindow", "InFlight", "WindowStore"]

SIGNALS: tuple[Signal, ...] = (
    "pending",
    "cpu",
    "gpu",
    "memory",
    "gpu_memory",
    "waiting",
    "running",
    "kv_cache",
)
_SIGNAL_INDEX = {s: i for i, s in enumerate(SIGNALS)}
_CLASS_INDEX = {c: i + 1 for i, c in enumerate(STATUS_CLASSES)}  # 0 is "all classes"
_NAN = float("nan")
# A point's logical columns: SIGNALS (missing: NaN), then the served totals (all, then classes),
# then the latency summary's `_count` and `_sum` as scraped (missing: NaN).
_SERVED = len(SIGNALS)
_5XX = _SERVED + _CLASS_INDEX["5xx"]
_LAT = _SERVED + 1 + len(STATUS_CLASSES)
_COLUMNS = _LAT + 2
_DEFAULTS = (_NAN,) * len(SIGNALS) + (0.0,) * (1 + len(STATUS_CLASSES)) + (_NAN, _NAN)
_MISSING_IS_NAN = frozenset((*range(_SERVED), _LAT, _LAT + 1))
# What `readings` reports (Governor's own /metrics re-exports them): a fixed vocabulary, so the
# exported label values stay bounded. `in_flight` is the load the demand policies size for.
_QUANTILES = {0.5: "latency_p50_seconds", 0.9: "latency_p90_seconds", 0.99: "latency_p99_seconds"}
READINGS: tuple[str, ...] = (
    "in_flight",
    "pending",
    "derived_in_flight",
    *SIGNALS[1:],
    "request_rate",
    *_QUANTILES.values(),
)


@dataclass(frozen=True, slots=True)
class InFlight:
    """Requests in flight (queued or in service) over a span, and where the figure came from.

    `source` is "pending" (the mean of the feed's pending-requests series) or "littles_law"
    (derived: completion rate x mean latency; `rate`, `latency_s` and `span_s` say from what, and
    `per_replica` splits the newest interval by the counter's `replica_id`).
    """

    value: float
    source: str
    rate: float | None = None
    latency_s: float | None = None
    span_s: float | None = None
    per_replica: Mapping[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """For a decision's reasons: the figure and its source."""
        if self.source == "pending":
            return f"{self.value:.2f} in flight (pending requests)"
        lat = "no latency" if self.latency_s is None else f"{self.latency_s:.3g}s mean latency"
        return (
            f"{self.value:.2f} in flight (derived, Little's law: {self.rate or 0.0:.3g} req/s x "
            f"{lat} over {self.span_s or 0.0:.0f}s)"
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
        "_lat_windowed",
        "_latest",
        "_replica_rate",
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
        # The latency summary covers a recent window, not the endpoint's life: set (for good) the
        # first time its `_count` or `_sum` falls while no request counter reset (a cumulative
        # summary only falls when its process restarts, and then its counters do too).
        self._lat_windowed = False
        self._replica_rate: dict[str, float] = {}  # non-5xx completions/s over the newest interval

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
        reset = False
        by_replica: dict[str, float] = {}
        for series, value in _request_series(sample).items():
            seen = self._last_seen.get(series)
            reset = reset or (seen is not None and value < seen[0])
            increase = value if seen is None or value < seen[0] else value - seen[0]
            served[0] += increase
            cls = _CLASS_INDEX.get(series[1], _CLASS_INDEX["other"])
            served[cls] += increase
            if cls != _CLASS_INDEX["5xx"]:
                by_replica[series[0]] = by_replica.get(series[0], 0.0) + increase
            self._last_seen[series] = (value, sample.at)
        prev = self._latest
        if prev is not None:
            self._note_summary(prev, sample, reset=reset)
            elapsed = sample.at - prev.at
            self._replica_rate = {r: inc / elapsed for r, inc in by_replica.items()}
        point = [_NAN if (v := sample.value(s)) is None else v for s in SIGNALS]
        point.extend(served)
        point.append(_NAN if sample.latency_count is None else sample.latency_count)
        point.append(_NAN if sample.latency_sum is None else sample.latency_sum)
        col = self._col
        for c, v in enumerate(point):
            # NaN != NaN: a missing signal, like a 0.0 total, needs no column of its own yet.
            if col[c] < 0 and v != _DEFAULTS[c] and not (c in _MISSING_IS_NAN and v != v):
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

    def _note_summary(self, prev: FeedSample, sample: FeedSample, *, reset: bool) -> None:
        pairs = ((prev.latency_count, sample.latency_count), (prev.latency_sum, sample.latency_sum))
        fell = any(a is not None and b is not None and b < a for a, b in pairs)
        if fell and not reset:
            self._lat_windowed = True

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

    def _column(self, c: int, lo: int, hi: int) -> list[float]:
        """Logical column `c` of points lo..hi inclusive (its default where never stored)."""
        place = self._col[c]
        if place < 0:
            return [_DEFAULTS[c]] * (hi - lo + 1)
        stride = self._stride
        return list(self._data[lo * stride + place : (hi + 1) * stride : stride])

    def _mean_latency(self, base: int, newest: int) -> float | None:
        """Mean latency of the requests completed in the interval, from the summary.

        A cumulative summary: `_sum` and `_count` increases (Prometheus' rate(sum)/rate(count)).
        A windowed one (`_lat_windowed`), or one that fell in the interval: each sample's
        `_sum / _count` is already a recent mean, so the count-weighted mean of the samples after
        `base`. None when the summary observed nothing.
        """
        counts, sums = self._column(_LAT, base, newest), self._column(_LAT + 1, base, newest)
        pts = [(c, s) for c, s in zip(counts, sums, strict=True) if c == c and s == s]
        if not pts:
            return None
        rising = all(b[0] >= a[0] and b[1] >= a[1] for a, b in pairwise(pts))
        if not self._lat_windowed and rising and len(pts) >= 2 and pts[-1][0] > pts[0][0]:
            return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
        recent = [(c, s) for c, s in zip(counts[1:], sums[1:], strict=True) if c == c and s == s]
        n = sum(c for c, _ in recent)
        return sum(s for _, s in recent) / n if n > 0 else None

    def derived_in_flight(self, *, span_s: float, now: float) -> InFlight | None:
        """Requests in flight by Little's law over the last `span_s` (`_interval`): the rate of
        completed requests (the counter's increase, 5xx left out: a 503 at the proxy was never in
        flight) x their mean latency (`_mean_latency`). None without two samples, or when
        requests completed but the summary has no latency to weigh them with.

        Per replica, the newest interval's completions of each `replica_id` x the same mean (the
        published summary has no replica label). What it cannot see: requests still running
        whose completions fall after the span, so it lags a rise by about one latency.
        """
        span = self._interval(span_s, now)
        if span is None:
            return None
        base, newest = span
        elapsed = self._at[newest] - self._at[base]
        if elapsed <= 0:
            return None
        served = self._column(_SERVED, base, newest)
        errors = self._column(_5XX, base, newest)
        rate = max(0.0, (served[-1] - served[0]) - (errors[-1] - errors[0])) / elapsed
        latency = self._mean_latency(base, newest)
        if latency is None and rate > 0:
            return None
        mean = latency or 0.0
        return InFlight(
            value=rate * mean,
            source="littles_law",
            rate=rate,
            latency_s=latency,
            span_s=elapsed,
            per_replica={r: v * mean for r, v in sorted(self._replica_rate.items())},
        )

    def in_flight(self, *, span_s: float, now: float) -> InFlight | None:
        """The load a demand policy sizes for: the mean of the feed's pending-requests series over
        the span when the feed has one, else `derived_in_flight`; None when neither is known."""
        pending = self.mean("pending", span_s=span_s, now=now)
        if pending is not None:
            return InFlight(value=pending, source="pending")
        return self.derived_in_flight(span_s=span_s, now=now)

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
        derived = self.derived_in_flight(span_s=span_s, now=now)
        if derived is not None:
            out["derived_in_flight"] = derived.value
        if "pending" in out:
            out["in_flight"] = out["pending"]
            sources["in_flight"] = "pending"
        elif derived is not None:
            out["in_flight"] = derived.value
            sources["in_flight"] = derived.source
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
