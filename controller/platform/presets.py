"""The shipped feed presets: which series carry which signal, per engine, read from its own code.

Every name, type and unit below was read from the engine's source (cited per preset, with the
stored version that was read); nothing is guessed. The platform's names are its published sample
(`http_requests`, `latency_distribution`, `cpu_usage_percent`) plus, for what it has not published
(pending requests, GPU and memory use), the names the emulator serves: those stay configurable.

Every engine preset reads the platform's families first where both could carry a signal (request
counts by status code, the latency summary, hardware use), so a feed that carries the platform's
families beside the engine's loses nothing; its load gauges come from the engine.

Detection (`detect`): the first preset of `DETECTION_ORDER` with any of its `detect` families in
the feed; engines before the platform, because an engine's gauges say more than the platform's
names and a feed carrying both is the engine's plus the platform's. `auto` detects per scrape;
`EndpointSettings.feed_preset` pins a preset, and `feed_recipes` replaces single signals' recipes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from controller.platform.recipes import Preset, Recipe, Series, base_name
from controller.platform.signals import FeedMapping

__all__ = [
    "AUTO",
    "CUSTOM",
    "DETECTION_ORDER",
    "PRESETS",
    "PRESET_CHOICES",
    "choose_preset",
    "custom_preset",
    "detect",
]

AUTO = "auto"
CUSTOM = "custom"


def _r(*alternatives: Sequence[str | Mapping[str, Any]]) -> Recipe:
    alts = tuple(tuple(Series.model_validate(s) for s in a) for a in alternatives)
    return Recipe(alternatives=alts)


# -- the platform --------------------------------------------------------------------------------
# The published sample (docs `guides/analytics.md`, shared/reference/hf-endpoints-api.md §6.2):
# `http_requests` counter {replica_id, status_code}, no `_total`; `latency_distribution` summary
# (seconds, quantiles, windowed `_count`/`_sum`); `cpu_usage_percent` gauge, `# UNIT percent`.
# Not published, the emulator's names (configurable): `pending_requests`, `gpu_usage_percent`,
# `memory_usage_percent`, `gpu_memory_usage_percent` (percent, per replica_id).
# `status_code="*"` keeps an engine's own `http_requests_total{handler,method,status}` (vLLM's
# prometheus_fastapi_instrumentator) out of the platform's request count.
_REQUESTS = {"name": "http_requests", "match": {"status_code": "*"}, "status_label": "status_code"}
_HARDWARE = {
    "cpu": _r(["cpu_usage_percent"]),
    "gpu": _r(["gpu_usage_percent"]),
    "memory": _r(["memory_usage_percent"]),
    "gpu_memory": _r(["gpu_memory_usage_percent"]),
}
_PLATFORM_LATENCY = {
    "latency": _r(["latency_distribution"]),
    "latency_count": _r(["latency_distribution_count"]),
    "latency_sum": _r(["latency_distribution_sum"]),
}
PLATFORM = Preset(
    name="platform",
    source="HF Inference Endpoints open-metrics feed: the docs' published sample "
    "(guides/analytics.md) and the emulator's names for the unpublished families",
    detect=(
        "pending_requests",
        "http_requests",
        "latency_distribution",
        "cpu_usage_percent",
        "gpu_usage_percent",
        "memory_usage_percent",
        "gpu_memory_usage_percent",
    ),
    recipes={
        "pending": _r(["pending_requests"]),
        "requests": _r([_REQUESTS]),
        **_PLATFORM_LATENCY,
        **_HARDWARE,
    },
)


def _engine(
    name: str,
    source: str,
    *,
    waiting: Mapping[str, Any] | str | None,
    running: Mapping[str, Any] | str | None,
    requests: Mapping[str, Any] | str | None = None,
    histogram: str | None = None,
    kv_cache: Sequence[Mapping[str, Any]] = (),
) -> Preset:
    """An engine's preset: its load gauges, with the platform's families as the fallbacks."""
    # In flight = waiting + running; one part alone only if the feed lacks the other. An engine
    # with no running gauge at all (TEI) says nothing about in flight: the platform's pending
    # series, else the in-flight count derived from its request rate and latency, is used.
    pending: list[list[Any]] = []
    if waiting is not None and running is not None:
        pending += [[waiting, running], [waiting], [running]]
    pending.append(["pending_requests"])
    recipes: dict[str, Recipe] = {"pending": _r(*pending), **_HARDWARE}
    if waiting is not None:
        recipes["waiting"] = _r([waiting])
    if running is not None:
        recipes["running"] = _r([running])
    recipes["requests"] = _r([_REQUESTS], *([[requests]] if requests is not None else []))
    recipes["latency"] = _PLATFORM_LATENCY["latency"]
    for part in ("count", "sum"):
        alts: list[list[str]] = [[f"latency_distribution_{part}"]]
        if histogram is not None:
            alts.append([f"{histogram}_{part}"])
        recipes[f"latency_{part}"] = _r(*alts)
    if kv_cache:
        recipes["kv_cache"] = _r(*([k] for k in kv_cache))
    gauges = [g if isinstance(g, str) else g["name"] for g in (waiting, running) if g]
    detect = tuple(base_name(g) for g in gauges)
    kv_names = tuple(base_name(k["name"]) for k in kv_cache)
    return Preset.model_validate(
        {"name": name, "source": source, "detect": detect + kv_names, "recipes": recipes}
    )


# -- TGI -----------------------------------------------------------------------------------------
# huggingface/text-generation-inference, backends/v3/src/queue.rs (stored 120d577):
# `metrics::gauge!("tgi_queue_size")` incremented on append, set to the queue length when a batch
# is formed; backends/v3/src/backend.rs: `tgi_batch_current_size` gauge (the running batch);
# router/src/server.rs: `tgi_request_count` per request received and `tgi_request_success` per
# request completed (the one read: completions, as the windows' rates and Little's law want);
# `tgi_request_duration` histogram in seconds. metrics-exporter-prometheus 0.15.3: no `_total`,
# no labels on these.
TGI = _engine(
    "tgi",
    "huggingface/text-generation-inference backends/v3/src/{queue,backend}.rs, "
    "router/src/server.rs (stored 120d577, TGI 3.x)",
    waiting="tgi_queue_size",
    running="tgi_batch_current_size",
    requests="tgi_request_success",
    histogram="tgi_request_duration",
)

# -- vLLM ----------------------------------------------------------------------------------------
# vllm-project/vllm, both generations, prometheus_client (so `_total` on counters and `vllm_`
# samples in OpenMetrics):
# - V1 engine, vllm/v1/metrics/loggers.py (stored 005a810, about v0.10): gauges
#   `vllm:num_requests_running`, `vllm:num_requests_waiting` {model_name, engine},
#   `vllm:kv_cache_usage_perc` (0-1, "1 means 100 percent usage") and the deprecated-in-0.9
#   `vllm:gpu_cache_usage_perc` (same value); counter `vllm:request_success`
#   {finished_reason}; histogram `vllm:e2e_request_latency_seconds`.
# - V0 engine, vllm/engine/metrics.py (stored 00c33e8): the same running/waiting gauges
#   {model_name}, `vllm:gpu_cache_usage_perc` (0-1), `vllm:request_success_total`,
#   `vllm:e2e_request_latency_seconds`.
# `engine` is the data-parallel engine index: distinct engines, so their series add up.
VLLM = _engine(
    "vllm",
    "vllm-project/vllm vllm/v1/metrics/loggers.py (stored 005a810, about v0.10) and "
    "vllm/engine/metrics.py (stored 00c33e8, V0)",
    waiting="vllm:num_requests_waiting",
    running="vllm:num_requests_running",
    requests="vllm:request_success_total",
    histogram="vllm:e2e_request_latency_seconds",
    kv_cache=(
        {"name": "vllm:kv_cache_usage_perc", "scale": 100.0},
        {"name": "vllm:gpu_cache_usage_perc", "scale": 100.0},
    ),
)

# -- TEI -----------------------------------------------------------------------------------------
# huggingface/text-embeddings-inference core/src/queue.rs: `metrics::gauge!("te_queue_size")`
# (incremented on append, set after each batch); router/src/http/server.rs:
# `metrics::counter!("te_request_count", "method" => "single"|"batch")` per request received and
# `te_request_success` {method} per success (the one read); `te_request_duration` histogram (s).
# TEI has no running-batch gauge: its queue is `waiting` only, and in flight is left to the
# platform's pending series or the derived (Little's law) count.
TEI = _engine(
    "tei",
    "huggingface/text-embeddings-inference core/src/queue.rs, router/src/http/server.rs "
    "(stored index versions, metrics-exporter-prometheus 0.15)",
    waiting="te_queue_size",
    running=None,
    requests="te_request_success",
    histogram="te_request_duration",
)

# -- llama.cpp -----------------------------------------------------------------------------------
# ggml-org/llama.cpp tools/server (the /metrics handler, hand-written text, `--metrics`): every
# item as `# HELP llamacpp:<name>`, `# TYPE llamacpp:<name> <type>`, one unlabelled sample;
# gauges `requests_processing` (busy slots), `requests_deferred` (waiting for a slot); counters are
# tokens and decode calls, no request counter. `kv_cache_usage_ratio` (0-1) exists in older
# builds only (tools/server/README.md, stored 00dc805, no longer lists it).
LLAMACPP = _engine(
    "llamacpp",
    "ggml-org/llama.cpp tools/server /metrics handler and tools/server/README.md (stored 00dc805)",
    waiting="llamacpp:requests_deferred",
    running="llamacpp:requests_processing",
    kv_cache=({"name": "llamacpp:kv_cache_usage_ratio", "scale": 100.0},),
)

# -- SGLang --------------------------------------------------------------------------------------
# sgl-project/sglang python/sglang/srt/metrics/collector.py (stored 00ae9c1):
# SchedulerMetricsCollector gauges `sglang:num_running_reqs`, `sglang:num_queue_reqs`,
# `sglang:token_usage` (KV pool occupancy, 0-1); TokenizerMetricsCollector counter
# `sglang:num_requests_total` and histogram `sglang:e2e_request_latency_seconds`. Labels: the
# scheduler's (`model_name`, and per rank `tp_rank`, `pp_rank`, `moe_ep_rank`, `dp_rank`, ...).
# Ranks of one tensor/pipeline/expert-parallel group report the same scheduler, so those series
# are collapsed (largest) rather than summed; data-parallel ranks are distinct and add up.
_RANKS = ("tp_rank", "pp_rank", "moe_ep_rank")
SGLANG = _engine(
    "sglang",
    "sgl-project/sglang python/sglang/srt/metrics/collector.py (stored 00ae9c1)",
    waiting={"name": "sglang:num_queue_reqs", "collapse": _RANKS},
    running={"name": "sglang:num_running_reqs", "collapse": _RANKS},
    requests={"name": "sglang:num_requests_total", "collapse": _RANKS},
    histogram="sglang:e2e_request_latency_seconds",
    kv_cache=({"name": "sglang:token_usage", "scale": 100.0, "collapse": _RANKS},),
)

# -- HF Inference Toolkit ------------------------------------------------------------------------
# huggingface/huggingface-inference-toolkit src/huggingface_inference_toolkit/
# webservice_starlette.py (PR #95 and later stored versions): `GET /metrics` returns bare lines
# with no HELP or TYPE: `inf_batch_current_size` (requests being processed) and `inf_queue_size`
# (requests waiting); newer versions add `inf_accepting` and `inf_auto_frozen` (not load).
HF_TOOLKIT = _engine(
    "hf-toolkit",
    "huggingface/huggingface-inference-toolkit webservice_starlette.py metrics() (PR #95; "
    "stored index versions)",
    waiting="inf_queue_size",
    running="inf_batch_current_size",
)

# The detection order: engines first (their gauges are the load), the platform last.
PRESETS: dict[str, Preset] = {
    p.name: p for p in (VLLM, SGLANG, TGI, TEI, LLAMACPP, HF_TOOLKIT, PLATFORM)
}
DETECTION_ORDER: tuple[str, ...] = tuple(PRESETS)
PRESET_CHOICES: tuple[str, ...] = (AUTO, CUSTOM, *PRESETS)


def detect(names: frozenset[str]) -> Preset | None:
    """The first preset of `DETECTION_ORDER` with one of its families among `names` (base names)."""
    for name in DETECTION_ORDER:
        preset = PRESETS[name]
        if any(d in names for d in preset.detect):
            return preset
    return None


@lru_cache(maxsize=64)
def custom_preset(mapping: FeedMapping) -> Preset:
    """`scrape.mapping` (one series name per signal, the pre-preset config) as a recipe set."""
    m = mapping
    return Preset(
        name=CUSTOM,
        source="scrape.mapping in the config",
        detect=(),
        replica_label=m.replica_label,
        recipes={
            "pending": _r([m.pending]),
            "requests": _r([{"name": m.requests, "status_label": m.status_label}]),
            "latency": _r([m.latency]),
            "latency_count": _r([m.latency + "_count"]),
            "latency_sum": _r([m.latency + "_sum"]),
            "cpu": _r([m.cpu]),
            "gpu": _r([m.gpu]),
            "memory": _r([m.memory]),
            "gpu_memory": _r([m.gpu_memory]),
        },
    )


def choose_preset(
    names: frozenset[str],
    *,
    pin: str = AUTO,
    custom: FeedMapping | None = None,
    overrides: Mapping[str, Recipe] | None = None,
) -> Preset | None:
    """The preset a feed is read with: the pinned one, else `custom` if configured, else detected.

    `names` are the feed's base names (`recipes.family_names`). None: auto and nothing known.
    """
    if pin == CUSTOM:
        preset: Preset | None = custom_preset(custom or FeedMapping())
    elif pin != AUTO:
        preset = PRESETS[pin]
    elif custom is not None:
        preset = custom_preset(custom)
    else:
        preset = detect(names)
    if preset is not None and overrides:
        preset = preset.with_overrides(overrides)
    return preset
