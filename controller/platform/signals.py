"""What a feed is reduced to: the signal names, the feed-to-signal mapping, and `FeedSample`.

Pure data, shared by the feed path (`scrape`), the windows and the policies, so none of them needs
the I/O side of the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["STATUS_CLASSES", "FeedMapping", "FeedSample", "Signal", "status_class"]

# `pending` is the requests in flight (queued + in service), as the policies read it; `waiting` and
# `running` are its two parts where the feed tells them apart; `kv_cache` is percent, per replica.
Signal = Literal["pending", "cpu", "gpu", "memory", "gpu_memory", "waiting", "running", "kv_cache"]
_SCALAR_SIGNALS = ("pending", "waiting", "running")

STATUS_CLASSES: tuple[str, ...] = ("2xx", "3xx", "4xx", "5xx", "other")

_METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class FeedMapping(BaseModel):
    """Which feed series carries which signal; defaults are the emulator's (and platform) names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pending: str = Field(
        "pending_requests",
        pattern=_METRIC_NAME,
        description="Gauge of requests waiting (summed over its series), e.g. `tgi_queue_size`.",
    )
    requests: str = Field(
        "http_requests",
        pattern=_METRIC_NAME,
        description="Counter of served requests by replica and status code; `_total` optional.",
    )
    latency: str = Field(
        "latency_distribution",
        pattern=_METRIC_NAME,
        description="Summary of request latency in seconds (quantiles plus `_count`/`_sum`).",
    )
    cpu: str = Field(
        "cpu_usage_percent", pattern=_METRIC_NAME, description="CPU use per replica, percent."
    )
    gpu: str = Field(
        "gpu_usage_percent", pattern=_METRIC_NAME, description="GPU use per replica, percent."
    )
    memory: str = Field(
        "memory_usage_percent",
        pattern=_METRIC_NAME,
        description="Memory use per replica, percent.",
    )
    gpu_memory: str = Field(
        "gpu_memory_usage_percent",
        pattern=_METRIC_NAME,
        description="GPU memory (VRAM) use per replica, percent.",
    )
    replica_label: str = Field(
        "replica_id", pattern=_LABEL_NAME, description="Label naming the replica of a series."
    )
    status_label: str = Field(
        "status_code",
        pattern=_LABEL_NAME,
        description="Label holding the HTTP status code on the requests counter.",
    )


def _mean(values: Mapping[str, float]) -> float | None:
    return sum(values.values()) / len(values) if values else None


@dataclass(frozen=True, slots=True)
class FeedSample:
    """One scrape of one endpoint, reduced to the signals policies use.

    Counters are cumulative as scraped; rates are the windows' business. `request_series` keeps the
    counters per (replica, status class), the granularity at which counter resets are detected.
    `preset` names the recipe set the feed was read with (`controller.platform.presets`).
    """

    at: float
    pending: float | None = None
    requests: Mapping[str, float] = field(default_factory=dict)
    requests_by_replica: Mapping[str, float] = field(default_factory=dict)
    latency: Mapping[float, float] = field(default_factory=dict)
    latency_count: float | None = None
    latency_sum: float | None = None
    cpu: Mapping[str, float] = field(default_factory=dict)
    gpu: Mapping[str, float] = field(default_factory=dict)
    memory: Mapping[str, float] = field(default_factory=dict)
    gpu_memory: Mapping[str, float] = field(default_factory=dict)
    replicas_seen: frozenset[str] = frozenset()
    request_series: Mapping[tuple[str, str], float] = field(default_factory=dict)
    waiting: float | None = None
    running: float | None = None
    kv_cache: Mapping[str, float] = field(default_factory=dict)
    preset: str | None = None  # the feed-name preset the sample was read with, when one was

    @property
    def mean_cpu(self) -> float | None:
        return _mean(self.cpu)

    @property
    def mean_gpu(self) -> float | None:
        return _mean(self.gpu)

    @property
    def mean_memory(self) -> float | None:
        return _mean(self.memory)

    @property
    def mean_gpu_memory(self) -> float | None:
        return _mean(self.gpu_memory)

    @property
    def total_requests(self) -> float:
        """Cumulative requests over every replica and status (0 when the feed had none)."""
        return sum(self.requests.values())

    def value(self, signal: Signal) -> float | None:
        """The sample's scalar for `signal`: counts as they are, per-replica signals averaged."""
        if signal in _SCALAR_SIGNALS:
            return getattr(self, signal)  # type: ignore[no-any-return]
        return _mean(getattr(self, signal))


def status_class(code: str | None) -> str:
    """`"503"` -> `"5xx"`; anything not a 2xx-5xx code -> `"other"`."""
    if code is not None and len(code) == 3 and code.isdigit() and code[0] in "2345":
        return f"{code[0]}xx"
    return "other"
