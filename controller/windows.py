"""Time-indexed sliding windows of feed samples, one per endpoint (Knative/Ray style).

Samples are kept with *their* scrape timestamp; every read takes `now` and a span and looks at the
samples with `at` in `(now - span_s, now]`, so a missed scrape shortens the evidence instead of
shifting it, and a window with nothing recent says "no data" (None) rather than repeating old news.
Nothing here reads a clock.

Memory: a window keeps the full latest `FeedSample` and, per older sample, only a compact point: the
five scalar signals (per-replica signals already averaged over replicas) and running totals of the
reset-safe request increase (overall and per status class). Rates over any span are then one
subtraction, like a Knative running sum.

Counter resets follow Prometheus `rate()` per series, a series being one (replica, status class)
counter: a decrease means the counter restarted, so its new value is all increase; a series never
seen before (a new replica) counts from 0; a series that vanished and comes back is compared with
its last value seen within the retention.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from controller.scrape import STATUS_CLASSES, FeedSample, Signal

__all__ = ["SIGNALS", "EndpointWindow", "WindowStore"]

SIGNALS: tuple[Signal, ...] = ("pending", "cpu", "gpu", "memory", "gpu_memory")
_SIGNAL_INDEX = {s: i for i, s in enumerate(SIGNALS)}
_CLASS_INDEX = {c: i + 1 for i, c in enumerate(STATUS_CLASSES)}  # 0 is "all classes"


@dataclass(frozen=True, slots=True)
class _Point:
    at: float
    values: tuple[float | None, ...]  # in SIGNALS order
    served: tuple[float, ...]  # cumulative reset-safe increase: all, then STATUS_CLASSES order


def _request_series(sample: FeedSample) -> Mapping[tuple[str, str], float]:
    """Counters per (replica, class); hand-built samples may only carry the coarser mappings."""
    if sample.request_series:
        return sample.request_series
    if sample.requests:
        return {("", cls): v for cls, v in sample.requests.items()}
    return {(replica, "other"): v for replica, v in sample.requests_by_replica.items()}


class EndpointWindow:
    """One endpoint's samples over the last `retention_s` seconds (measured from its newest)."""

    def __init__(self, *, retention_s: float = 900.0) -> None:
        if retention_s <= 0:
            raise ValueError(f"retention_s must be > 0, got {retention_s}")
        self.retention_s = retention_s
        self._points: deque[_Point] = deque()
        self._latest: FeedSample | None = None
        self._served = [0.0] * (1 + len(STATUS_CLASSES))
        self._last_seen: dict[tuple[str, str], tuple[float, float]] = {}  # series -> (value, at)

    def __len__(self) -> int:
        return len(self._points)

    def __repr__(self) -> str:
        at = self._latest.at if self._latest is not None else None
        return f"EndpointWindow(samples={len(self._points)}, latest_at={at})"

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
        if len(self._last_seen) > 0:
            stale = [k for k, (_, at) in self._last_seen.items() if at <= horizon]
            for k in stale:
                del self._last_seen[k]

    def _span(self, span_s: float, now: float) -> Iterator[_Point]:
        """Points with `at` in (now - span_s, now], newest first."""
        start = now - span_s
        for point in reversed(self._points):
            if point.at <= start:
                return
            if point.at <= now:
                yield point

    def count(self, span_s: float, now: float) -> int:
        """How many samples fall in (now - span_s, now]."""
        return sum(1 for _ in self._span(span_s, now))

    def _values(self, signal: Signal, span_s: float, now: float) -> list[float]:
        i = _SIGNAL_INDEX[signal]
        return [v for p in self._span(span_s, now) if (v := p.values[i]) is not None]

    def mean(self, signal: Signal, *, span_s: float, now: float) -> float | None:
        """Mean of the per-sample values in the span (per-replica signals averaged per sample)."""
        values = self._values(signal, span_s, now)
        return sum(values) / len(values) if values else None

    def max(self, signal: Signal, *, span_s: float, now: float) -> float | None:
        """Largest per-sample value in the span (per-replica signals averaged per sample)."""
        values = self._values(signal, span_s, now)
        return max(values) if values else None

    def request_rate(
        self, *, span_s: float, now: float, status_class: str | None = None
    ) -> float | None:
        """Requests per second between the oldest and newest sample in the span; None with < 2.

        `status_class` is one of "2xx", "3xx", "4xx", "5xx", "other" (None: all requests).
        """
        idx = 0 if status_class is None else _CLASS_INDEX.get(status_class)
        if idx is None:
            raise ValueError(f"status_class must be one of {STATUS_CLASSES}, got {status_class!r}")
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
