"""The engines' own feed shapes, rendered from the emulator's load model (no I/O).

An emulated endpoint serves one of `FEED_SHAPES` on its open-metrics route (`SimParams.feed`, a
scenario endpoint's `feed:`, or the `feed_shape` knob). Families, types, label sets and units are
the engines' own, as read from their code (the citations are in `controller.platform.presets`,
which reads the same names); the values come from the emulator's queue:

- waiting = requests queued at the endpoint, running = requests in service;
- KV-cache use = running / (ready replicas x concurrency), 0-1 (each running request holds its
  KV blocks; a full batch is a full cache);
- request counters and latency histograms are cumulative over the endpoint's completions, with
  each engine's own bucket bounds;
- token counters count `TOKENS_PER_REQUEST` generated tokens per completion (the load model has
  no token lengths; these are there for the shape, no recipe reads them).

The endpoint is rendered as one engine (its one FIFO queue over all replicas), the way Governor
would see it scraping the engine behind the endpoint's URL. prometheus_client engines (vLLM,
SGLang) are rendered by prometheus_client itself, in text or OpenMetrics as the client's Accept
header asks, so the `vllm:` -> `vllm_` escaping of OpenMetrics is the library's, not a copy.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = [
    "ENGINE_FEEDS",
    "FEED_SHAPES",
    "OPENMETRICS",
    "TEXT",
    "EngineLoad",
    "LatencyHistogram",
    "histogram_bounds",
    "render_engine",
]

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TOKENS_PER_REQUEST = 64
MODEL_NAME = "emulated/model"

# "full": the emulator's platform feed; "published": only the families of the platform's
# published sample; the rest are the engines'.
ENGINE_FEEDS = ("tgi", "vllm", "vllm-v0", "tei", "llamacpp", "sglang", "hf-toolkit")
FEED_SHAPES = ("full", "published", *ENGINE_FEEDS)


def _geometric(start: float, factor: float, count: int) -> tuple[float, ...]:
    out, v = [], start
    for _ in range(count):
        out.append(v)
        v *= factor
    return tuple(out)


# TGI router/src/server.rs and TEI router/src/prometheus.rs: duration buckets are 35 geometric
# bounds (TGI from 0.00015 s, TEI from 1.5e-5 s, factor 1.5).
_BOUNDS: dict[str, tuple[float, ...]] = {
    "tgi": _geometric(0.00015, 1.5, 35),
    "tei": _geometric(1.5e-5, 1.5, 35),
    # vllm/v1/metrics/loggers.py: e2e_request_latency_seconds buckets.
    "vllm": (
        0.3,
        0.5,
        0.8,
        1.0,
        1.5,
        2.0,
        2.5,
        5.0,
        10.0,
        15.0,
        20.0,
        30.0,
        40.0,
        50.0,
        60.0,
        120.0,
        240.0,
        480.0,
        960.0,
        1920.0,
        7680.0,
    ),
    # vllm/engine/metrics.py (V0): e2e_request_latency_seconds buckets.
    "vllm-v0": (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0),
    # sglang collector.py TokenizerMetricsCollector: bucket_e2e_request_latency default.
    "sglang": (
        0.1,
        0.2,
        0.4,
        0.6,
        0.8,
        1,
        2,
        4,
        6,
        8,
        10,
        20,
        40,
        60,
        80,
        100,
        200,
        400,
        600,
        1200,
        1800,
        2400,
    ),
}


def histogram_bounds(feed: str) -> tuple[float, ...] | None:
    """The latency histogram's bucket bounds for a feed shape (None: it publishes none)."""
    return _BOUNDS.get(feed)


class LatencyHistogram:
    """Cumulative per-bucket counts of completed requests' latencies, for one endpoint, since
    its feed shape first needed them (so buckets, `_count` and `_sum` always agree)."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf only
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            acc += n
            out.append(("+Inf" if bound == math.inf else repr(float(bound)), float(acc)))
        return out


@dataclass(frozen=True)
class EngineLoad:
    """What the engine reports, from the emulator's queue at one instant."""

    waiting: int
    running: int
    capacity: int  # ready replicas x concurrency: the slots a full batch would fill
    completed: int
    latency_count: int
    latency_sum: float
    histogram: LatencyHistogram | None = None
    created: float = 0.0  # the endpoint's creation time (prometheus_client `_created`)

    @property
    def kv_usage(self) -> float:
        return min(1.0, self.running / self.capacity) if self.capacity > 0 else 0.0


# -- metrics-exporter-prometheus 0.15 (TGI, TEI): counters, then gauges, then histograms; no
# `_total`; `# HELP` only for described metrics; a blank line between metrics.


def _exporter_block(name: str, kind: str, help_text: str | None, lines: Sequence[str]) -> str:
    head = [f"# HELP {name} {help_text}"] if help_text else []
    return "\n".join([*head, f"# TYPE {name} {kind}", *lines]) + "\n"


def _exporter_histogram(name: str, help_text: str | None, load: EngineLoad) -> str:
    hist = load.histogram
    lines = []
    if hist is not None:
        lines = [f'{name}_bucket{{le="{le}"}} {int(n)}' for le, n in hist.cumulative()]
    lines += [f"{name}_sum {load.latency_sum!r}", f"{name}_count {load.latency_count}"]
    return _exporter_block(name, "histogram", help_text, lines)


def _tgi(load: EngineLoad) -> str:
    # Descriptions: router/src/server.rs `metrics::describe_*` (TGI 3.x).
    blocks = [
        _exporter_block(
            "tgi_request_count",
            "counter",
            "Total number of requests",
            [f"tgi_request_count {load.completed + load.waiting + load.running}"],
        ),
        _exporter_block(
            "tgi_request_success",
            "counter",
            "Number of successful requests",
            [f"tgi_request_success {load.completed}"],
        ),
        _exporter_block(
            "tgi_queue_size", "gauge", "Current queue size", [f"tgi_queue_size {load.waiting}"]
        ),
        _exporter_block(
            "tgi_batch_current_size",
            "gauge",
            "Current batch size",
            [f"tgi_batch_current_size {load.running}"],
        ),
        _exporter_histogram("tgi_request_duration", "Request duration", load),
    ]
    return "\n".join(blocks)


def _tei(load: EngineLoad) -> str:
    # TEI describes nothing: `# TYPE` lines only.
    blocks = [
        _exporter_block(
            "te_request_count",
            "counter",
            None,
            [f'te_request_count{{method="single"}} {load.completed + load.waiting}'],
        ),
        _exporter_block(
            "te_request_success",
            "counter",
            None,
            [f'te_request_success{{method="single"}} {load.completed}'],
        ),
        _exporter_block("te_queue_size", "gauge", None, [f"te_queue_size {load.waiting}"]),
        _exporter_histogram("te_request_duration", None, load),
    ]
    return "\n".join(blocks)


def _cpp_number(v: float) -> str:
    """`std::stringstream << double`: six significant digits, no trailing zeros."""
    return f"{v:g}"


def _llamacpp(load: EngineLoad) -> str:
    # tools/server: counters then gauges, each `# HELP`/`# TYPE`/one unlabelled sample.
    tokens = load.completed * TOKENS_PER_REQUEST
    counters = [
        ("prompt_tokens_total", "Number of prompt tokens processed.", tokens),
        ("prompt_seconds_total", "Prompt process time", 0.0),
        ("tokens_predicted_total", "Number of generation tokens processed.", tokens),
        ("tokens_predicted_seconds_total", "Predict process time", load.latency_sum),
        ("n_decode_total", "Total number of llama_decode() calls", tokens),
    ]
    gauges = [
        ("prompt_tokens_seconds", "Average prompt throughput in tokens/s.", 0.0),
        ("predicted_tokens_seconds", "Average generation throughput in tokens/s.", 0.0),
        ("requests_processing", "Number of requests processing.", load.running),
        ("requests_deferred", "Number of requests deferred.", load.waiting),
        (
            "n_busy_slots_per_decode",
            "Average number of busy slots per llama_decode() call",
            float(load.running),
        ),
    ]
    out = []
    for kind, items in (("counter", counters), ("gauge", gauges)):
        for name, help_text, value in items:
            out += [
                f"# HELP llamacpp:{name} {help_text}",
                f"# TYPE llamacpp:{name} {kind}",
                f"llamacpp:{name} {_cpp_number(float(value))}",
            ]
    return "\n".join(out) + "\n"


def _toolkit(load: EngineLoad) -> str:
    # webservice_starlette.py metrics(): bare lines, no HELP or TYPE.
    return (
        f"inf_batch_current_size {load.running}\n"
        f"inf_queue_size {load.waiting}\n"
        "inf_accepting 1\n"
        "inf_auto_frozen 0\n"
    )


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def _gauge(name: str, doc: str, labels: dict[str, str], value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=list(labels))
    g.add_metric(list(labels.values()), value)
    return g


def _counter(
    name: str, doc: str, labels: dict[str, str], value: float, created: float
) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc, labels=list(labels))
    c.add_metric(list(labels.values()), value, created=created)
    return c


def _histogram(name: str, doc: str, labels: dict[str, str], load: EngineLoad) -> Metric:
    h = HistogramMetricFamily(name, doc, labels=list(labels))
    buckets = load.histogram.cumulative() if load.histogram is not None else [("+Inf", 0.0)]
    h.add_metric(list(labels.values()), buckets, load.latency_sum)
    return h


def _vllm(load: EngineLoad, *, v0: bool) -> list[Metric]:
    if v0:  # vllm/engine/metrics.py: labels {model_name}; gpu_cache_usage_perc only
        labels = {"model_name": MODEL_NAME}
        kv = [
            _gauge(
                "vllm:gpu_cache_usage_perc",
                "GPU KV-cache usage. 1 means 100 percent usage.",
                labels,
                load.kv_usage,
            )
        ]
    else:  # vllm/v1/metrics/loggers.py: labels {model_name, engine}; both KV names
        labels = {"model_name": MODEL_NAME, "engine": "0"}
        kv = [
            _gauge(
                "vllm:gpu_cache_usage_perc",
                "GPU KV-cache usage. 1 means 100 percent usage."
                "DEPRECATED: Use vllm:kv_cache_usage_perc instead.",
                labels,
                load.kv_usage,
            ),
            _gauge(
                "vllm:kv_cache_usage_perc",
                "KV-cache usage. 1 means 100 percent usage.",
                labels,
                load.kv_usage,
            ),
        ]
    tokens = float(load.completed * TOKENS_PER_REQUEST)
    return [
        _gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            labels,
            load.running,
        ),
        _gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            labels,
            load.waiting,
        ),
        *kv,
        _counter(
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            labels,
            tokens,
            load.created,
        ),
        _counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            {**labels, "finished_reason": "stop"},
            load.completed,
            load.created,
        ),
        _histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            labels,
            load,
        ),
    ]


def _sglang(load: EngineLoad) -> list[Metric]:
    # collector.py: scheduler gauges carry the scheduler's labels; tokenizer metrics model_name.
    sched = {"model_name": MODEL_NAME, "engine_type": "unified", "tp_rank": "0", "pp_rank": "0"}
    tok = {"model_name": MODEL_NAME}
    return [
        _gauge("sglang:num_running_reqs", "The number of running requests.", sched, load.running),
        _gauge(
            "sglang:num_queue_reqs",
            "The number of requests in the waiting queue.",
            sched,
            load.waiting,
        ),
        _gauge("sglang:token_usage", "The token usage.", sched, load.kv_usage),
        _counter(
            "sglang:num_requests",
            "Number of requests processed.",
            tok,
            load.completed,
            load.created,
        ),
        _histogram(
            "sglang:e2e_request_latency_seconds",
            "Histogram of End-to-end request latency in seconds",
            tok,
            load,
        ),
    ]


def render_engine(feed: str, load: EngineLoad, *, openmetrics: bool = False) -> tuple[str, str]:
    """(body, content type) of `feed`'s exposition for `load`. `openmetrics` only changes the
    prometheus_client engines (vLLM, SGLang); the others serve one text format whatever is asked."""
    if feed in ("vllm", "vllm-v0", "sglang"):
        families = _sglang(load) if feed == "sglang" else _vllm(load, v0=feed == "vllm-v0")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        if openmetrics:
            return generate_openmetrics(registry).decode(), OPENMETRICS
        return generate_latest(registry).decode(), TEXT
    render = {"tgi": _tgi, "tei": _tei, "llamacpp": _llamacpp, "hf-toolkit": _toolkit}.get(feed)
    if render is None:
        raise ValueError(f"unknown engine feed {feed!r}; one of {', '.join(ENGINE_FEEDS)}")
    return render(load), TEXT
