"""The emulated platform: a deterministic, seeded simulation of Inference Endpoints. No I/O.

Time is passed in: `advance_to(t)` moves the world forward (never backwards) in steps aligned on
whole epoch seconds (a step never crosses an integer second; the last one ends exactly at `t`).
A platform of one endpoint (a replay's) passes a run of quiet seconds (nothing arrives, is held,
becomes ready, starts, completes or times out) in one go, changing only what those seconds
change; `batch_quiet = False` steps every second (tests/test_emulator_quiet.py: the same world).

Model and definitions (all inferred where the reference says "inferred"; every number is a field
of `PlatformConfig` or `SimParams`):

- **Replicas.** A replica is created, spends `cold_start_s` initializing, then serves up to
  `concurrency` requests at once; each request takes `service_time_s * U(1 - jitter, 1 + jitter)`.
  Replica ids look like `fqwg7eri-hskoj` and come from a per-endpoint seeded generator.
- **Queueing.** One FIFO queue per endpoint feeding all ready replicas (earliest free slot first),
  simulated exactly in continuous time inside each step.
- **Arrivals.** Per-endpoint Poisson process with rate `pattern.rate(t - t0)`, piecewise constant
  on whole seconds (rate taken at the middle of each second), sampled by time rescaling from a
  seeded `random.Random`, so results do not depend on how `advance_to` calls are chunked. A
  `Trace` pattern replays its arrival offsets exactly, with its per-request service times when it
  has them (`Trace.service_s`, no jitter).
- **Request log** (opt-in, `record_requests`): each request's arrival and queueing delay (start of
  service - arrival), NaN for a 503; the backtest computes SLO attainment from it.
- **pending_requests** = requests queued + requests in service (requests without an HTTP status
  yet, as the platform's docs define pending requests).
- **Latency** of a request = queueing delay + service time, recorded when it completes.
  `latency_distribution` quantiles cover requests completed in the last `latency_window_s`
  (NaN when there were none); `_count`/`_sum` cover the same window, as the published sample
  reads (its count is 4 beside 1,153 requests), or are cumulative (`latency_summary`).
- **Rejections.** An arrival while the endpoint has no ready replica (pending, initializing with
  none ready, scaledToZero, paused, failed) is answered 503 at once and counted as
  `http_requests{replica_id="proxy",status_code="503"}`. An arrival at a scaledToZero endpoint
  wakes it (initializing, `max(minReplica, 1)` replicas cold-starting). With `SimParams.hold_s`
  (the clients of a load pattern send `X-Scale-Up-Timeout`), such a request is held instead: it
  wakes a scaledToZero endpoint and is queued, ahead of later arrivals, as soon as a replica is
  ready, or answered 503 when the hold runs out (its queueing delay counts from its arrival).
- **Idle (scale-to-zero) timer.** Runs only while the endpoint is `running`, from when it became
  running (a cold start or an update never eats into it). Activity resets it: a request arriving
  (served or 503) or completing. It does not run out while a request is queued, in service or
  held at the proxy (`hold` / `release`: a request with `X-Scale-Up-Timeout` waiting for a replica
  wakes a scaledToZero endpoint and keeps it awake until it is answered).
- **States.** create -> pending (`pending_s`) -> initializing -> running (>= 1 ready replica).
  pause -> paused (replicas removed, url null). resume from paused -> pending -> ... ; resume
  while running/initializing/pending/updating -> 400 "Endpoint is already running"; resume from
  scaledToZero wakes it. scale-to-zero (explicit, or automatic from running after
  `scaleToZeroTimeout` idle minutes when minReplica == 0; a null timeout disables it) ->
  scaledToZero (url kept).
  An update of the instance or model -> updating: new replicas cold-start (`update_delay_s`, by
  default the endpoint's cold start) while the old ready ones keep serving; when all new replicas
  are ready the old ones are removed -> running. Scaling-only updates do not redeploy (switch:
  `scaling_update_redeploys`). `failed`/`updateFailed` are reachable through `force_state`, and
  `inject_start_failure` makes the next redeploy (to one instance type, or any) fail: when its
  new replicas would be ready, every replica is removed and the endpoint is `updateFailed`,
  serving nothing (503) until the next update (what the real platform keeps serving then is not
  documented; this is the worst case).
- **Capacity per accelerator** (`capacity_per_accelerator`, on by default). `SimParams` state the
  service time and concurrency on the instance the endpoint was created on; a replica of another
  instance serves each request in that time x (created-on replica bandwidth / its own), and, with
  `SimParams.model_gb`, batches concurrency x (its memory left after the model / the created-on
  one's), capped at 4x: the capacity model of `controller.cost.capacity` (docs/right-sizing.md).
  With `model_gb`, the feed's GPU memory is the model's share of the replica's memory plus the
  KV cache of the requests in service (`kv_gb_per_request`).
- **Own autoscaler** (runs only while running; bounds [max(minReplica, 1), maxReplica]):
  scale-up evaluated on epoch seconds divisible by `scale_up_interval_s` (60): pendingRequests
  strategy adds one replica when mean(pending / replicas) over the past `pending_window_s` (20 s)
  exceeds the threshold (`compute.scaling.measure.pendingRequests`, default 1.5); the
  hardwareUsage strategy adds one when the mean busy-slot utilisation of ready replicas
  (instantaneous for CPU, averaged over `gpu_hardware_window_s` for GPU) exceeds the threshold
  (default 80 %). "replicas" counts all replicas, initializing ones included, so a cold start does
  not trigger a cascade of scale-ups. Scale-down evaluated every `scale_down_interval_s` (120),
  removes at most one replica, only when the load spread over one replica fewer stays below
  `scale_down_fraction` (0.5) x threshold, and not within `stabilization_s` (300) of the previous
  scale-up or scale-down. A scale-up that would exceed quota is skipped. Bounds changes clamp
  immediately (raising min starts cold replicas; lowering max removes replicas at once, not-ready
  and newest first).
- **Billing.** Each replica is billed from its creation (initializing) until its removal. Exactly:
  a replica's lifetime in seconds is rounded **up** to whole minutes (a started minute is billed in
  full: 60.0 s -> 1 min, 60.5 s -> 2 min), each minute costs `usd_per_hour / 60` at the price of
  the replica's instance; live replicas are billed on the same rule up to now. Running totals are
  kept per endpoint (minutes per price), so `billed_usd` is exact. Pause/scale-to-zero/delete end
  billing; deleting an endpoint forgets its totals.
- **Quota.** Per quota group: (namespace, vendor, region, instance type) by default, as the
  provider route reports it per compute option (`quota_scope="accelerator"` pools a vendor's
  accelerator kind instead). Limit `default_max_accelerators` (32) unless `set_quota` says
  otherwise. A replica holds its GPUs / Inferentia chips, or on CPU its vCPUs (`cpu_quota`). An
  endpoint holds that x: its current replicas (pending: the replicas it is about to start;
  initializing/running/updating: non-retiring replicas), maxReplica when scaledToZero, 0 when
  paused or failed. create, resume and update that would raise usage above the maximum fail with
  `quota_error_status` (400; the real platform's code and text are unknown) and a message
  containing "quota".
- **Bodies.** Validated by `schema` (strict types, no unknown keys, NaN/Infinity refused); the
  rules needing state are here: name syntax, instance lookup, min <= max, the limits
  (`max_replicas_per_endpoint`, `max_endpoints_per_namespace`, `max_scale_to_zero_timeout_min`),
  no move between accelerator kinds (`allow_accelerator_change`), vLLM/SGLang on several
  accelerators need a parallelism size. Updates merge nested objects key by key; `model.image`,
  `measure`, `command`, `args`, `tags` and `model.env`/`secrets` (unless `env_update="merge"`)
  replace whole. Reads return `model.task` (null when unset), `env` and `secrets` (values
  redacted to null, registry credentials to `{"username": "", "password": null}`: switch
  `redact_secrets`), and the image's health route as the endpoint's `healthRoute`.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import math
import random
import re
import zlib
from array import array
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from controller.cost.capacity import replica_bandwidth, replica_memory_gb
from controller.cost.pricing import PriceRow, load_pricing, lookup_price
from controller.emulator.engines import (
    FEED_SHAPES,
    EngineLoad,
    LatencyHistogram,
    histogram_bounds,
    render_engine,
)
from controller.emulator.hub import HubModels
from controller.emulator.load import LoadPattern, Trace
from controller.emulator.schema import (
    PARALLEL_VARIANTS,
    CreateBody,
    EmulatorError,
    UpdateBody,
    validate,
)
from controller.platform.models import EndpointState, UserRef

__all__ = [
    "REGIONS",
    "EmulatorError",
    "FeedValues",
    "Platform",
    "PlatformConfig",
    "RequestLog",
    "RequestTicket",
    "SimParams",
]

FeedShape = Literal[
    "full",
    "published",
    "tgi",
    "vllm",
    "vllm-v0",
    "tei",
    "llamacpp",
    "sglang",
    "hf-toolkit",
]
S = EndpointState
SERVING = frozenset({S.RUNNING, S.INITIALIZING, S.UPDATING})
_HOLDABLE = SERVING | {S.PENDING, S.SCALED_TO_ZERO}  # states whose proxy holds a request
PROXY_REPLICA = "proxy"
QUANTILES = (0.5, 0.9, 0.95, 0.99)
METRICS = ("pendingRequests", "hardwareUsage")

# Regions the emulator accepts, with the labels of the provider route.
REGIONS: dict[str, dict[str, str]] = {
    "aws": {"us-east-1": "N. Virginia", "eu-west-1": "Ireland"},
    "gcp": {"us-east4": "N. Virginia", "europe-west4": "Netherlands"},
    "azure": {"eastus": "Virginia", "westeurope": "Netherlands"},
}

MESSAGES = {
    S.PENDING: "Endpoint waiting to be scheduled",
    S.INITIALIZING: "Endpoint is initializing",
    S.UPDATING: "Endpoint waiting for the update",
    S.UPDATE_FAILED: "Endpoint update failed",
    S.RUNNING: "Endpoint is ready",
    S.PAUSED: "Endpoint is paused",
    S.FAILED: "Endpoint failed to deploy",
    S.SCALED_TO_ZERO: "Endpoint is scaled to zero",
}

_Seconds = Annotated[float, Field(ge=0, le=86_400)]
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass
class PlatformConfig:
    """Knobs of the emulated platform; defaults follow the platform's documented behaviour. Each
    is a setting of `governor emulator` (`--set NAME=VALUE`, the scenario file's `settings:`),
    validated against the bounds annotated here; docs/emulator.md lists them."""

    pending_s: _Seconds = 10.0
    cold_start_s: _Seconds = 120.0
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = 4
    service_time_s: Annotated[float, Field(gt=0, le=86_400)] = 1.0
    service_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.3
    update_delay_s: _Seconds | None = None  # None: the endpoint's cold_start_s
    scale_up_interval_s: Annotated[int, Field(ge=1, le=86_400)] = 60
    scale_down_interval_s: Annotated[int, Field(ge=1, le=86_400)] = 120
    pending_window_s: Annotated[float, Field(gt=0, le=86_400)] = 20.0
    pending_threshold: Annotated[float, Field(gt=0, le=1e6)] = 1.5
    hardware_threshold: Annotated[float, Field(gt=0, le=100)] = 80.0
    gpu_hardware_window_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    scale_down_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    stabilization_s: _Seconds = 300.0
    default_metric: Literal["pendingRequests", "hardwareUsage"] = "hardwareUsage"
    latency_window_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    # `latency_distribution_count`/`_sum` over the quantiles' window ("window", as the published
    # sample reads: count 4 beside 1,153 requests) or since creation ("cumulative").
    latency_summary: Literal["window", "cumulative"] = "window"
    # "full": the emulator's feed (pending_requests and the GPU series besides the sample's);
    # "published": only what the platform's published sample shows (latency_distribution,
    # http_requests, cpu/memory percent): no pending-requests series at all; or an engine's own
    # feed (`engines.ENGINE_FEEDS`). An endpoint's `SimParams.feed` overrides it.
    feed_shape: FeedShape = "full"
    removed_series_retention_s: _Seconds = 300.0
    default_max_accelerators: Annotated[int, Field(ge=0, le=10_000_000)] = 32
    quota_error_status: Annotated[int, Field(ge=400, le=599)] = 400
    scaling_update_redeploys: bool = False
    public_base: Annotated[str, Field(pattern=r"^https?://")] = "http://127.0.0.1"
    # Behaviour the reference leaves open (see docs/emulator.md).
    redact_secrets: bool = True  # model.secrets values and registry credentials read back redacted
    allow_accelerator_change: bool = False  # a cpu <-> gpu <-> neuron update is a 400 unless set
    env_update: Literal["replace", "merge"] = "replace"  # how an update's model.env/secrets apply
    # Limits (every one a 400 naming the field when exceeded).
    max_replicas_per_endpoint: Annotated[int, Field(ge=1, le=10_000)] = 1000
    max_endpoints_per_namespace: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    max_scale_to_zero_timeout_min: Annotated[int, Field(ge=1, le=5_256_000)] = 525_600  # a year
    # Quota (see "Quota" above): groups per instance type or pooled per accelerator kind.
    quota_scope: Literal["instance_type", "accelerator"] = "instance_type"
    # Service time and batch follow the instance (see "Capacity per accelerator" above).
    capacity_per_accelerator: bool = True
    cpu_quota: bool = True  # CPU replicas hold their vCPUs in quota units


@dataclass(frozen=True)
class SimParams:
    """Per-endpoint simulation parameters; None means the `PlatformConfig` default."""

    cold_start_s: float | None = None
    concurrency: int | None = None
    service_time_s: float | None = None
    # Load-pattern requests that find no ready replica are held at the proxy this long (the
    # clients' `X-Scale-Up-Timeout`, waking a scaledToZero endpoint) instead of 503 at once.
    hold_s: float | None = None
    # The feed shape its open-metrics route serves (`engines.FEED_SHAPES`); None: `feed_shape`.
    feed: str | None = None
    # The model's weights (GB): the GPU memory feed and the batch on another instance follow it.
    model_gb: float | None = None
    kv_gb_per_request: float = 0.25  # KV cache of one request in service (a 2k-token context)
    # Share of a replica's memory the engine reserves up front (vLLM's gpu_memory_utilization,
    # 0.9): the GPU memory feed then shows at least this share, whatever the model.
    gpu_memory_reserved: float | None = None

    def __post_init__(self) -> None:
        if self.feed is not None and self.feed not in FEED_SHAPES:
            raise ValueError(f"feed: unknown shape {self.feed!r}; one of {', '.join(FEED_SHAPES)}")


@dataclass
class RequestTicket:
    """One inference-plane request submitted through `submit_request`."""

    id: int
    endpoint: str
    arrival: float
    status: str = "queued"  # queued | running | done | rejected
    status_code: int | None = None
    replica_id: str | None = None
    start: float | None = None
    finish: float | None = None
    reason: str | None = None

    @property
    def latency(self) -> float | None:
        return None if self.finish is None else self.finish - self.arrival


class RequestLog:
    """Per-request record of one endpoint, kept when `Platform.record_requests` is on (the
    backtest's SLO accounting). Two parallel arrays in the order requests were dispatched or
    rejected: `arrival` (epoch s) and `wait` (queueing delay in s: start of service - arrival;
    NaN for a request answered 503, at arrival or when the queue was dropped). Requests still
    queued are not in it (`Platform.queued_arrivals` lists them)."""

    __slots__ = ("arrival", "wait")

    def __init__(self) -> None:
        self.arrival: array[float] = array("d")
        self.wait: array[float] = array("d")

    def __len__(self) -> int:
        return len(self.arrival)

    def add(self, arrival: float, wait: float) -> None:
        self.arrival.append(arrival)
        self.wait.append(wait)


class _Replica:
    __slots__ = ("busy", "created_at", "id", "price", "ready_at", "retiring", "speed", "util")

    def __init__(
        self, rid: str, created_at: float, ready_at: float, price: float, speed: float = 1.0
    ) -> None:
        self.id = rid
        self.created_at = created_at
        self.ready_at = ready_at
        self.price = price
        self.speed = speed  # service rate relative to the instance the endpoint was created on
        self.busy = 0
        self.util = 0.0
        self.retiring = False


class _Endpoint:
    def __init__(
        self, ns: str, spec: dict[str, Any], row: PriceRow, sim: SimParams, seed: int
    ) -> None:
        self.ns = ns
        self.name: str = spec["name"]
        self.spec = spec
        self.row = row
        self.base_row = row  # the instance `sim` is stated for
        self.fail_next_update: str | None = None  # instance type ("*": any) whose start fails
        self.sim = sim
        self.state = S.PENDING
        self.has_url = False
        self.created_at = 0.0
        self.created_by: dict[str, str] = {}
        self.updated_at = 0.0
        self.updated_by: dict[str, str] = {}
        self.pending_until = 0.0
        self.replicas: list[_Replica] = []
        self.unslotted: list[_Replica] = []
        self.first_ready_at = math.inf
        self.last_request_at = 0.0  # last request activity: an arrival or a completion
        self.running_since = math.inf  # when it last became running (the idle timer's origin)
        self.held = 0  # requests held at the proxy (X-Scale-Up-Timeout) waiting for a replica
        # load-pattern requests held (SimParams.hold_s): (arrival, service time or None, deadline)
        self.holding: deque[tuple[float, float | None, float]] = deque()
        self.last_scale_at = -math.inf
        self.load: LoadPattern | None = None
        self.load_t0 = 0.0
        self.trace_idx = 0
        key = f"{seed}:{ns}/{self.name}"
        self.rng = random.Random(f"arrivals:{key}")
        self.id_rng = random.Random(f"ids:{key}")
        self.svc_rng = random.Random(f"service:{key}")
        self.need = self.rng.expovariate(1.0)
        # (arrival, ticket, service time or None: sample one)
        self.queue: deque[tuple[float, RequestTicket | None, float | None]] = deque()
        self.log: RequestLog | None = None
        self.slots: list[tuple[float, int, _Replica]] = []
        self.inflight: list[tuple[float, int, _Replica, float, RequestTicket | None]] = []
        self.counters: dict[tuple[str, str], int] = {}
        self.removed_series: dict[str, float] = {}
        self.lat_window: deque[tuple[float, float]] = deque()
        self.lat_count = 0
        self.lat_sum = 0.0
        self.hist: LatencyHistogram | None = None  # the engine feed's latency histogram
        self.samples: deque[tuple[float, int, int, float]] = deque(maxlen=128)
        self.closed_seconds = 0.0
        self.closed_minutes: dict[float, int] = {}
        # (price, created, removed) of every removed replica, to bill as of a past moment
        self.closed_spans: list[tuple[float, float, float]] = []
        self.served = 0
        self.lb_next = 0  # the next ready replica the endpoint URL's balancer sends a GET to
        self.rejected = 0

    @property
    def key(self) -> str:
        return f"{self.ns}/{self.name}"

    @property
    def scaling(self) -> dict[str, Any]:
        return self.spec["compute"]["scaling"]

    @property
    def min_replica(self) -> int:
        return int(self.scaling["minReplica"])

    @property
    def max_replica(self) -> int:
        return int(self.scaling["maxReplica"])

    def active(self) -> list[_Replica]:
        return [r for r in self.replicas if not r.retiring]

    def metric(self, default: str) -> str:
        measure = self.scaling.get("measure") or {}
        for name in METRICS:
            if name in measure:
                return name
        return default


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _user(by: UserRef | dict[str, str] | None) -> dict[str, str]:
    if by is None:
        return {"id": "u-0", "name": "anonymous"}
    if isinstance(by, UserRef):
        return {"id": by.id, "name": by.name}
    return {"id": str(by["id"]), "name": str(by["name"])}


def _copy_json(v: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars): several times cheaper than
    `copy.deepcopy`, which matters when one listing renders 10,000 endpoints."""
    if isinstance(v, dict):
        return {k: _copy_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy_json(x) for x in v]
    if v is None or isinstance(v, str | int | float):
        return v
    return copy.deepcopy(v)


def _billed_minutes(seconds: float) -> int:
    return max(0, math.ceil(seconds / 60.0 - 1e-9))


def _noise(seed: int, rid: str, what: str, t: float) -> float:
    """Stable pseudo-random value in [-1, 1] for (replica, series, 15 s bucket)."""
    h = zlib.crc32(f"{seed}:{rid}:{what}:{int(t // 15)}".encode())
    return (h / 0xFFFFFFFF) * 2 - 1


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.9g}"


# ---------------------------------------------------------------------------------------------
# request bodies (validated by `schema`; these are the rules that need the platform's state)

# Parts a GET echoes that a client may send back on POST/PUT; derived, never stored.
_ECHOED = (("status",), ("compute", "id"), ("compute", "scaling", "metric"))
_ECHOED_DROPPED = (("compute", "scaling", "threshold"),)
# Update keys whose value replaces the current one whole (everything else merges key by key).
_REPLACED = frozenset(
    {"image", "measure", "command", "args", "tags", "privateService", "experimentalFeatures"}
)


def _drop_echoes(body: dict[str, Any]) -> None:
    for path in (*_ECHOED, *_ECHOED_DROPPED):
        node: Any = body
        for k in path[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)


def _health_route(spec: dict[str, Any]) -> str:
    """The endpoint's health route: its image's, else the one it was created with, else /health."""
    image = spec["model"].get("image") or {}
    variant = next(iter(image.values()), {}) if image else {}
    return variant.get("healthRoute") or spec.get("healthRoute") or "/health"


def _redacted_model(model: dict[str, Any]) -> None:
    """Secrets and registry credentials as the platform reads them back: values withheld."""
    if model.get("secrets"):
        model["secrets"] = dict.fromkeys(model["secrets"])
    for variant in (model.get("image") or {}).values():
        if isinstance(variant, dict) and "credentials" in variant:
            variant["credentials"] = {"username": "", "password": None}


def _deep_merge(dst: dict[str, Any], src: dict[str, Any], *, replace: set[str]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and k not in replace:
            _deep_merge(dst[k], v, replace=replace)
        else:
            dst[k] = copy.deepcopy(v)


# Host vCPUs and RAM (GB) per accelerator of each accelerated instance type. The pricing table has
# none for GPU/Inferentia rows and the platform's figures are not published, except one fixture
# (aws nvidia-l4 x1: 7 vCPUs, 30 GB). Inferred: the cloud family's per-accelerator share (g6, g5,
# g4dn, g6e, p4de, p5, p5e, p6, inf2 on AWS), less one vCPU and 2 GB for the platform, which
# reproduces that fixture. Unknown types get the L4's share.
_HOST_PER_ACCELERATOR: dict[str, tuple[int, int]] = {
    "nvidia-t4": (8, 32),
    "nvidia-l4": (8, 32),
    "nvidia-a10g": (8, 32),
    "nvidia-l40s": (8, 64),
    "nvidia-a100": (12, 144),
    "nvidia-h100": (24, 256),
    "nvidia-h200": (24, 256),
    "nvidia-b200": (24, 256),
    "inf2": (4, 16),
}


def host_resources(row: PriceRow) -> tuple[int, int]:
    """(vCPUs, RAM GB) of one replica of an accelerated instance (see `_HOST_PER_ACCELERATOR`)."""
    cpus, ram = _HOST_PER_ACCELERATOR.get(row.instance_type, (8, 32))
    n = max(row.accelerators, 1)
    return cpus * n - 1, ram * n - 2


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class ListingVersion:
    """What one namespace's listing (`Platform.list`) is built from besides the platform's
    config: per endpoint its spec (the object itself: an update replaces it whole, and holding
    it here keeps its id from being reused) and the status inputs. Equal versions give equal
    listings; the fast replay's client reuses its records then (controller/backtest/direct.py)."""

    specs: tuple[dict[str, Any], ...]
    fields: tuple[Any, ...]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ListingVersion)
            and self.fields == other.fields
            and len(self.specs) == len(other.specs)
            and all(a is b for a, b in zip(self.specs, other.specs, strict=True))
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class FeedValues:
    """The numbers of one endpoint's platform feed ("full" / "published" shapes), in the order
    `render_metrics` writes them: quantiles of the latency window, its count and sum, the
    request counters by (replica, status code), pending (None when not published), and per
    hardware family its help text and per-replica percentages."""

    quantiles: list[tuple[float, float]]
    latency_count: int
    latency_sum: float
    counters: list[tuple[tuple[str, str], int]]
    pending: int | None
    hardware: dict[str, tuple[str, list[tuple[str, float]]]]


class Platform:
    """The emulated platform. All methods are synchronous; callers advance time explicitly."""

    def __init__(
        self, *, start: float, seed: int = 0, config: PlatformConfig | None = None
    ) -> None:
        self.config = config or PlatformConfig()
        self.seed = seed
        self._now = float(start)
        self._eps: dict[tuple[str, str], _Endpoint] = {}
        self._namespaces: set[str] = set()
        self._seq = itertools.count()
        self._ticket_ids = itertools.count(1)
        # quota rules: (namespace, vendor, kind, region, instance type) -> max; None matches all
        self._quota: list[tuple[tuple[str, str, str | None, str | None, str | None], int]] = []
        self.public_base = self.config.public_base.rstrip("/")
        # the Hub's model API (`/api/models/{repo}`): sizes for right-sizing
        self.hub = HubModels()
        # One endpoint's quiet seconds passed at once (`_advance_alone`); off: every second is
        # one step (tests/test_emulator_quiet.py compares the two).
        self.batch_quiet = True

    # -- time ---------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        """Step the world to time `t` (ignored if `t` is not after the current time)."""
        if self.batch_quiet and len(self._eps) == 1:
            self._advance_alone(next(iter(self._eps.values())), t)
            return
        while self._now < t:
            a = self._now
            b = min(t, math.floor(a) + 1.0)
            for ep in list(self._eps.values()):
                self._step(ep, a, b)
            self._now = b
            if b == math.floor(b):
                for ep in list(self._eps.values()):
                    self._on_second(ep, b)

    def _advance_alone(self, ep: _Endpoint, t: float) -> None:
        """`advance_to` with one endpoint (a replay's platform): the same per-second steps,
        except that a run of quiet seconds (`_quiet_seconds`) is passed by `_pass_quiet`, which
        does only what those seconds change. With several endpoints every second stays one
        step of all of them in turn (their quota is shared)."""
        while self._now < t:
            a = self._now
            if a == math.floor(a):
                k = self._quiet_seconds(ep, a, t)
                if k > 0:
                    self._pass_quiet(ep, a, k)
                    continue
            b = min(t, math.floor(a) + 1.0)
            self._step(ep, a, b)
            self._now = b
            if b == math.floor(b):
                self._on_second(ep, b)

    @staticmethod
    def _quiet_seconds(ep: _Endpoint, a: float, t: float) -> int:
        """How many whole seconds from `a` (a whole second, up to `t`) `_step` would leave the
        endpoint as it is: no arrival, no held request, no replica becoming ready, nothing to
        dispatch or complete, no state timer. Each bound is the first second that is not; the
        common ones (a completion, an arrival) are checked first, as most seconds are not
        quiet."""
        n = math.floor(t) - a
        if n < 1:
            return 0
        infl = ep.inflight
        if infl:  # a completion in the step ending at b when it finishes by b
            n = min(n, math.ceil(infl[0][0]) - 1 - a)
            if n < 1:
                return 0
        load = ep.load
        if load is not None:
            if not isinstance(load, Trace):
                return 0
            if ep.trace_idx < len(load.arrivals):
                # an arrival at x falls in the step ending at b when x < b
                n = min(n, math.floor(ep.load_t0 + load.arrivals[ep.trace_idx]) - a)
                if n < 1:
                    return 0
        st = ep.state
        if ep.holding or st is S.PENDING or st is S.UPDATING:
            return 0
        if st is S.RUNNING and (not ep.has_url or ep.first_ready_at > a + 1):
            return 0
        if ep.queue and ep.slots:  # a dispatch in the step ending at b when it starts before b
            n = min(n, math.floor(max(ep.slots[0][0], ep.queue[0][0])) - a)
        # a replica is slotted in the step ending at b when ready_at < b, and counts as ready
        # in that second's sample when ready_at <= b: both stay as they are while b < ready_at
        first = min((r.ready_at for r in ep.unslotted), default=math.inf)
        if st is S.INITIALIZING:
            first = min(first, ep.first_ready_at)  # running from the step ending at it
        if first != math.inf:
            n = min(n, math.ceil(first) - 1 - a)
        return max(0, int(n))

    def _pass_quiet(self, ep: _Endpoint, a: float, k: int) -> None:
        """The `k` quiet seconds after `a` (`_quiet_seconds`), as `_on_second` would pass them:
        the replicas' utilisation moves towards their (unchanged) busy share each second, each
        second adds its (unchanged) sample, and the windows age once at the end (dropping what
        is older than the last second drops what every second in turn would have). A second
        that may act (the platform autoscaler's, or the idle timeout's once it can run out)
        gets the whole `_on_second` and ends the run."""
        serving = ep.state in SERVING
        if serving:
            conc = self._concurrency(ep)
            n_active = 0
            ready_n = 0
            util_sum = 0.0
            ready: list[tuple[_Replica, float]] = []
            for r in ep.replicas:
                if not r.retiring:
                    n_active += 1
                if r.ready_at <= a + 1:
                    frac = min(1.0, r.busy / conc)
                    ready.append((r, frac))
                    ready_n += 1
                    util_sum += frac
            pending = len(ep.queue) + len(ep.inflight)
            mean = util_sum / ready_n if ready_n else 0.0
            running = ep.state == S.RUNNING
            cfg = self.config
            up, down = cfg.scale_up_interval_s, cfg.scale_down_interval_s
            idle = (
                running
                and ep.min_replica == 0
                and bool(ep.scaling.get("scaleToZeroTimeout"))
                and not (ep.held or ep.queue or ep.inflight)
            )
            samples = ep.samples
            for i in range(1, k + 1):
                tt = a + i
                if running:
                    ti = int(tt)
                    if ti % up == 0 or ti % down == 0 or (idle and self._idle_out(ep, tt)):
                        self._now = tt
                        self._on_second(ep, tt)
                        return
                for r, frac in ready:
                    r.util += 0.3 * (frac - r.util)
                samples.append((tt, pending, n_active, mean))
        end = a + k
        self._now = end
        self._age(ep, end)

    def _age(self, ep: _Endpoint, t: float) -> None:
        """Drop the latency window's entries and the removed replicas' series older than
        their windows at `t`."""
        cfg = self.config
        while ep.lat_window and ep.lat_window[0][0] < t - cfg.latency_window_s:
            ep.lat_window.popleft()
        if ep.removed_series:
            expired = [
                rid
                for rid, at in ep.removed_series.items()
                if at < t - cfg.removed_series_retention_s
            ]
            for rid in expired:
                del ep.removed_series[rid]
                for k in [k for k in ep.counters if k[0] == rid]:
                    del ep.counters[k]

    def set_public_base(self, url: str) -> None:
        """Base of the endpoints' `status.url` (e.g. `http://127.0.0.1:8081`)."""
        self.public_base = url.rstrip("/")

    # -- simulation core ----------------------------------------------------------------------

    def _service_time(self, ep: _Endpoint) -> float:
        base = ep.sim.service_time_s or self.config.service_time_s
        j = self.config.service_jitter
        return base * (1.0 + j * (2.0 * ep.svc_rng.random() - 1.0))

    def _concurrency(self, ep: _Endpoint) -> int:
        base = ep.sim.concurrency or self.config.concurrency
        model = ep.sim.model_gb
        if model is None or ep.row is ep.base_row or not self.config.capacity_per_accelerator:
            return base
        mem_b, mem_n = replica_memory_gb(ep.base_row), replica_memory_gb(ep.row)
        if mem_b is None or mem_n is None or mem_b <= model:
            return base
        ratio = min(4.0, max(0.0, mem_n - model) / (mem_b - model))
        return max(1, math.floor(base * ratio + 1e-9))

    def _speed(self, ep: _Endpoint) -> float:
        """Service rate of a replica of the current instance relative to the created-on one."""
        if ep.row is ep.base_row or not self.config.capacity_per_accelerator:
            return 1.0
        bw_b = replica_bandwidth(ep.base_row, tp_efficiency=0.8)
        bw_n = replica_bandwidth(ep.row, tp_efficiency=0.8)
        return 1.0 if not bw_b or not bw_n else bw_n / bw_b

    def _cold_start(self, ep: _Endpoint) -> float:
        c = ep.sim.cold_start_s
        return self.config.cold_start_s if c is None else c

    def _arrive(
        self, ep: _Endpoint, at: float, ticket: RequestTicket | None, svc: float | None = None
    ) -> bool:
        ep.last_request_at = at
        if ep.state in SERVING and ep.first_ready_at <= at:
            ep.queue.append((at, ticket, svc))
            return True
        hold = ep.sim.hold_s
        if hold and ticket is None and ep.state in _HOLDABLE:
            ep.holding.append((at, svc, at + hold))
            ep.held += 1
            if ep.state == S.SCALED_TO_ZERO:
                self._wake(ep, at)
            return False
        self._count(ep, PROXY_REPLICA, "503")
        ep.rejected += 1
        if ep.log is not None:
            ep.log.add(at, math.nan)
        if ticket is not None:
            ticket.status, ticket.status_code = "rejected", 503
            ticket.reason = f"endpoint is {ep.state.value}"
        if ep.state == S.SCALED_TO_ZERO:
            self._wake(ep, at)
        return False

    def _count(self, ep: _Endpoint, rid: str, code: str) -> None:
        k = (rid, code)
        ep.counters[k] = ep.counters.get(k, 0) + 1

    def _step(self, ep: _Endpoint, a: float, b: float) -> None:
        # 1. arrivals in [a, b)
        load = ep.load
        if load is not None:
            if isinstance(load, Trace):
                arr = load.arrivals
                svcs = load.service_s or None
                while ep.trace_idx < len(arr) and ep.load_t0 + arr[ep.trace_idx] < b:
                    i = ep.trace_idx
                    at = max(a, ep.load_t0 + arr[i])
                    self._arrive(ep, at, None, svcs[i] if svcs is not None else None)
                    ep.trace_idx += 1
            else:
                r = load.rate(math.floor(a) + 0.5 - ep.load_t0)
                if r > 0:
                    pos = a
                    while True:
                        dt = ep.need / r
                        if pos + dt >= b:
                            ep.need -= r * (b - pos)
                            break
                        pos += dt
                        self._arrive(ep, pos, None)
                        ep.need = ep.rng.expovariate(1.0)
        if ep.holding:
            self._serve_held(ep, b)
        # 2. replicas becoming ready get their slots
        if ep.unslotted:
            conc = self._concurrency(ep)
            keep = []
            for rep in ep.unslotted:
                if rep.ready_at < b:
                    for _ in range(conc):
                        heapq.heappush(ep.slots, (rep.ready_at, next(self._seq), rep))
                else:
                    keep.append(rep)
            ep.unslotted = keep
        # 3. dispatch queued requests onto free slots (FIFO, earliest free slot first)
        q, slots, infl = ep.queue, ep.slots, ep.inflight
        while q and slots:
            free_at, _, rep = slots[0]
            arr_t, ticket, svc = q[0]
            start = free_at if free_at > arr_t else arr_t
            if start > b or (start == b and a < b):
                break
            heapq.heappop(slots)
            q.popleft()
            fin = start + (self._service_time(ep) if svc is None else svc) / rep.speed
            if ep.log is not None:
                ep.log.add(arr_t, start - arr_t)
            rep.busy += 1
            heapq.heappush(infl, (fin, next(self._seq), rep, fin - arr_t, ticket))
            heapq.heappush(slots, (fin, next(self._seq), rep))
            if ticket is not None:
                ticket.status, ticket.start, ticket.finish = "running", start, fin
                ticket.replica_id = rep.id
        # 4. completions up to b
        while infl and infl[0][0] <= b:
            fin, _, rep, lat, ticket = heapq.heappop(infl)
            rep.busy -= 1
            self._count(ep, rep.id, "200")
            ep.served += 1
            ep.lat_window.append((fin, lat))
            ep.lat_count += 1
            ep.lat_sum += lat
            if ep.hist is not None:
                ep.hist.observe(lat)
            ep.last_request_at = fin
            if ticket is not None:
                ticket.status, ticket.status_code = "done", 200
        # 5. state timers at b
        st = ep.state
        if st == S.PENDING and b >= ep.pending_until:
            ep.state = S.INITIALIZING
            n = max(ep.min_replica, 1)
            for _ in range(n):
                self._add_replica(ep, ep.pending_until)
        elif st == S.UPDATING:
            new = ep.active()
            if new and all(r.ready_at <= b for r in new):
                fail = ep.fail_next_update
                if fail is not None and fail in ("*", ep.row.instance_type):
                    self._fail_update(ep, new, b)
                else:
                    self._remove(ep, [r for r in ep.replicas if r.retiring], b)
                    self._set_running(ep, b)
        if ep.state in (S.INITIALIZING, S.RUNNING):
            if ep.first_ready_at <= b:
                if ep.state is not S.RUNNING or not ep.has_url:
                    self._set_running(ep, max(a, ep.first_ready_at))
            else:
                ep.state = S.INITIALIZING

    @staticmethod
    def _set_running(ep: _Endpoint, t: float) -> None:
        """Enter `running` at `t` (a no-op if it already is): the idle timer starts here."""
        if ep.state != S.RUNNING:
            ep.state = S.RUNNING
            ep.running_since = t
        ep.has_url = True

    def _on_second(self, ep: _Endpoint, t: float) -> None:
        cfg = self.config
        lw = ep.lat_window
        if (lw and lw[0][0] < t - cfg.latency_window_s) or ep.removed_series:
            self._age(ep, t)
        if ep.state not in SERVING:
            return
        conc = self._concurrency(ep)
        n_active = 0
        ready_n = 0
        util_sum = 0.0
        for r in ep.replicas:
            if not r.retiring:
                n_active += 1
            if r.ready_at <= t:
                frac = min(1.0, r.busy / conc)
                r.util += 0.3 * (frac - r.util)
                ready_n += 1
                util_sum += frac
        pending = len(ep.queue) + len(ep.inflight)
        ep.samples.append((t, pending, n_active, util_sum / ready_n if ready_n else 0.0))
        if ep.state != S.RUNNING:
            return
        if self._idle_out(ep, t):
            self._to_zero(ep, t)
            return
        ti = int(t)
        if ti % cfg.scale_up_interval_s == 0:
            self._autoscale_up(ep, t, n_active)
        if ti % cfg.scale_down_interval_s == 0:
            self._autoscale_down(ep, t, len(ep.active()))

    @staticmethod
    def _idle_out(ep: _Endpoint, t: float) -> bool:
        """Whether a running min-0 endpoint has been idle for its `scaleToZeroTimeout`: no request
        held, queued or in service, and none arrived or completed in the timeout since it became
        running (a cold start does not eat into the timeout)."""
        if ep.held or ep.queue or ep.inflight:
            return False
        timeout = ep.scaling.get("scaleToZeroTimeout")
        if ep.min_replica != 0 or not timeout:
            return False
        return t - max(ep.last_request_at, ep.running_since) >= timeout * 60

    def _signal(self, ep: _Endpoint, t: float) -> tuple[str, float, float]:
        """(metric, threshold, observed) where observed is pending/replica or utilisation %."""
        cfg = self.config
        metric = ep.metric(cfg.default_metric)
        measure = ep.scaling.get("measure") or {}
        if metric == "pendingRequests":
            thr = measure.get(metric) or cfg.pending_threshold
            win = [s for s in ep.samples if s[0] > t - cfg.pending_window_s]
            obs = sum(s[1] / max(1, s[2]) for s in win) / len(win) if win else 0.0
        else:
            thr = measure.get(metric) or cfg.hardware_threshold
            window = cfg.gpu_hardware_window_s if ep.row.accelerator == "gpu" else 1.0
            win = [s for s in ep.samples if s[0] > t - window]
            obs = 100.0 * sum(s[3] for s in win) / len(win) if win else 0.0
        return metric, float(thr), obs

    def _autoscale_up(self, ep: _Endpoint, t: float, n: int) -> None:
        if n >= ep.max_replica:
            return
        _, thr, obs = self._signal(ep, t)
        if obs <= thr:
            return
        per = self.units_per_replica(ep.row)
        if per:
            group = self._group_of(ep)
            others = self._used(ep.ns, group, exclude=ep)
            if others + (n + 1) * per > self._group_max(ep.ns, group):
                return
        self._add_replica(ep, t)
        ep.last_scale_at = t

    def _autoscale_down(self, ep: _Endpoint, t: float, n: int) -> None:
        if n <= max(ep.min_replica, 1) or t - ep.last_scale_at < self.config.stabilization_s:
            return
        _, thr, obs = self._signal(ep, t)
        if obs * n / (n - 1) < thr * self.config.scale_down_fraction:
            self._remove(ep, self._pick_removals(ep, 1), t)
            ep.last_scale_at = t

    def _new_id(self, ep: _Endpoint) -> str:
        rnd = ep.id_rng
        a = "".join(rnd.choice(_ID_ALPHABET) for _ in range(8))
        b = "".join(rnd.choice(_ID_ALPHABET) for _ in range(5))
        return f"{a}-{b}"

    def _add_replica(self, ep: _Endpoint, t: float, *, cold_start: float | None = None) -> None:
        cs = self._cold_start(ep) if cold_start is None else cold_start
        rep = _Replica(self._new_id(ep), t, t + cs, ep.row.usd_per_hour, self._speed(ep))
        ep.replicas.append(rep)
        ep.unslotted.append(rep)
        ep.first_ready_at = min(ep.first_ready_at, rep.ready_at)

    def _pick_removals(self, ep: _Endpoint, k: int) -> list[_Replica]:
        active = ep.active()
        # not-ready first, then newest first
        order = sorted(active, key=lambda r: (r.ready_at <= self._now, -r.created_at))
        return order[:k]

    def _remove(self, ep: _Endpoint, reps: list[_Replica], t: float) -> None:
        if not reps:
            return
        gone = {id(r) for r in reps}
        for r in reps:
            secs = max(0.0, t - r.created_at)
            ep.closed_seconds += secs
            ep.closed_minutes[r.price] = ep.closed_minutes.get(r.price, 0) + _billed_minutes(secs)
            ep.closed_spans.append((r.price, r.created_at, t))
            ep.removed_series[r.id] = t
        ep.replicas = [r for r in ep.replicas if id(r) not in gone]
        ep.unslotted = [r for r in ep.unslotted if id(r) not in gone]
        ep.slots = [s for s in ep.slots if id(s[2]) not in gone]
        heapq.heapify(ep.slots)
        ep.first_ready_at = min((r.ready_at for r in ep.replicas), default=math.inf)

    def _serve_held(self, ep: _Endpoint, b: float) -> None:
        """Held requests go to the front of the queue once a replica is ready (before their
        deadline), or are answered 503 when their hold runs out; either ends the hold."""
        ready_at = ep.first_ready_at if ep.state in SERVING else math.inf
        moved: list[tuple[float, RequestTicket | None, float | None]] = []
        keep: deque[tuple[float, float | None, float]] = deque()
        for at, svc, deadline in ep.holding:
            if ready_at < b and ready_at <= deadline:
                moved.append((at, None, svc))
            elif deadline < b:
                self._count(ep, PROXY_REPLICA, "503")
                ep.rejected += 1
                ep.last_request_at = deadline
                if ep.log is not None:
                    ep.log.add(at, math.nan)
            else:
                keep.append((at, svc, deadline))
        ep.held -= len(ep.holding) - len(keep)
        ep.holding = keep
        ep.queue.extendleft(reversed(moved))

    def _reject_queue(self, ep: _Endpoint, reason: str) -> None:
        for at, _, _ in ep.holding:
            self._count(ep, PROXY_REPLICA, "503")
            ep.rejected += 1
            if ep.log is not None:
                ep.log.add(at, math.nan)
        ep.held -= len(ep.holding)
        ep.holding.clear()
        while ep.queue:
            arr_t, ticket, _ = ep.queue.popleft()
            self._count(ep, PROXY_REPLICA, "503")
            ep.rejected += 1
            if ep.log is not None:
                ep.log.add(arr_t, math.nan)
            if ticket is not None:
                ticket.status, ticket.status_code, ticket.reason = "rejected", 503, reason

    def _to_zero(self, ep: _Endpoint, t: float) -> None:
        self._remove(ep, list(ep.replicas), t)
        self._reject_queue(ep, "endpoint scaled to zero")
        ep.state = S.SCALED_TO_ZERO
        ep.samples.clear()

    def _wake(self, ep: _Endpoint, t: float) -> None:
        ep.state = S.INITIALIZING
        ep.last_request_at = t
        for _ in range(max(ep.min_replica, 1)):
            self._add_replica(ep, t)

    def _clamp(self, ep: _Endpoint, t: float) -> None:
        if ep.state == S.SCALED_TO_ZERO and ep.min_replica >= 1:
            self._wake(ep, t)
            return
        if ep.state not in SERVING:
            return
        active = ep.active()
        lo, hi = max(ep.min_replica, 1), max(ep.max_replica, 1)
        if len(active) < lo:
            for _ in range(lo - len(active)):
                self._add_replica(ep, t)
        elif len(active) > hi:
            self._remove(ep, self._pick_removals(ep, len(active) - hi), t)
        if ep.state in (S.RUNNING, S.INITIALIZING):
            if ep.first_ready_at <= t:
                self._set_running(ep, t)
            else:
                ep.state = S.INITIALIZING

    def _fail_update(self, ep: _Endpoint, new: list[_Replica], t: float) -> None:
        """The injected start failure: every replica goes; nothing serves until the next update."""
        ep.fail_next_update = None
        self._remove(ep, list(ep.replicas), t)
        ep.state = S.UPDATE_FAILED

    def inject_start_failure(self, ns: str, name: str, instance_type: str | None = None) -> None:
        """Make the next redeploy of `ns/name` (to `instance_type`, or any) fail to start."""
        self._ep(ns, name).fail_next_update = instance_type or "*"

    def _start_update(self, ep: _Endpoint, t: float) -> None:
        if ep.state not in SERVING and ep.state != S.UPDATE_FAILED:
            return
        old = ep.replicas
        ready_old = [r for r in old if r.ready_at <= t]
        self._remove(ep, [r for r in old if r.ready_at > t], t)
        for r in ready_old:
            r.retiring = True
        n = min(max(len(ready_old), ep.min_replica, 1), max(ep.max_replica, 1))
        delay = self.config.update_delay_s
        for _ in range(n):
            self._add_replica(ep, t, cold_start=delay)
        ep.state = S.UPDATING

    # -- quota ----------------------------------------------------------------------------------
    #
    # A quota group is (namespace, vendor, region, instance type) by default: the provider route
    # reports quota per compute option, and the reference counts it "per vendor/region/instance
    # type" (sizes of one type share it). `quota_scope="accelerator"` pools a vendor's whole
    # accelerator kind across regions instead. A replica holds `units_per_replica(row)`: its GPUs
    # or Inferentia chips, or its vCPUs on a CPU instance (`cpu_quota=False`: none).

    def units_per_replica(self, row: PriceRow) -> int:
        if row.accelerator == "cpu":
            return (row.vcpus or 0) if self.config.cpu_quota else 0
        return row.accelerators

    def _group(self, region: str, row: PriceRow) -> tuple[str, str, str, str]:
        """(vendor, region, instance type, kind); region and type are "*" when pooled by kind."""
        if self.config.quota_scope == "accelerator":
            return (row.vendor, "*", "*", row.accelerator)
        return (row.vendor, region, row.instance_type, row.accelerator)

    def _group_of(self, ep: _Endpoint) -> tuple[str, str, str, str]:
        return self._group(ep.spec["provider"]["region"], ep.row)

    def set_quota(
        self,
        ns: str,
        vendor: str,
        accelerator: str | None,
        max_accelerators: int,
        *,
        region: str | None = None,
        instance_type: str | None = None,
    ) -> None:
        """Set the limit of every quota group of `ns` the filter matches (None matches all): e.g.
        `set_quota(ns, "aws", "gpu", 4)` gives each AWS GPU group 4 units. A more specific rule
        wins over a broader one; among equals the latest wins."""
        rule = (ns, vendor, accelerator, region, instance_type)
        self._quota = [(r, m) for r, m in self._quota if r != rule]
        self._quota.append((rule, max_accelerators))

    def _group_max(self, ns: str, group: tuple[str, str, str, str]) -> int:
        vendor, region, itype, kind = group
        best, best_rank = self.config.default_max_accelerators, -1
        for (rns, rvendor, rkind, rregion, rtype), mx in self._quota:
            if (rns, rvendor) != (ns, vendor) or rkind not in (None, kind):
                continue
            if rregion not in (None, region) or rtype not in (None, itype):
                continue
            rank = sum(x is not None for x in (rkind, rregion, rtype))
            if rank >= best_rank:
                best, best_rank = mx, rank
        return best

    def quota_max(
        self,
        ns: str,
        vendor: str,
        accelerator: str,
        *,
        region: str | None = None,
        instance_type: str | None = None,
    ) -> int:
        """The limit of one quota group (the first region / instance type of that kind when not
        given: groups of one kind share a limit unless a narrower rule says otherwise)."""
        group = self._lookup_group(vendor, accelerator, region, instance_type)
        return self._group_max(ns, group)

    def _lookup_group(
        self, vendor: str, kind: str, region: str | None, itype: str | None
    ) -> tuple[str, str, str, str]:
        if self.config.quota_scope == "accelerator":
            return (vendor, "*", "*", kind)
        region = region or next(iter(REGIONS.get(vendor, {"*": ""})))
        if itype is None:
            rows = [r for r in load_pricing().values() if r.vendor == vendor]
            itype = next((r.instance_type for r in rows if r.accelerator == kind), "*")
        return (vendor, region, itype, kind)

    def _units(self, ep: _Endpoint) -> int:
        """Units the endpoint holds now: current replicas (pending: those it is about to start),
        maxReplica when scaledToZero, none when paused or failed."""
        per = self.units_per_replica(ep.row)
        st = ep.state
        if st in (S.PAUSED, S.FAILED):
            return 0
        if st == S.SCALED_TO_ZERO:
            return ep.max_replica * per
        if st == S.PENDING:
            return max(ep.min_replica, 1) * per
        return len(ep.active()) * per

    def _used(
        self, ns: str, group: tuple[str, str, str, str], *, exclude: _Endpoint | None = None
    ) -> int:
        return sum(
            self._units(ep)
            for ep in self._eps.values()
            if ep.ns == ns and ep is not exclude and self._group_of(ep) == group
        )

    def quota_used(
        self,
        ns: str,
        vendor: str,
        accelerator: str,
        *,
        region: str | None = None,
        instance_type: str | None = None,
    ) -> int:
        """Units held in `ns` by endpoints of that vendor and kind (optionally one region and
        instance type): a sum over quota groups, for tests and reports."""
        return sum(
            self._units(ep)
            for ep in self._eps.values()
            if ep.ns == ns
            and ep.row.vendor == vendor
            and ep.row.accelerator == accelerator
            and region in (None, ep.spec["provider"]["region"])
            and instance_type in (None, ep.row.instance_type)
        )

    def _check_quota(
        self, ns: str, spec: dict[str, Any], row: PriceRow, replicas: int, ep: _Endpoint | None
    ) -> None:
        """Refuse (`quota_error_status`, a message with "quota") if holding `replicas` of `row`
        would take the spec's quota group over its limit; never refuses a decrease."""
        per = self.units_per_replica(row)
        if per == 0:
            return
        units = replicas * per
        group = self._group(spec["provider"]["region"], row)
        current = self._units(ep) if ep is not None and self._group_of(ep) == group else 0
        if units <= current:
            return
        others = self._used(ns, group, exclude=ep)
        mx = self._group_max(ns, group)
        if others + units > mx:
            vendor, region, itype, kind = group
            where = f"{vendor} {kind}" if itype == "*" else f"{vendor} {region} {itype}"
            raise EmulatorError(
                self.config.quota_error_status,
                f"quota exceeded: {where} accelerators in namespace {ns}: "
                f"{others} used by other endpoints + {units} requested > {mx} allowed",
            )

    # -- lookups --------------------------------------------------------------------------------

    def _ep(self, ns: str, name: str) -> _Endpoint:
        ep = self._eps.get((ns, name))
        if ep is None:
            raise EmulatorError(404, f"endpoint {ns}/{name} not found")
        return ep

    @staticmethod
    def _row_for(spec: dict[str, Any]) -> PriceRow:
        vendor = spec["provider"]["vendor"]
        region = spec["provider"]["region"]
        c = spec["compute"]
        if vendor not in REGIONS:
            raise EmulatorError(400, f"provider.vendor: unknown vendor {vendor!r}")
        if region not in REGIONS[vendor]:
            raise EmulatorError(400, f"provider.region: unknown region {region!r} for {vendor}")
        row = lookup_price(vendor, c["instanceType"], c["instanceSize"])
        if row is None:
            raise EmulatorError(
                400,
                f"compute.instanceType: unknown instance {vendor}/{c['instanceType']}/"
                f"{c['instanceSize']}",
            )
        if c["accelerator"] != row.accelerator:
            raise EmulatorError(
                400,
                f"compute.accelerator: {c['accelerator']!r} does not match instance "
                f"{c['instanceType']} ({row.accelerator})",
            )
        sc = c["scaling"]
        if sc["maxReplica"] < 1:
            raise EmulatorError(400, "compute.scaling.maxReplica: must be >= 1")
        if sc["minReplica"] > sc["maxReplica"]:
            raise EmulatorError(
                400,
                f"compute.scaling.minReplica ({sc['minReplica']}) must be <= "
                f"compute.scaling.maxReplica ({sc['maxReplica']})",
            )
        return row

    # -- rendering ------------------------------------------------------------------------------

    def url_of(self, ns: str, name: str) -> str:
        return f"{self.public_base}/inference/{ns}/{name}"

    def _wire(self, ep: _Endpoint) -> dict[str, Any]:
        spec = _copy_json(ep.spec)
        c = spec["compute"]
        p = spec["provider"]
        c["id"] = f"{p['vendor']}-{p['region']}-{c['instanceType']}-{c['instanceSize']}"
        sc = c["scaling"]
        metric = ep.metric(self.config.default_metric)
        measure = sc.get("measure") or {}
        sc["metric"] = metric
        sc["measure"] = {metric: measure.get(metric)}
        sc.setdefault("scaleToZeroTimeout", None)
        model = spec["model"]
        model.setdefault("task", None)
        model.setdefault("env", {})
        model.setdefault("secrets", {})
        if self.config.redact_secrets:
            _redacted_model(model)
        now = self._now
        st = ep.state
        if st in (S.PAUSED, S.SCALED_TO_ZERO, S.FAILED):
            ready = target = 0
        elif st == S.PENDING:
            ready, target = 0, max(ep.min_replica, 1)
        else:
            ready = sum(1 for r in ep.replicas if r.ready_at <= now)
            target = len(ep.active())
        status = {
            "createdAt": _ts(ep.created_at),
            "createdBy": dict(ep.created_by),
            "updatedAt": _ts(ep.updated_at),
            "updatedBy": dict(ep.updated_by),
            "private": None,
            "state": st.value,
            "message": MESSAGES[st],
            "url": self.url_of(ep.ns, ep.name) if ep.has_url and st != S.PAUSED else None,
            "readyReplica": ready,
            "targetReplica": target,
        }
        if st in (S.FAILED, S.UPDATE_FAILED):
            status["errorMessage"] = MESSAGES[st]
        out: dict[str, Any] = {
            "name": ep.name,
            "type": spec.pop("type", "protected"),
            "accountId": spec.pop("accountId", None),
            "healthRoute": _health_route(spec),
            "tags": spec.pop("tags", []),
        }
        for k in ("name", "status", "healthRoute"):
            spec.pop(k, None)
        out.update(spec)
        out["status"] = status
        return out

    # -- request bodies -------------------------------------------------------------------------

    def _create_spec(self, body: Any) -> dict[str, Any]:
        """The stored spec of a create body: validated, echoes dropped, defaults filled in."""
        spec = validate(CreateBody, body).given()
        _drop_echoes(spec)
        if not _NAME_RE.match(spec["name"]):
            raise EmulatorError(
                400, "name: lowercase letters, digits and '-', at most 32 characters"
            )
        spec.setdefault("type", "protected")
        spec.setdefault("accountId", None)
        spec.setdefault("tags", [])
        spec["compute"]["scaling"].setdefault("scaleToZeroTimeout", None)
        model = spec["model"]
        model.setdefault("framework", "pytorch")
        model.setdefault("revision", None)
        model.setdefault("image", {"huggingface": {}})
        return spec

    def _update_patch(self, ep: _Endpoint, body: Any) -> dict[str, Any]:
        """An update body, validated: echoes dropped; `name` and `provider` may only repeat the
        current values (a GET-then-PUT of the whole object carries them)."""
        patch = validate(UpdateBody, body).given()
        _drop_echoes(patch)
        for k in ("name", "provider"):
            if k in patch:
                current = ep.spec[k]
                if k == "provider" and isinstance(patch[k], dict):
                    same = all(current.get(f) == v for f, v in patch[k].items())
                else:
                    same = patch[k] == current
                if not same:
                    raise EmulatorError(400, f"{k}: cannot be updated")
                del patch[k]
        return patch

    def _merge(self, dst: dict[str, Any], patch: dict[str, Any]) -> None:
        """Apply a validated update: nested objects merge key by key (partial updates, as the
        reference says), except the values that replace whole (`_REPLACED`, and model.env /
        secrets unless `env_update` is "merge"); an empty or untagged customRouter removes it."""
        replace = set(_REPLACED)
        if self.config.env_update != "merge":
            replace |= {"env", "secrets"}
        router = patch.pop("customRouter", "absent")
        _deep_merge(dst, patch, replace=replace)
        if router != "absent":
            if not router or router.get("tag") is None:
                dst.pop("customRouter", None)
            else:
                dst["customRouter"] = router

    def _check_spec(self, spec: dict[str, Any], row: PriceRow) -> None:
        """The limits and the cross-field rules a spec must meet (after `_row_for`)."""
        cfg = self.config
        sc = spec["compute"]["scaling"]
        if sc["maxReplica"] > cfg.max_replicas_per_endpoint:
            raise EmulatorError(
                400,
                f"compute.scaling.maxReplica: at most {cfg.max_replicas_per_endpoint} replicas "
                "per endpoint (max_replicas_per_endpoint)",
            )
        timeout = sc.get("scaleToZeroTimeout")
        if timeout is not None and timeout > cfg.max_scale_to_zero_timeout_min:
            raise EmulatorError(
                400,
                f"compute.scaling.scaleToZeroTimeout: at most {cfg.max_scale_to_zero_timeout_min} "
                "minutes (max_scale_to_zero_timeout_min)",
            )
        image = spec["model"]["image"]
        variant = next(iter(image))
        if variant in PARALLEL_VARIANTS and row.accelerators > 1:
            fields = image[variant]
            if "tensorParallelSize" not in fields and "dataParallelSize" not in fields:
                raise EmulatorError(
                    400,
                    f"model.image.{variant}: an instance with {row.accelerators} accelerators "
                    "needs tensorParallelSize or dataParallelSize",
                )

    # -- namespaces -----------------------------------------------------------------------------

    def add_namespace(self, ns: str) -> None:
        """Make `ns` exist (an organisation or user with no endpoint yet). A create adds its
        namespace too; a namespace stays after its last endpoint is deleted."""
        self._namespaces.add(ns)

    def namespaces(self) -> frozenset[str]:
        return frozenset(self._namespaces)

    # -- management API -------------------------------------------------------------------------

    def list(self, ns: str) -> list[dict[str, Any]]:
        return [self._wire(ep) for (n, _), ep in sorted(self._eps.items()) if n == ns]

    def listing_version(self, ns: str) -> ListingVersion:
        """The inputs of `list(ns)` (`ListingVersion`), without building it: every field of an
        endpoint's `_wire` comes from its spec or from one of these."""
        now = self._now
        specs, fields = [], [self.public_base]
        for (n, name), ep in sorted(self._eps.items()):
            if n != ns:
                continue
            specs.append(ep.spec)
            fields.append(
                (
                    name,
                    ep.state,
                    sum(1 for r in ep.replicas if r.ready_at <= now),
                    len(ep.active()),
                    ep.has_url,
                    ep.created_at,
                    ep.updated_at,
                    tuple(ep.created_by.items()),
                    tuple(ep.updated_by.items()),
                )
            )
        return ListingVersion(tuple(specs), tuple(fields))

    def get(self, ns: str, name: str) -> dict[str, Any]:
        return self._wire(self._ep(ns, name))

    def create(
        self,
        ns: str,
        body: Any,
        *,
        by: UserRef | dict[str, str] | None = None,
        sim: SimParams | None = None,
        load: LoadPattern | None = None,
        ready: bool = False,
    ) -> dict[str, Any]:
        """Create an endpoint from a create body. `ready=True` (scenario set-up only) skips the
        pending and cold-start phases: the endpoint starts running with its min replicas already
        warm (or scaledToZero when minReplica is 0)."""
        spec = self._create_spec(body)
        name = spec["name"]
        row = self._row_for(spec)
        self._check_spec(spec, row)
        if (ns, name) in self._eps:
            raise EmulatorError(409, f"endpoint {ns}/{name} already exists")
        cap = self.config.max_endpoints_per_namespace
        if sum(1 for n, _ in self._eps if n == ns) >= cap:
            raise EmulatorError(
                400,
                f"name: namespace {ns} already has {cap} endpoints (max_endpoints_per_namespace)",
            )
        ep = _Endpoint(ns, spec, row, sim or SimParams(), self.seed)
        self.hub.deployed(str((spec.get("model") or {}).get("repository") or ""), ep.sim.model_gb)
        self._histogram(ep)
        t = self._now
        ep.created_at = ep.updated_at = ep.last_request_at = t
        ep.created_by = ep.updated_by = _user(by)
        if ready:
            ep.state = S.RUNNING if ep.min_replica >= 1 else S.SCALED_TO_ZERO
            ep.running_since = t
            n = ep.min_replica if ep.min_replica >= 1 else ep.max_replica
        else:
            n = max(ep.min_replica, 1)
        self._check_quota(ns, spec, row, n, None)
        if ready:
            if ep.state == S.RUNNING:
                for _ in range(ep.min_replica):
                    self._add_replica(ep, t, cold_start=0.0)
            ep.has_url = True
        else:
            ep.pending_until = t + self.config.pending_s
        self._eps[(ns, name)] = ep
        self._namespaces.add(ns)
        if load is not None:
            self.set_load(ns, name, load)
        return self._wire(ep)

    def update(
        self, ns: str, name: str, body: Any, *, by: UserRef | dict[str, str] | None = None
    ) -> dict[str, Any]:
        ep = self._ep(ns, name)
        patch = self._update_patch(ep, body)
        new = _copy_json(ep.spec)
        self._merge(new, patch)
        row = self._row_for(new)
        self._check_spec(new, row)
        old_kind, new_kind = ep.spec["compute"]["accelerator"], new["compute"]["accelerator"]
        if old_kind != new_kind and not self.config.allow_accelerator_change:
            raise EmulatorError(
                400,
                f"compute.accelerator: an endpoint cannot move from {old_kind} to {new_kind}; "
                "create a new endpoint",
            )
        row = self._row_for(new)
        old_c, new_c = ep.spec["compute"], new["compute"]
        redeploy = any(
            old_c[k] != new_c[k] for k in ("accelerator", "instanceType", "instanceSize")
        ) or ("model" in body and new["model"] != ep.spec["model"])
        old_sc = ep.spec["compute"]["scaling"]
        scaling_changed = any(
            old_sc.get(k) != new_c["scaling"].get(k) for k in ("minReplica", "maxReplica")
        )
        if scaling_changed and self.config.scaling_update_redeploys:
            redeploy = True
        # quota: what this endpoint would hold after the update
        st = ep.state
        sc = new_c["scaling"]
        if st == S.SCALED_TO_ZERO and sc["minReplica"] < 1:
            replicas = sc["maxReplica"]
        elif st in (S.PAUSED, S.FAILED):
            replicas = 0
        elif st == S.PENDING:
            replicas = max(sc["minReplica"], 1)
        else:
            n = max(len(ep.active()), sc["minReplica"], 1)
            replicas = min(n, max(sc["maxReplica"], 1))
        self._check_quota(ns, new, row, replicas, ep)
        t = self._now
        ep.spec, ep.row = new, row
        ep.updated_at, ep.updated_by = t, _user(by)
        if redeploy and (st in SERVING or st == S.UPDATE_FAILED):
            self._start_update(ep, t)
        else:
            self._clamp(ep, t)
        return self._wire(ep)

    def pause(
        self, ns: str, name: str, *, by: UserRef | dict[str, str] | None = None
    ) -> dict[str, Any]:
        ep = self._ep(ns, name)
        if ep.state != S.PAUSED:
            t = self._now
            self._remove(ep, list(ep.replicas), t)
            self._reject_queue(ep, "endpoint paused")
            ep.state = S.PAUSED
            ep.has_url = False
            ep.samples.clear()
            ep.updated_at, ep.updated_by = t, _user(by)
        return self._wire(ep)

    def resume(
        self, ns: str, name: str, *, by: UserRef | dict[str, str] | None = None
    ) -> dict[str, Any]:
        ep = self._ep(ns, name)
        t = self._now
        if ep.state in (S.RUNNING, S.INITIALIZING, S.PENDING, S.UPDATING):
            raise EmulatorError(400, f"Endpoint is already running (state {ep.state.value})")
        if ep.state == S.FAILED:
            raise EmulatorError(400, "Endpoint failed to deploy; create a new endpoint")
        if ep.state == S.SCALED_TO_ZERO:
            self._wake(ep, t)
        else:  # paused or updateFailed
            self._check_quota(ns, ep.spec, ep.row, max(ep.min_replica, 1), None)
            self._remove(ep, list(ep.replicas), t)
            ep.state = S.PENDING
            ep.pending_until = t + self.config.pending_s
            ep.last_request_at = t
        ep.updated_at, ep.updated_by = t, _user(by)
        return self._wire(ep)

    def scale_to_zero(
        self, ns: str, name: str, *, by: UserRef | dict[str, str] | None = None
    ) -> dict[str, Any]:
        ep = self._ep(ns, name)
        if ep.state == S.SCALED_TO_ZERO:
            return self._wire(ep)
        if ep.state not in SERVING:
            raise EmulatorError(400, f"Endpoint cannot be scaled to zero in state {ep.state.value}")
        t = self._now
        self._to_zero(ep, t)
        ep.updated_at, ep.updated_by = t, _user(by)
        return self._wire(ep)

    def delete(self, ns: str, name: str, *, by: UserRef | dict[str, str] | None = None) -> None:
        ep = self._ep(ns, name)
        self._remove(ep, list(ep.replicas), self._now)
        self._reject_queue(ep, "endpoint deleted")
        del self._eps[(ns, name)]

    def force_state(self, ns: str, name: str, state: str | EndpointState) -> None:
        """Admin: put an endpoint into `failed` / `updateFailed` (or any state) for tests."""
        ep = self._ep(ns, name)
        st = S(state)
        if st in (S.FAILED, S.PAUSED, S.SCALED_TO_ZERO, S.PENDING):
            self._remove(ep, list(ep.replicas), self._now)
            self._reject_queue(ep, f"endpoint {st.value}")
        if st == S.PENDING:
            ep.pending_until = self._now + self.config.pending_s
        ep.state = st

    # -- inference plane ------------------------------------------------------------------------

    def is_ready(self, ns: str, name: str) -> bool:
        ep = self._ep(ns, name)
        return ep.state in SERVING and ep.first_ready_at <= self._now

    def wake(self, ns: str, name: str) -> None:
        """A request arrives for the endpoint (counts as activity); a scaledToZero one wakes."""
        ep = self._ep(ns, name)
        ep.last_request_at = self._now
        if ep.state == S.SCALED_TO_ZERO:
            self._wake(ep, self._now)

    def hold(self, ns: str, name: str) -> None:
        """The proxy starts holding a request (`X-Scale-Up-Timeout`) until a replica is ready:
        it wakes a scaledToZero endpoint, and until `release` the endpoint is not idle."""
        self.wake(ns, name)
        self._ep(ns, name).held += 1

    def release(self, ns: str, name: str) -> None:
        """The proxy stops holding a request (served, timed out or dropped). Ignores an endpoint
        deleted meanwhile."""
        ep = self._eps.get((ns, name))
        if ep is not None and ep.held > 0:
            ep.held -= 1
            ep.last_request_at = self._now

    def submit_request(self, ns: str, name: str, *, at: float) -> RequestTicket:
        """One request arriving at `at` (the world is first advanced to `at`). The ticket is
        rejected (503) at once if no replica is ready, else queued; poll it as time advances."""
        self.advance_to(at)
        ep = self._ep(ns, name)
        t = self._now
        ticket = RequestTicket(id=next(self._ticket_ids), endpoint=ep.key, arrival=t)
        self._arrive(ep, t, ticket)
        if ticket.status == "queued":
            self._step(ep, t, t)  # dispatch now if a slot is free (sets ticket.finish)
        return ticket

    # -- load -----------------------------------------------------------------------------------

    def set_load(
        self, ns: str, name: str, pattern: LoadPattern | None, *, start: float | None = None
    ) -> None:
        """Attach a load pattern; its time origin is `start` (default: now)."""
        ep = self._ep(ns, name)
        ep.load = pattern
        ep.load_t0 = self._now if start is None else start
        ep.trace_idx = 0
        if isinstance(pattern, Trace):
            # skip arrivals already in the past
            while (
                ep.trace_idx < len(pattern.arrivals)
                and ep.load_t0 + pattern.arrivals[ep.trace_idx] < self._now
            ):
                ep.trace_idx += 1

    def record_requests(self, ns: str, name: str) -> RequestLog:
        """Start keeping a per-request `RequestLog` for the endpoint (idempotent) and return it."""
        ep = self._ep(ns, name)
        if ep.log is None:
            ep.log = RequestLog()
        return ep.log

    def queued_arrivals(self, ns: str, name: str) -> list[float]:
        """Arrival times of the requests still waiting in the endpoint's queue or held at its
        proxy."""
        ep = self._ep(ns, name)
        return [arr for arr, _, _ in ep.holding] + [arr for arr, _, _ in ep.queue]

    def load_rate(self, ns: str, name: str) -> float:
        ep = self._ep(ns, name)
        return ep.load.rate(self._now - ep.load_t0) if ep.load is not None else 0.0

    # -- billing --------------------------------------------------------------------------------

    def replica_seconds(self, ns: str, name: str) -> float:
        ep = self._ep(ns, name)
        return ep.closed_seconds + sum(self._now - r.created_at for r in ep.replicas)

    def billed_usd(self, ns: str, name: str, *, at: float | None = None) -> float:
        return sum(price * m / 60.0 for price, m in self.billed_minutes(ns, name, at=at).items())

    def billed_minutes(self, ns: str, name: str, *, at: float | None = None) -> dict[float, int]:
        """Replica-minutes billed so far, by hourly price. `at` (not after now) bills every
        replica as of then, to compare with a ledger's last look."""
        ep = self._ep(ns, name)
        t = self._now if at is None else min(at, self._now)
        if t >= self._now:
            minutes = dict(ep.closed_minutes)
        else:
            # A replica removed after `t` had only run until `t` then (the fault soak compares
            # a ledger's last look with the bill as of then; counting it whole showed minutes
            # that were not billed yet as lost).
            minutes = {}
            for price, created, removed in ep.closed_spans:
                if created < t:
                    m = _billed_minutes(min(removed, t) - created)
                    minutes[price] = minutes.get(price, 0) + m
        for r in ep.replicas:
            minutes[r.price] = minutes.get(r.price, 0) + _billed_minutes(t - r.created_at)
        return minutes

    # -- metrics feed ---------------------------------------------------------------------------

    def latency_quantiles(self, ns: str, name: str) -> dict[float, float]:
        ep = self._ep(ns, name)
        lo = self._now - self.config.latency_window_s
        vals = sorted(lat for fin, lat in ep.lat_window if fin >= lo)
        out = {}
        for q in QUANTILES:
            if not vals:
                out[q] = math.nan
            else:
                out[q] = vals[min(len(vals) - 1, max(0, math.ceil(q * len(vals)) - 1))]
        return out

    def latency_totals(self, ns: str, name: str) -> tuple[int, float]:
        """`latency_distribution_count` and `_sum`: over the quantiles' window, or since the
        endpoint was created (`latency_summary`)."""
        ep = self._ep(ns, name)
        if self.config.latency_summary == "cumulative":
            return ep.lat_count, ep.lat_sum
        lo = self._now - self.config.latency_window_s
        recent = [lat for fin, lat in ep.lat_window if fin >= lo]
        return len(recent), sum(recent)

    def pending_requests(self, ns: str, name: str) -> int:
        ep = self._ep(ns, name)
        return len(ep.queue) + len(ep.inflight)

    def _feed(self, ep: _Endpoint) -> str:
        return ep.sim.feed or self.config.feed_shape

    def feed_shape(self, ns: str, name: str) -> str:
        return self._feed(self._ep(ns, name))

    def _histogram(self, ep: _Endpoint) -> LatencyHistogram | None:
        """The endpoint's engine latency histogram, started when its shape first needs one."""
        bounds = histogram_bounds(self._feed(ep))
        if bounds is not None and (ep.hist is None or ep.hist.bounds != bounds):
            ep.hist = LatencyHistogram(bounds)
        return ep.hist if bounds is not None else None

    def engine_load(self, ns: str, name: str) -> EngineLoad:
        """What the endpoint's engine reports now: its queue, batch and completions."""
        ep = self._ep(ns, name)
        hist = self._histogram(ep)
        ready = [r for r in ep.replicas if r.ready_at <= self._now] if ep.state in SERVING else []
        return EngineLoad(
            waiting=len(ep.queue),
            running=len(ep.inflight),
            capacity=len(ready) * self._concurrency(ep),
            completed=ep.served,
            latency_count=hist.count if hist is not None else ep.lat_count,
            latency_sum=hist.total if hist is not None else ep.lat_sum,
            histogram=hist,
            created=ep.created_at,
        )

    def render_feed(
        self, ns: str, name: str, *, openmetrics: bool = False
    ) -> tuple[str, str | None]:
        """(body, content type) of the endpoint's feed in its shape; None: the platform's
        configured content type (`metrics_content_type`)."""
        feed = self.feed_shape(ns, name)
        if feed in ("full", "published"):
            return self.render_metrics(ns, name, published=feed == "published"), None
        return render_engine(feed, self.engine_load(ns, name), openmetrics=openmetrics)

    def render_replica_engine(
        self, ns: str, name: str, *, openmetrics: bool = False
    ) -> tuple[str, str] | None:
        """(body, content type) of what one replica's engine serves at `<status.url>/metrics`,
        or None when no replica is ready.

        The endpoint URL is load-balanced: each GET goes to the next ready replica in turn. That
        replica reports its own batch (the requests in service on it), its share of the
        endpoint's queue (the queue split evenly, as a balancer spreading requests would leave
        it), and its own completions; in the endpoint's engine shape, TGI's for the platform
        shapes (the platform's default text-generation container)."""
        ep = self._ep(ns, name)
        ready = (
            sorted((r for r in ep.replicas if r.ready_at <= self._now), key=lambda r: r.id)
            if ep.state in SERVING
            else []
        )
        if not ready:
            return None
        i = ep.lb_next % len(ready)
        ep.lb_next += 1
        replica, n, queued = ready[i], len(ready), len(ep.queue)
        completed = sum(
            v for (rid, code), v in ep.counters.items() if rid == replica.id and code[:1] == "2"
        )
        count, total = self.latency_totals(ns, name)
        share = completed / ep.served if ep.served else 0.0
        load = EngineLoad(
            waiting=queued // n + (1 if i < queued % n else 0),
            running=sum(1 for entry in ep.inflight if entry[2] is replica),
            capacity=self._concurrency(ep),
            completed=completed,
            latency_count=round(count * share),
            latency_sum=total * share,
            created=replica.created_at,
        )
        feed = self._feed(ep)
        shape = "tgi" if feed in ("full", "published") else feed
        return render_engine(shape, load, openmetrics=openmetrics)

    def feed_values(self, ns: str, name: str, *, published: bool | None = None) -> FeedValues:
        """The numbers of the endpoint's platform feed (`render_metrics` writes them out; the fast
        replay reads them without the text). `published`: as `render_metrics`."""
        ep = self._ep(ns, name)
        now = self._now
        count, total = self.latency_totals(ns, name)
        if published is None:
            published = self.config.feed_shape == "published"
        gpu = ep.row.accelerator == "gpu" and not published
        series = [
            ("cpu_usage_percent", "CPU percent", 3.0, 92.0),
            ("memory_usage_percent", "Memory percent", 25.0, 35.0),
        ]
        if gpu:
            series.insert(1, ("gpu_usage_percent", "GPU percent", 2.0, 95.0))
            series.append(("gpu_memory_usage_percent", "GPU memory percent", 70.0, 20.0))
        reps = sorted(ep.replicas, key=lambda r: r.id) if ep.state in SERVING else []
        hardware: dict[str, tuple[str, list[tuple[str, float]]]] = {}
        for metric, help_text, base, span in series:
            model = ep.sim.model_gb if metric == "gpu_memory_usage_percent" else None
            mem = replica_memory_gb(ep.row) if model is not None else None
            values = []
            for r in reps:
                if r.ready_at > now:
                    v = 0.0
                elif model is not None and mem:
                    used = model + r.busy * ep.sim.kv_gb_per_request
                    v = min(100.0, 100.0 * used / mem)
                    if ep.sim.gpu_memory_reserved is not None:
                        v = max(v, min(100.0, 100.0 * ep.sim.gpu_memory_reserved))
                else:
                    v = base + span * r.util + 2.0 * _noise(self.seed, r.id, metric, now)
                    v = min(100.0, max(0.0, v))
                values.append((r.id, v))
            hardware[metric] = (help_text, values)
        return FeedValues(
            quantiles=list(self.latency_quantiles(ns, name).items()),
            latency_count=count,
            latency_sum=total,
            counters=sorted(ep.counters.items()),
            pending=None if published else len(ep.queue) + len(ep.inflight),
            hardware=hardware,
        )

    def render_metrics(self, ns: str, name: str, *, published: bool | None = None) -> str:
        """The endpoint's platform feed in Prometheus text style (no `# EOF`). `published`: just
        the families of the platform's published sample (None: as `feed_shape` says)."""
        v = self.feed_values(ns, name, published=published)
        lines = [
            "# HELP latency_distribution Latency distribution",
            "# TYPE latency_distribution summary",
        ]
        for q, x in v.quantiles:
            lines.append(f'latency_distribution{{quantile="{q}"}} {_fmt(x)}')
        lines.append(f"latency_distribution_count {v.latency_count}")
        lines.append(f"latency_distribution_sum {_fmt(v.latency_sum)}")
        lines += [
            "# HELP http_requests HTTP requests by code and replicas",
            "# TYPE http_requests counter",
        ]
        for (rid, code), n in v.counters:
            lines.append(f'http_requests{{replica_id="{rid}",status_code="{code}"}} {n}')
        if v.pending is not None:
            lines += [
                "# HELP pending_requests Requests waiting or in service",
                "# TYPE pending_requests gauge",
                f"pending_requests {v.pending}",
            ]
        for metric, (help_text, values) in v.hardware.items():
            lines += [
                f"# HELP {metric} {help_text}",
                f"# TYPE {metric} gauge",
                f"# UNIT {metric} percent",
            ]
            for rid, x in values:
                lines.append(f'{metric}{{replica_id="{rid}"}} {x:.2f}')
        return "\n".join(lines) + "\n"

    # -- provider catalogue ---------------------------------------------------------------------

    def provider(self, ns: str | None = None) -> dict[str, Any]:
        """`GET /provider[/{ns}]`: vendors, regions, computes with prices (and quota if `ns`)."""
        rows = load_pricing()
        used: dict[tuple[str, str, str, str], int] = {}
        if ns is not None:
            for ep in self._eps.values():
                if ep.ns == ns:
                    g = self._group_of(ep)
                    used[g] = used.get(g, 0) + self._units(ep)
        vendors = []
        for vendor, regions in REGIONS.items():
            vrows = [r for r in rows.values() if r.vendor == vendor]
            regs = []
            for region, label in regions.items():
                computes = []
                for r in vrows:
                    c = self._compute_option(vendor, region, r)
                    if ns is not None:
                        g = self._group(region, r)
                        c["quota"] = {
                            "maxAccelerators": self._group_max(ns, g),
                            "usedAccelerators": used.get(g, 0),
                        }
                    computes.append(c)
                regs.append(
                    {"name": region, "label": label, "status": "available", "computes": computes}
                )
            vendors.append({"name": vendor, "status": "available", "regions": regs})
        return {"vendors": vendors}

    def _compute_option(self, vendor: str, region: str, r: PriceRow) -> dict[str, Any]:
        vcpus, ram = r.vcpus, r.ram_gb
        if r.accelerator != "cpu" and (vcpus is None or ram is None):
            vcpus, ram = host_resources(r)
        return {
            "id": f"{vendor}-{region}-{r.instance_type}-{r.instance_size}",
            "accelerator": r.accelerator,
            "instanceType": r.instance_type,
            "instanceSize": r.instance_size,
            "architecture": r.architecture,
            "numAccelerators": self.units_per_replica(r),
            "numCpus": vcpus,
            "memoryGb": float(ram) if ram is not None else None,
            "gpuMemoryGb": (
                int(r.accelerator_memory_gb)
                if r.accelerator == "gpu" and r.accelerator_memory_gb
                else None
            ),
            "pricePerHour": r.usd_per_hour,
            "status": "deprecated" if r.deprecated else "available",
        }

    # -- inspection -----------------------------------------------------------------------------

    def endpoints(self) -> list[tuple[str, str]]:
        return sorted(self._eps)

    def replica_counts(self, ns: str, name: str) -> tuple[int, int]:
        """(target, ready) replicas now, as `snapshot` reports them (0, 0 when not serving)."""
        ep = self._ep(ns, name)
        if ep.state not in SERVING:
            return 0, 0
        now = self._now
        return len(ep.active()), sum(1 for r in ep.replicas if r.ready_at <= now)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready view of the whole world (for tests, the demo and `/_emulator/state`)."""
        now = self._now
        eps = {}
        for (ns, name), ep in sorted(self._eps.items()):
            eps[f"{ns}/{name}"] = {
                "state": ep.state.value,
                "ready_replicas": sum(1 for r in ep.replicas if r.ready_at <= now)
                if ep.state in SERVING
                else 0,
                "target_replicas": len(ep.active()) if ep.state in SERVING else 0,
                "min_replica": ep.min_replica,
                "max_replica": ep.max_replica,
                "replicas": [
                    {
                        "id": r.id,
                        "ready": r.ready_at <= now,
                        "created_at": r.created_at,
                        "ready_at": r.ready_at,
                        "busy": r.busy,
                        "retiring": r.retiring,
                    }
                    for r in ep.replicas
                ],
                "pending": len(ep.queue) + len(ep.inflight),
                "queued": len(ep.queue),
                "in_service": len(ep.inflight),
                "served": ep.served,
                "rejected": ep.rejected,
                "load_rps": round(self.load_rate(ns, name), 6),
                "replica_seconds": round(self.replica_seconds(ns, name), 6),
                "billed_usd": round(self.billed_usd(ns, name), 9),
                "instance": f"{ep.row.vendor}/{ep.row.instance_type}/{ep.row.instance_size}",
                "tags": list(ep.spec.get("tags", [])),
                "updated_by": ep.updated_by.get("name"),
            }
        return {"now": now, "endpoints": eps}
