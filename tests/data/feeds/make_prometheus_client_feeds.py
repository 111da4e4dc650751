"""Regenerate the vLLM/SGLang fixtures with prometheus_client's own metric classes, declared as the
engines declare them (names, documentation, label names, buckets), in text and OpenMetrics.

Sources: vllm/v1/metrics/loggers.py (stored 005a810), vllm/engine/metrics.py (stored 00c33e8),
sglang python/sglang/srt/metrics/collector.py (stored 00ae9c1). `_created` values are made fixed
so the files are reproducible. Run: python tests/data/feeds/make_prometheus_client_feeds.py
"""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

HERE = Path(__file__).parent
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
E2E_V1 = [
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
]


def vllm_v1(r: CollectorRegistry) -> None:
    names = ["model_name", "engine"]
    run_g = Gauge(
        "vllm:num_requests_running",
        "Number of requests in model execution batches.",
        names,
        registry=r,
        multiprocess_mode="mostrecent",
    )
    wait_g = Gauge(
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        names,
        registry=r,
        multiprocess_mode="mostrecent",
    )
    gpu = Gauge(
        "vllm:gpu_cache_usage_perc",
        "GPU KV-cache usage. 1 means 100 percent usage."
        "DEPRECATED: Use vllm:kv_cache_usage_perc instead.",
        names,
        registry=r,
        multiprocess_mode="mostrecent",
    )
    kvg = Gauge(
        "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", names, registry=r
    )
    ok = Counter(
        "vllm:request_success",
        "Count of successfully processed requests.",
        [*names, "finished_reason"],
        registry=r,
    )
    e2e = Histogram(
        "vllm:e2e_request_latency_seconds",
        "Histogram of e2e request latency in seconds.",
        names,
        buckets=E2E_V1,
        registry=r,
    )
    # prometheus_fastapi_instrumentator's own counter in the same registry (not the platform's).
    http = Counter(
        "http_requests",
        "Total number of requests by method, status and handler.",
        ["method", "status", "handler"],
        registry=r,
    )
    http.labels("POST", "2xx", "/v1/chat/completions").inc(999)
    for engine, (run, wait, kv, done) in {"0": (8, 3, 0.62, 131), "1": (6, 1, 0.40, 70)}.items():
        run_g.labels(MODEL, engine).set(run)
        wait_g.labels(MODEL, engine).set(wait)
        gpu.labels(MODEL, engine).set(kv)
        kvg.labels(MODEL, engine).set(kv)
        ok.labels(MODEL, engine, "stop").inc(done)
        for _ in range(done):
            e2e.labels(MODEL, engine).observe(1.25)


def vllm_v0(r: CollectorRegistry) -> None:
    names = ["model_name"]
    Gauge(
        "vllm:num_requests_running",
        "Number of requests currently running on GPU.",
        names,
        registry=r,
    ).labels(MODEL).set(5)
    Gauge(
        "vllm:num_requests_swapped", "Number of requests swapped to CPU.", names, registry=r
    ).labels(MODEL).set(0)
    Gauge(
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        names,
        registry=r,
    ).labels(MODEL).set(2)
    Gauge(
        "vllm:gpu_cache_usage_perc",
        "GPU KV-cache usage. 1 means 100 percent usage.",
        names,
        registry=r,
    ).labels(MODEL).set(0.5)
    Counter(
        "vllm:request_success_total",
        "Count of successfully processed requests.",
        [*names, "finished_reason"],
        registry=r,
    ).labels(MODEL, "length").inc(40)
    h = Histogram(
        "vllm:e2e_request_latency_seconds",
        "Histogram of end to end request latency in seconds.",
        names,
        buckets=[1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        registry=r,
    )
    for _ in range(40):
        h.labels(MODEL).observe(3.0)


def sglang(r: CollectorRegistry) -> None:
    sched = ["model_name", "engine_type", "tp_rank", "pp_rank"]
    run = Gauge(
        "sglang:num_running_reqs",
        "The number of running requests.",
        sched,
        registry=r,
        multiprocess_mode="mostrecent",
    )
    queue = Gauge(
        "sglang:num_queue_reqs",
        "The number of requests in the waiting queue.",
        sched,
        registry=r,
        multiprocess_mode="mostrecent",
    )
    usage = Gauge(
        "sglang:token_usage", "The token usage.", sched, registry=r, multiprocess_mode="mostrecent"
    )
    # Two tensor-parallel ranks of one scheduler report the same state: read once, not twice.
    for rank in ("0", "1"):
        run.labels(MODEL, "unified", rank, "0").set(12)
        queue.labels(MODEL, "unified", rank, "0").set(4)
        usage.labels(MODEL, "unified", rank, "0").set(0.28)
    n = Counter(
        "sglang:num_requests_total", "Number of requests processed.", ["model_name"], registry=r
    )
    n.labels(MODEL).inc(500)
    e2e = Histogram(
        "sglang:e2e_request_latency_seconds",
        "Histogram of End-to-end request latency in seconds",
        ["model_name"],
        buckets=[
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
        ],
        registry=r,
    )
    for _ in range(500):
        e2e.labels(MODEL).observe(0.7)


def _fixed(text: str) -> str:
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 1.7e+09", text)


for name, build in {"vllm": vllm_v1, "vllm-v0": vllm_v0, "sglang": sglang}.items():
    reg = CollectorRegistry()
    build(reg)
    (HERE / f"{name}.txt").write_text(_fixed(generate_latest(reg).decode()))
    (HERE / f"{name}.om.txt").write_text(_fixed(generate_openmetrics(reg).decode()))
