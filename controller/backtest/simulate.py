"""`governor simulate`: replay request traces through the emulated platform in virtual time.

Every run gets a fresh emulated platform (`controller.emulator.platform.Platform`) holding one
endpoint whose load is the trace, replayed request by request with each request's service time
from the service model. Runs differ only in who scales the endpoint (`PolicySpec.kind`):

- `platform`: the platform's own autoscaler alone (Governor not running), `measure:
  {pendingRequests: 1.5}` by default; `thresholds` runs each threshold and keeps the cheapest
  meeting the SLO (chosen in hindsight, and said so);
- `static`: a constant replica count; `replicas: peak` (the default) searches the fewest constant
  replicas that meet the SLO (binary search, one replay per probe; hindsight);
- `governor`: the production `Governor` (its loop, policies, combiner and actuator) with its real
  `EndpointsClient`. `SimConfig.mode` "full": the client talks HTTP to the emulator's ASGI app
  over `httpx.ASGITransport` (in-process, no sockets); "fast" (the default): the same client
  with its requests answered by the platform object and the default feed read without text
  (`controller.backtest.direct`), the same decisions (tests/test_fast_replay.py). The runner owns
  a `VirtualClock`: it moves the clock and the platform forward one tick interval at a time and
  calls `gov.tick()` after each step. `candidates` (a list of settings
  overrides) runs each and keeps the cheapest meeting the SLO (hindsight tuning);
- `autopilot`: the autopilot's rolling replay, through `AUTOPILOT_HOOK` (not available until
  that module exists: then it is listed as such, never approximated);
- `oracle`: the schedule of `controller.backtest.oracle`, applied directly to the platform
  (min = max), per-bucket (`scoring: bucket`) or scored overall (`scoring: overall`);
- `bound`: the lower bound of `controller.backtest.bound` (a figure, not a run);
- `reach`: the attainment bound (`run_reach`): the endpoint's floor of replicas warm until the
  load's first request, the ceiling from that very instant. No controller that holds only its
  floor when the first request arrives can do better, so a goal above it is out of reach.

**Cold start.** Every run starts cold: the endpoint is created at the start of the run, which is
`SimConfig.lead_in_s` of idle time before the first request. A system with floor n >= 1 starts n
replicas then (pending, then a cold start); one with floor 0 starts scaled to zero and may scale to
zero again (the platform's `scaleToZeroTimeout`, or Governor's own decision). A request finding no
ready replica is answered 503 at once, or, with `SimConfig.scale_up_timeout_s` (the clients'
`X-Scale-Up-Timeout`), held until a replica is ready or the hold runs out. Runs end one minute
after the last arrival, rounded up to a minute; the lead-in is billed like any other time.

Metrics per run: cost (the platform's per-minute bill), replica-hours, SLO attainment (share of all
requests whose queueing delay — start of service minus arrival — is within `slo_ms`; a 503 is a
miss, a request still queued or held at the end counts with its wait so far), p50/p95/p99 queueing
delay of the served requests, 503s, API actions (Governor's applied writes), replica changes, and
the time to react to the largest burst (the minute with the largest rise in arrivals over the
mean of the five minutes before it): seconds from the start of that minute until the endpoint's
target replica count first rises above its level one cold start earlier (negative when it started
replicas ahead, as the oracle does; none if it did not rise within 15 minutes).

`run_system(cfg, trace, spec)` replays one system over one load and returns its `RunResult`.
"""

from __future__ import annotations

import copy
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import yaml

from controller.backtest.bound import lower_bound_usd
from controller.backtest.direct import PlatformClient, PlatformScraper
from controller.backtest.oracle import bump, replicas_needed, schedule
from controller.backtest.traces import RequestTrace
from controller.clock import VirtualClock
from controller.daemon.actuator import ActionResult
from controller.emulator.app import create_app
from controller.emulator.load import Trace
from controller.emulator.platform import Platform, PlatformConfig, SimParams
from controller.errors import ConfigError
from controller.platform.models import UserRef

__all__ = [
    "AUTOPILOT_HOOK",
    "PolicySpec",
    "RunResult",
    "ServiceModel",
    "SimConfig",
    "TraceReport",
    "advance_alone",
    "autopilot_runner",
    "default_policies",
    "load_sim_config",
    "platform_thresholds",
    "prepare",
    "run_reach",
    "run_system",
    "run_system_sync",
    "simulate",
]

NS = "sim"
NAME = "llm"
TOKEN = "hf_simulate_token"
BOT = UserRef(id="u-governor", name="governor-bot")
T0 = 1_700_000_040.0  # a whole minute, so buckets and billing minutes line up
MODES = ("fast", "full")
KINDS = ("platform", "static", "governor", "autopilot", "oracle", "bound", "reach")
# scaleToZeroTimeout (minutes) of a floor-0 endpoint whose config names none.
DEFAULT_SCALE_TO_ZERO_MIN = 15
# Overall-scored oracle: per-bucket targets tried, as fractions of the allowed miss rate.
OVERALL_TIGHTEN = (1.0, 0.75, 0.5)
# The hindsight platform baseline's thresholds, as multiples of the replica's concurrency.
THRESHOLD_FACTORS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


@dataclass
class ServiceModel:
    """Per-replica capacity and service time from tokens.

    Defaults: a 7-8B-parameter LLM in 16-bit weights (about 16 GB) served with continuous batching
    (TGI / vLLM) on one NVIDIA L4 (24 GB, 300 GB/s, about 120 dense fp16 TFLOPS):

    - decode is memory-bound: each step reads the weights once, 300 / 16 = about 19 steps/s, and a
      batch of up to 8 sequences shares the step, so each sequence sees about `decode_tps` = 20
      tokens/s;
    - prefill is compute-bound: 2 x 8e9 FLOP per token, about 7,500 tokens/s at peak, about 4,000
      at 50 % utilisation per replica; `prefill_tps` = 2,000 per sequence assumes two prompts are
      prefilled at once on average;
    - `concurrency` = 8 sequences per replica (KV cache for 8 x ~2k-token contexts fits in the
      ~6 GB left on a 24 GB card);
    - `cold_start_s` = 180: a new replica on Inference Endpoints pulls the image and the weights and
      loads them; minutes are typical for a model of this size.

    service time = overhead_s + input_tokens / prefill_tps + output_tokens / decode_tps; requests
    of a trace without token columns use `default_input_tokens` / `default_output_tokens`.
    A10G-class cards are close to these figures; for an A100 (80 GB, 2 TB/s) use about
    `decode_tps: 60, prefill_tps: 8000, concurrency: 32`.
    """

    concurrency: int = 8
    prefill_tps: float = 2000.0
    decode_tps: float = 20.0
    overhead_s: float = 0.0
    default_input_tokens: int = 1000
    default_output_tokens: int = 100
    cold_start_s: float = 180.0

    def service_times(self, trace: RequestTrace) -> list[float]:
        n = len(trace)
        ins = trace.input_tokens or (self.default_input_tokens,) * n
        outs = trace.output_tokens or (self.default_output_tokens,) * n
        return [
            self.overhead_s + i / self.prefill_tps + o / self.decode_tps
            for i, o in zip(ins, outs, strict=True)
        ]


@dataclass
class PolicySpec:
    """One system to replay. `floor` / `ceiling` are the endpoint's replica bounds as that system
    would deploy it (None: 1 and `SimConfig.max_replicas`; the oracle and the bound default to
    floor 0); with floor 0 the endpoint may scale to zero (`scale_to_zero_timeout_min`, the
    platform's idle timer, default 15 min; Governor may also scale it to zero itself)."""

    name: str
    kind: str
    measure: dict[str, float] | None = None  # platform: the endpoint's scaling measure
    thresholds: list[float] = field(default_factory=list)  # platform: hindsight grid
    replicas: int | str = "peak"  # static
    governor: dict[str, Any] = field(default_factory=dict)  # governor: settings overrides
    candidates: list[dict[str, Any]] = field(default_factory=list)  # governor: tuning grid
    scoring: str = "bucket"  # oracle: "bucket" (99 % in every 60 s bucket) or "overall"
    floor: int | None = None
    ceiling: int | None = None
    scale_to_zero_timeout_min: int | None = None
    description: str = ""


@dataclass
class SimConfig:
    slo_ms: float = 1000.0
    slo_attainment: float = 0.99
    seed: int = 0
    instance: str = "aws/nvidia-l4/x1"
    max_replicas: int = 20
    tick_interval_s: float = 15.0
    # Idle time before the first request: every system starts cold at the start of it.
    lead_in_s: float = 600.0
    # Clients' X-Scale-Up-Timeout: a request finding no ready replica waits this long for one
    # (None: answered 503 at once, the platform's default).
    scale_up_timeout_s: float | None = None
    service: ServiceModel = field(default_factory=ServiceModel)
    policies: list[PolicySpec] = field(default_factory=list)
    # How Governor's replays reach the platform: "fast", its client answered in-process and the
    # default feed read without text (`controller.backtest.direct`); "full", every call over
    # HTTP through the emulator's ASGI app. Same decisions (tests/test_fast_replay.py).
    mode: str = "fast"

    @property
    def slo_s(self) -> float:
        return self.slo_ms / 1000.0


@dataclass
class RunResult:
    trace: str
    policy: str
    kind: str
    detail: str
    cost_usd: float
    replica_hours: float
    requests: int
    rejected_503: int
    slo_attainment: float
    meets_slo: bool
    wait_p50_ms: float | None
    wait_p95_ms: float | None
    wait_p99_ms: float | None
    api_actions: int
    replica_changes: int
    reaction_s: float | None
    runtime_s: float
    timeline: dict[str, list[float]] = field(default_factory=dict, repr=False)
    tuning: list[dict[str, Any]] = field(default_factory=list, repr=False)


@dataclass
class TraceReport:
    trace: str
    notes: list[str]
    requests: int
    duration_s: float
    burst_at_s: float | None
    load_per_min: list[int]  # per run minute, the lead-in included
    runs: list[RunResult]
    lead_in_s: float = 0.0
    unavailable: list[str] = field(default_factory=list)  # systems not run (not available)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# configuration


def platform_thresholds(concurrency: int) -> list[float]:
    """The `pendingRequests` thresholds the hindsight platform baseline tries: the default 1.5
    and 0.25 .. 2 x the replica's concurrency."""
    grid = {1.5} | {max(0.5, round(concurrency * f * 2) / 2) for f in THRESHOLD_FACTORS}
    return sorted(grid)


def default_policies(cfg: SimConfig) -> list[PolicySpec]:
    """The built-in comparison set: the platform autoscaler (default threshold, and its best single
    threshold in hindsight), static-peak in hindsight, HPA-style tracking, Governor with its
    shipped defaults, the autopilot (when available), both oracles and the lower bound."""
    return [
        PolicySpec(
            "platform-default",
            "platform",
            measure={"pendingRequests": 1.5},
            description="the platform's autoscaler alone: min 1, max N, pendingRequests 1.5",
        ),
        PolicySpec(
            "platform-best (hindsight)",
            "platform",
            thresholds=platform_thresholds(cfg.service.concurrency),
            description="the platform's autoscaler at its cheapest pendingRequests threshold "
            "meeting the SLO on this load, chosen knowing the load",
        ),
        PolicySpec(
            "platform-zero",
            "platform",
            measure={"pendingRequests": 1.5},
            floor=0,
            description="the platform's autoscaler with scale to zero: min 0 (15 idle minutes), "
            "max N, pendingRequests 1.5",
        ),
        PolicySpec(
            "static-peak (hindsight)",
            "static",
            description="fewest constant replicas meeting the SLO, chosen knowing the load",
        ),
        PolicySpec(
            "hpa-utilisation",
            "governor",
            governor={"defaults": {"policies": {"hardware_utilisation": {}}}},
            description="Governor with hardware_utilisation only (HPA formula, 70 % GPU target)",
        ),
        PolicySpec(
            "governor-default",
            "governor",
            description="Governor with its shipped defaults (no tuning), floor 1, ceiling N",
        ),
        PolicySpec(
            "governor-autopilot",
            "autopilot",
            description="Governor's autopilot: learns on days 1..k of the load, acts on day k+1",
        ),
        PolicySpec(
            "oracle",
            "oracle",
            description="cheapest schedule meeting the SLO in every 60 s bucket (future known)",
        ),
        PolicySpec(
            "oracle-overall",
            "oracle",
            scoring="overall",
            description="cheaper schedule meeting the SLO overall, as runs are scored (future "
            "known; constructive, so an upper bound on the optimum)",
        ),
        PolicySpec(
            "lower-bound",
            "bound",
            description="no controller can cost less and meet the SLO (see docs/simulate.md)",
        ),
    ]


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dst)
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "policies":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_TOP = {
    "slo_ms",
    "slo_attainment",
    "seed",
    "instance",
    "max_replicas",
    "tick_interval_s",
    "lead_in_s",
    "scale_up_timeout_s",
    "mode",
}
_POLICY_KEYS = set(PolicySpec.__dataclass_fields__)


def load_sim_config(path: str | Path | None, **overrides: Any) -> SimConfig:
    """A `SimConfig` from an optional YAML file; keyword overrides (not None) win.

    File keys: `slo_ms`, `slo_attainment`, `seed`, `instance`, `max_replicas`, `tick_interval_s`,
    `service` (the `ServiceModel` fields) and `policies` (a list of {name, kind, ...}; when absent,
    the built-in set). Unknown keys are errors.
    """
    data: dict[str, Any] = {}
    where = str(path) if path is not None else "simulate"
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{where}: cannot read: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{where}: expected a mapping at the top level")
        data = loaded or {}
    unknown = set(data) - _TOP - {"service", "policies"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    svc_data = data.get("service") or {}
    svc_fields = set(ServiceModel.__dataclass_fields__)
    if not isinstance(svc_data, dict) or set(svc_data) - svc_fields:
        raise ConfigError(f"{where}: service: expected keys among {sorted(svc_fields)}")
    try:
        service = ServiceModel(**svc_data)
        cfg = SimConfig(**{k: data[k] for k in _TOP if k in data}, service=service)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    for k, v in overrides.items():
        if v is None:
            continue
        if k in svc_fields:
            setattr(cfg.service, k, v)
        else:
            setattr(cfg, k, v)
    if "policies" in data:
        specs = []
        for i, p in enumerate(data["policies"] or []):
            if not isinstance(p, dict) or set(p) - _POLICY_KEYS or "name" not in p:
                raise ConfigError(
                    f"{where}: policies[{i}]: expected a mapping with 'name', 'kind' and keys "
                    f"among {sorted(_POLICY_KEYS)}"
                )
            if p.get("kind") not in KINDS:
                raise ConfigError(f"{where}: policies[{i}].kind: expected one of {list(KINDS)}")
            specs.append(PolicySpec(**p))
        cfg.policies = specs
    else:
        cfg.policies = default_policies(cfg)
    _validate(cfg, where)
    return cfg


def _validate(cfg: SimConfig, where: str) -> None:
    s = cfg.service
    checks = [
        (cfg.slo_ms > 0, "slo_ms must be > 0"),
        (0 < cfg.slo_attainment <= 1, "slo_attainment must be in (0, 1]"),
        (cfg.max_replicas >= 1, "max_replicas must be >= 1"),
        (cfg.tick_interval_s > 0, "tick_interval_s must be > 0"),
        (cfg.lead_in_s >= 0, "lead_in_s must be >= 0"),
        (
            cfg.scale_up_timeout_s is None or 0 < cfg.scale_up_timeout_s <= 3600,
            "scale_up_timeout_s must be in (0, 3600] or null",
        ),
        (cfg.mode in MODES, f"mode must be one of {list(MODES)}"),
        (s.concurrency >= 1, "service.concurrency must be >= 1"),
        (s.prefill_tps > 0 and s.decode_tps > 0, "service.*_tps must be > 0"),
        (s.cold_start_s >= 0, "service.cold_start_s must be >= 0"),
        (cfg.instance.count("/") == 2, "instance must look like vendor/type/size"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"{where}: {msg}")
    from controller.cost.pricing import lookup_price

    vendor, itype, isize = cfg.instance.split("/")
    if lookup_price(vendor, itype, isize) is None:
        raise ConfigError(f"{where}: instance {cfg.instance}: not in the pricing table")


# ---------------------------------------------------------------------------------------------
# one world


class _Progress:
    def __init__(self, out: TextIO | None, label: str, total_s: float) -> None:
        self.out = out
        self.label = label
        self.total = max(1.0, total_s)
        self.started = time.perf_counter()
        self.last = -1.0

    def update(self, done_s: float) -> None:
        if self.out is None:
            return
        now = time.perf_counter()
        if now - self.last < 0.5 and done_s < self.total:
            return
        self.last = now
        pct = min(100.0, 100.0 * done_s / self.total)
        bar = "#" * int(pct / 5)
        self.out.write(f"\r  {self.label:<40} [{bar:<20}] {pct:5.1f}%  {now - self.started:6.1f}s")
        self.out.flush()

    def done(self, summary: str) -> None:
        if self.out is None:
            return
        self.out.write(
            f"\r  {self.label:<40} {summary}  ({time.perf_counter() - self.started:.1f}s)"
            + " " * 10
            + "\n"
        )
        self.out.flush()


@dataclass
class _Prepared:
    trace: RequestTrace
    offsets: tuple[float, ...]  # arrivals from the run's start (after the idle lead-in)
    service_s: list[float]
    end: float  # run length in seconds, lead-in included
    burst_minute: int | None  # in run minutes
    per_min: list[int]  # arrivals per run minute


@dataclass(frozen=True)
class _Bounds:
    floor: int
    ceiling: int
    scale_to_zero_timeout_min: int | None


def _bounds(cfg: SimConfig, spec: PolicySpec) -> _Bounds:
    """The endpoint's replica bounds as `spec` deploys it (see `PolicySpec`)."""
    floor = spec.floor if spec.floor is not None else (0 if spec.kind in ("oracle", "bound") else 1)
    ceiling = spec.ceiling if spec.ceiling is not None else cfg.max_replicas
    stz = spec.scale_to_zero_timeout_min
    if floor == 0 and stz is None and spec.kind != "oracle":
        stz = DEFAULT_SCALE_TO_ZERO_MIN
    return _Bounds(floor, max(ceiling, floor, 1), stz if floor == 0 else None)


def _body(
    instance: str, min_r: int, max_r: int, measure: dict[str, float] | None, stz: int | None
) -> dict:
    vendor, itype, isize = instance.split("/")
    from controller.cost.pricing import lookup_price

    row = lookup_price(vendor, itype, isize)
    assert row is not None
    region = {"aws": "us-east-1", "gcp": "us-east4", "azure": "eastus"}[vendor]
    return {
        "name": NAME,
        "type": "protected",
        "provider": {"vendor": vendor, "region": region},
        "compute": {
            "accelerator": row.accelerator,
            "instanceType": itype,
            "instanceSize": isize,
            "scaling": {
                "minReplica": min_r,
                "maxReplica": max_r,
                "scaleToZeroTimeout": stz,
                "measure": measure or {"pendingRequests": 1.5},
            },
        },
        "model": {"repository": "meta-llama/Llama-3.1-8B-Instruct", "task": "text-generation"},
    }


def _platform(
    cfg: SimConfig,
    prep: _Prepared,
    *,
    min_r: int,
    max_r: int,
    measure: Any = None,
    stz: int | None = None,
) -> Platform:
    """A fresh platform with the endpoint created cold at the run's start: `min_r` >= 1 replicas
    go through pending and a cold start; with `min_r` 0 it starts scaled to zero (asleep)."""
    s = cfg.service
    p = Platform(
        start=T0,
        seed=cfg.seed,
        config=PlatformConfig(
            cold_start_s=s.cold_start_s,
            concurrency=s.concurrency,
            default_max_accelerators=100_000,
        ),
    )
    load = Trace(prep.offsets, tuple(prep.service_s))
    p.create(
        NS,
        _body(cfg.instance, min_r, max(min_r, max_r, 1), measure, stz),
        by=BOT,
        sim=SimParams(
            cold_start_s=s.cold_start_s,
            concurrency=s.concurrency,
            hold_s=cfg.scale_up_timeout_s,
        ),
        load=load,
        ready=min_r == 0,
    )
    p.record_requests(NS, NAME)
    return p


class _Timeline:
    def __init__(self) -> None:
        self.t: list[float] = []
        self.target: list[float] = []
        self.ready: list[float] = []

    def sample(self, p: Platform) -> None:
        target, ready = p.replica_counts(NS, NAME)
        self.t.append(p.now - T0)
        self.target.append(target)
        self.ready.append(ready)


def _pct(sorted_vals: Sequence[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


def _score(
    cfg: SimConfig,
    prep: _Prepared,
    p: Platform,
    tl: _Timeline,
    *,
    policy: str,
    kind: str,
    detail: str,
    api_actions: int,
    started: float,
) -> RunResult:
    log = p.record_requests(NS, NAME)
    slo = cfg.slo_s
    waits = sorted(w for w in log.wait if not math.isnan(w))
    rejected = sum(1 for w in log.wait if math.isnan(w))
    queued = [p.now - a for a in p.queued_arrivals(NS, NAME)]
    total = len(log) + len(queued)
    ok = sum(1 for w in waits if w <= slo + 1e-9) + sum(1 for w in queued if w <= slo + 1e-9)
    attain = ok / total if total else 1.0
    changes = sum(1 for a, b in zip(tl.target, tl.target[1:], strict=False) if a != b)
    return RunResult(
        trace=prep.trace.name,
        policy=policy,
        kind=kind,
        detail=detail,
        cost_usd=round(p.billed_usd(NS, NAME), 6),
        replica_hours=round(p.replica_seconds(NS, NAME) / 3600.0, 4),
        requests=total,
        rejected_503=rejected,
        slo_attainment=round(attain, 6),
        meets_slo=attain + 1e-12 >= cfg.slo_attainment,
        wait_p50_ms=_ms(_pct(waits, 0.50)),
        wait_p95_ms=_ms(_pct(waits, 0.95)),
        wait_p99_ms=_ms(_pct(waits, 0.99)),
        api_actions=api_actions,
        replica_changes=changes,
        reaction_s=_reaction(prep, tl, cfg.service.cold_start_s),
        runtime_s=round(time.perf_counter() - started, 3),
        timeline={"t_s": tl.t, "target": tl.target, "ready": tl.ready},
    )


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000.0, 1)


def _reaction(prep: _Prepared, tl: _Timeline, cold_start_s: float) -> float | None:
    if prep.burst_minute is None or not tl.t:
        return None
    t_star = prep.burst_minute * 60.0
    ref_t = max(0.0, t_star - cold_start_s)
    ref = None
    for t, n in zip(tl.t, tl.target, strict=True):
        if t <= ref_t or ref is None:
            ref = n
        if t > ref_t and n > ref:
            return t - t_star if t <= t_star + 900 else None
        if t > t_star + 900:
            break
    return None


def _burst_minute(per_min: Sequence[int]) -> int | None:
    best, best_m = 0.0, None
    for m in range(1, len(per_min)):
        prev = per_min[max(0, m - 5) : m]
        rise = per_min[m] - sum(prev) / len(prev)
        if rise > best:
            best, best_m = rise, m
    return best_m


def prepare(cfg: SimConfig, trace: RequestTrace) -> _Prepared:
    """The run of `trace` under `cfg`: the idle lead-in, service times, the run's length."""
    if len(trace) == 0:
        raise ConfigError(f"trace {trace.name}: no requests")
    lead = cfg.lead_in_s
    offsets = tuple(lead + o for o in trace.offsets)
    svc = cfg.service.service_times(trace)
    end = math.ceil((offsets[-1] + 60.0) / 60.0) * 60.0
    per_min = [0] * int(end // 60)
    for o in offsets:
        per_min[min(len(per_min) - 1, int(o // 60))] += 1
    return _Prepared(trace, offsets, svc, end, _burst_minute(per_min), per_min)


# ---------------------------------------------------------------------------------------------
# runners


def advance_alone(
    p: Platform,
    *,
    origin: float,
    until_s: float,
    step: float,
    on_step: Callable[[Platform], None] | None = None,
) -> None:
    """The `platform` system's run: move `p` to `origin + until_s` one `step` at a time with
    nobody calling its API, so only the platform's own autoscaler scales each endpoint, between
    the min and max it was created with, on its `measure`. `governor demo` runs its "without
    Governor" world so. Times are offsets from `origin`, summed as the backtest always did."""
    t = max(0.0, p.now - origin)
    while t < until_s:
        t = min(until_s, t + step)
        p.advance_to(origin + t)
        if on_step is not None:
            on_step(p)


def _drive(p: Platform, prep: _Prepared, tl: _Timeline, step: float, prog: _Progress) -> None:
    tl.sample(p)

    def sample(q: Platform) -> None:
        tl.sample(q)
        prog.update(q.now - T0)

    advance_alone(p, origin=T0, until_s=prep.end, step=step, on_step=sample)


def _bounds_text(b: _Bounds) -> str:
    text = f"min {b.floor}, max {b.ceiling}"
    if b.scale_to_zero_timeout_min is not None:
        text += f", scale to zero after {b.scale_to_zero_timeout_min} idle min"
    return text


def _pick(results: list[RunResult], what: str) -> RunResult:
    """The cheapest result meeting the SLO, else the best attainment; with several, the others
    are listed in its `tuning` and its detail says it was chosen knowing the load."""
    meeting = [r for r in results if r.meets_slo]
    if meeting:
        best = min(meeting, key=lambda r: (r.cost_usd, -r.slo_attainment))
    else:
        best = max(results, key=lambda r: (r.slo_attainment, -r.cost_usd))
    if len(results) > 1:
        best.tuning = [
            {
                "detail": r.detail,
                "cost_usd": r.cost_usd,
                "slo_attainment": r.slo_attainment,
                "meets_slo": r.meets_slo,
                "chosen": r is best,
            }
            for r in results
        ]
        best.detail += (
            f" (hindsight: the cheapest {what} meeting the SLO on this load)"
            if meeting
            else f" (hindsight: no {what} met the SLO; best attainment)"
        )
    return best


def run_platform(
    cfg: SimConfig, prep: _Prepared, spec: PolicySpec, out: TextIO | None
) -> RunResult:
    """The platform's autoscaler alone; with `spec.thresholds`, each threshold in turn and the
    cheapest meeting the SLO (hindsight)."""
    started = time.perf_counter()
    b = _bounds(cfg, spec)
    measures = [{"pendingRequests": float(t)} for t in spec.thresholds] or [
        spec.measure or {"pendingRequests": 1.5}
    ]
    results = []
    for i, measure in enumerate(measures):
        label = f"{prep.trace.name}: {spec.name}"
        if len(measures) > 1:
            label += f" [{i + 1}/{len(measures)}]"
        prog = _Progress(out, label, prep.end)
        t_start = time.perf_counter()
        p = _platform(
            cfg,
            prep,
            min_r=b.floor,
            max_r=b.ceiling,
            measure=measure,
            stz=b.scale_to_zero_timeout_min,
        )
        tl = _Timeline()
        _drive(p, prep, tl, cfg.tick_interval_s, prog)
        detail = f"{_bounds_text(b)}, " + ", ".join(f"{k} {v:g}" for k, v in measure.items())
        r = _score(
            cfg,
            prep,
            p,
            tl,
            policy=spec.name,
            kind="platform",
            detail=detail,
            api_actions=0,
            started=t_start,
        )
        prog.done(_summary(r))
        results.append(r)
    best = _pick(results, "threshold")
    best.runtime_s = round(time.perf_counter() - started, 3)
    return best


def _static_once(cfg: SimConfig, prep: _Prepared, n: int) -> tuple[Platform, _Timeline]:
    p = _platform(cfg, prep, min_r=n, max_r=n)
    tl = _Timeline()
    _drive(p, prep, tl, cfg.tick_interval_s, _Progress(None, "", 1))
    return p, tl


def run_static(cfg: SimConfig, prep: _Prepared, spec: PolicySpec, out: TextIO | None) -> RunResult:
    """A constant count; `replicas: peak` searches the fewest meeting the SLO (hindsight)."""
    started = time.perf_counter()
    prog = _Progress(out, f"{prep.trace.name}: {spec.name}", 1)
    ceiling = _bounds(cfg, spec).ceiling
    if spec.replicas == "peak":
        lo, hi = 1, ceiling
        best: tuple[int, Platform, _Timeline] | None = None
        while lo <= hi:
            mid = (lo + hi) // 2
            p, tl = _static_once(cfg, prep, mid)
            prog.update(0.5)
            r = _score(
                cfg,
                prep,
                p,
                tl,
                policy="",
                kind="static",
                detail="",
                api_actions=0,
                started=started,
            )
            if r.meets_slo:
                best = (mid, p, tl)
                hi = mid - 1
            else:
                lo = mid + 1
        if best is None:
            best = (ceiling, *_static_once(cfg, prep, ceiling))
        n, p, tl = best
        detail = f"{n} replicas (hindsight: the fewest constant count meeting the SLO)"
    else:
        n = int(spec.replicas)
        p, tl = _static_once(cfg, prep, n)
        detail = f"{n} replicas"
    res = _score(
        cfg,
        prep,
        p,
        tl,
        policy=spec.name,
        kind="static",
        detail=detail,
        api_actions=0,
        started=started,
    )
    prog.done(_summary(res))
    return res


def _set_replicas(p: Platform, n: int) -> None:
    """The oracle's actuation: exactly `n` replicas (0: scaled to zero, woken by the next n)."""
    if n == 0:
        p.update(NS, NAME, {"compute": {"scaling": {"minReplica": 0, "maxReplica": 1}}})
        if p.get(NS, NAME)["status"]["state"] in ("running", "initializing", "updating"):
            p.scale_to_zero(NS, NAME)
    else:
        p.update(NS, NAME, {"compute": {"scaling": {"minReplica": n, "maxReplica": n}}})


def _replay_schedule(
    cfg: SimConfig, prep: _Prepared, alive: Sequence[int], prog: _Progress
) -> tuple[Platform, _Timeline]:
    """Apply a per-minute replica schedule to a cold platform (min = max = the schedule)."""
    first = alive[0]
    p = _platform(cfg, prep, min_r=first, max_r=max(first, 1))
    if first == 0:
        _set_replicas(p, 0)
    tl = _Timeline()
    tl.sample(p)
    cur = first
    step = cfg.tick_interval_s
    for b, n in enumerate(alive):
        b0 = b * 60.0
        p.advance_to(T0 + b0)
        if n != cur:
            _set_replicas(p, n)
            cur = n
        t = b0
        while t < b0 + 60.0 - 1e-9:
            t = min(b0 + 60.0, t + step)
            p.advance_to(T0 + t)
            tl.sample(p)
        prog.update(b0 + 60)
    p.advance_to(T0 + prep.end)
    return p, tl


def _bad_buckets(cfg: SimConfig, p: Platform, nb: int, earliest_s: float) -> list[int]:
    """Buckets (from `earliest_s`, when a replica can first be ready) whose replay missed more
    than the per-bucket allowance."""
    log = p.record_requests(NS, NAME)
    arrivals = [0] * nb
    misses = [0] * nb
    for a, w in zip(log.arrival, log.wait, strict=True):
        b = min(nb - 1, int((a - T0) // 60))
        arrivals[b] += 1
        if math.isnan(w) or w > cfg.slo_s + 1e-9:
            misses[b] += 1
    return [
        b
        for b in range(nb)
        if b * 60.0 >= earliest_s
        and misses[b] > math.floor((1 - cfg.slo_attainment) * arrivals[b] + 1e-9)
    ]


def _oracle_run(
    cfg: SimConfig,
    prep: _Prepared,
    b: _Bounds,
    *,
    name: str,
    attainment: float,
    carry: bool,
    rounds: int,
    prog: _Progress,
    started: float,
) -> RunResult:
    extra: dict[int, int] = {}
    res: RunResult | None = None
    earliest = PlatformConfig().pending_s + cfg.service.cold_start_s
    for _ in range(rounds):
        need = replicas_needed(
            prep.offsets,
            prep.service_s,
            concurrency=cfg.service.concurrency,
            slo_s=cfg.slo_s,
            attainment=attainment,
            horizon_s=prep.end,
            max_replicas=b.ceiling,
            extra=extra,
            min_replicas=b.floor,
            carry_allowance=carry,
        )
        alive = schedule(need, cold_start_s=cfg.service.cold_start_s)
        p, tl = _replay_schedule(cfg, prep, alive, prog)
        res = _score(
            cfg,
            prep,
            p,
            tl,
            policy=name,
            kind="oracle",
            detail=f"peak {max(alive)} replicas, {sum(alive) / 60:.1f} replica-h planned",
            api_actions=0,
            started=started,
        )
        if res.meets_slo or carry:  # an overall schedule that misses on replay is dropped
            break
        bad = _bad_buckets(cfg, p, len(need), earliest)
        if not bad:
            break
        extra = bump(extra, bad)
    assert res is not None
    return res


def run_oracle(
    cfg: SimConfig,
    prep: _Prepared,
    spec: PolicySpec | None,
    out: TextIO | None,
    *,
    rounds: int = 6,
) -> RunResult:
    """The oracle (`controller.backtest.oracle`), replayed from a cold start. `scoring:
    overall` also tries schedules whose misses are bounded overall rather than per bucket (the
    allowance carried forward, at the goal and at stricter per-bucket targets) and keeps the
    cheapest that meets the SLO overall on replay, the per-bucket oracle included."""
    spec = spec or PolicySpec("oracle", "oracle")
    started = time.perf_counter()
    prog = _Progress(out, f"{prep.trace.name}: {spec.name}", prep.end)
    b = _bounds(cfg, spec)
    a = cfg.slo_attainment

    def one(att: float, carry: bool) -> RunResult:
        return _oracle_run(
            cfg,
            prep,
            b,
            name=spec.name,
            attainment=att,
            carry=carry,
            rounds=rounds,
            prog=prog,
            started=started,
        )

    res = one(a, False)
    res.detail += f"; {_bounds_text(b)}; misses within the allowance of every 60 s bucket"
    if spec.scoring == "overall":
        tried = [res]
        for f in OVERALL_TIGHTEN:
            r = one(1.0 - (1.0 - a) * f, True)
            tried.append(r)
        meeting = [r for r in tried if r.meets_slo]
        res = min(meeting, key=lambda r: r.cost_usd) if meeting else res
        res.detail = (
            res.detail.split(";")[0] + f"; {_bounds_text(b)}; misses bounded overall "
            f"(best of {len(tried)} schedules)"
        )
    res.runtime_s = round(time.perf_counter() - started, 3)
    prog.done(_summary(res))
    return res


def run_bound(cfg: SimConfig, prep: _Prepared, spec: PolicySpec) -> RunResult:
    """The lower bound of `controller.backtest.bound` as a result row (no run behind it)."""
    from controller.cost.pricing import lookup_price

    started = time.perf_counter()
    row = lookup_price(*cfg.instance.split("/"))
    assert row is not None
    usd = lower_bound_usd(
        prep.offsets,
        prep.service_s,
        concurrency=cfg.service.concurrency,
        slo_s=cfg.slo_s,
        attainment=cfg.slo_attainment,
        end_s=prep.end,
        cold_start_s=cfg.service.cold_start_s,
        usd_per_hour=row.usd_per_hour,
    )
    return RunResult(
        trace=prep.trace.name,
        policy=spec.name,
        kind="bound",
        detail="lower bound: no controller meets the SLO for less (busy time / concurrency, "
        "the first cold start, idle gaps; not a schedule)",
        cost_usd=round(usd, 6),
        replica_hours=round(usd / row.usd_per_hour, 4),
        requests=len(prep.offsets),
        rejected_503=0,
        slo_attainment=cfg.slo_attainment,
        meets_slo=True,
        wait_p50_ms=None,
        wait_p95_ms=None,
        wait_p99_ms=None,
        api_actions=0,
        replica_changes=0,
        reaction_s=None,
        runtime_s=round(time.perf_counter() - started, 3),
    )


def _reach_once(cfg: SimConfig, prep: _Prepared, warm: int, ceiling: int) -> RunResult:
    """`warm` replicas (started with the endpoint, so ready by the first request after the
    lead-in; 0: scaled to zero), then min = max = `ceiling` at the first request's arrival."""
    started = time.perf_counter()
    p = _platform(cfg, prep, min_r=warm, max_r=max(warm, 1))
    if warm == 0:
        _set_replicas(p, 0)
    tl = _Timeline()
    tl.sample(p)
    p.advance_to(T0 + prep.offsets[0])
    p.update(NS, NAME, {"compute": {"scaling": {"minReplica": ceiling, "maxReplica": ceiling}}})
    tl.sample(p)
    p.advance_to(T0 + prep.end)
    tl.sample(p)
    return _score(
        cfg, prep, p, tl, policy="", kind="reach", detail="", api_actions=0, started=started
    )


def warm_needed(cfg: SimConfig, prep: _Prepared, ceiling: int) -> int | None:
    """The fewest replicas warm at the first request (>= 1) with which the SLO is reachable at
    all (the ceiling from that instant), or None when even `ceiling` warm replicas miss it. With
    one or more warm, attainment only grows with the count (one FIFO queue: more ready slots at
    every instant never delay a request's start), so a binary search finds it."""
    lo, hi, best = 1, ceiling, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if _reach_once(cfg, prep, mid, ceiling).meets_slo:
            best, hi = mid, mid - 1
        else:
            lo = mid + 1
    return best


def run_reach(cfg: SimConfig, prep: _Prepared, spec: PolicySpec) -> RunResult:
    """The attainment bound: the floor's replicas warm until the load's first request, the
    ceiling from the instant it arrives (no tick, no feed delay), kept to the end.

    A controller that knows nothing of the load before its first request holds only what its
    configuration implies (its floor) when that request arrives; whatever it does next, the
    replicas above the floor are at best started at that instant and ready a cold start later,
    and no more than the ceiling are ever ready. On the simulator's single FIFO queue more ready
    slots at every instant never delay a request, so this run's attainment is the most any such
    controller can reach on the load (later idle spells are given the ceiling too, which a
    predictive controller could at best match). Its cost is that of holding the ceiling, not a
    target. The detail names how many warm replicas the goal would need instead."""
    started = time.perf_counter()
    b = _bounds(cfg, spec)
    res = _reach_once(cfg, prep, b.floor, b.ceiling)
    need = warm_needed(cfg, prep, b.ceiling)
    needs = "not reachable with any" if need is None else f"{need}"
    res.policy = spec.name
    res.detail = (
        f"attainment bound: {b.floor} replica(s) warm at the first request, {b.ceiling} from "
        f"that instant; warm replicas needed at the first request for the goal: {needs}"
    )
    res.runtime_s = round(time.perf_counter() - started, 3)
    return res


async def _governor_once(
    cfg: SimConfig,
    prep: _Prepared,
    overrides: dict[str, Any],
    b: _Bounds,
    prog: _Progress,
    *,
    record: list[Any] | None = None,
    store: Any = None,
    switches: Sequence[tuple[float, dict[str, Any]]] = (),
) -> tuple[Platform, _Timeline, int]:
    """One Governor replay; `record` (tests) gets every tick's time and, per endpoint, its
    decision's signature and the actuation's result. `store` is the daemon's state store (a
    caller's `StateStore`, else a scratch file): the demand it records during the replay is the
    history its pre-warm forecasts from. `switches` set the endpoint's override at offsets
    (seconds from the first request), as the daemon's autopilot applies an adoption."""
    from controller.daemon.loop import Governor, TickReport
    from controller.daemon.store import StateStore
    from controller.platform.client import make_client
    from controller.settings import load_settings

    clock = VirtualClock(T0)
    p = _platform(cfg, prep, min_r=b.floor, max_r=b.ceiling, stz=b.scale_to_zero_timeout_min)
    base: dict[str, Any] = {
        "loop": {"tick_interval_s": cfg.tick_interval_s},
        "scrape": {"max_age_s": 3 * cfg.tick_interval_s},
        "defaults": {"floor": b.floor, "ceiling": b.ceiling},
        # Nothing restarts from a replay's memory: write it once a day, not every tick. Its
        # demand is written hourly and before each read (the pre-warm's), as every tick would.
        "state": {"memory_every_s": 86400, "demand_every_s": 3600},
    }
    fixed: dict[str, Any] = {
        "api": {"base_url": "http://emulator/v2", "backoff_initial_s": 0.5},
        "namespaces": [NS],
        "manage": {"names": [NAME]},
        "server": {"enabled": False},
    }
    merged = _merge(_merge(base, overrides), fixed)
    merged.setdefault("loop", {})["dry_run"] = False
    settings = load_settings(None, overrides=merged, env={"HF_TOKEN": TOKEN})
    applied = 0

    def on_tick(report: TickReport) -> None:
        nonlocal applied
        if record is not None:
            record.append(
                (
                    report.at,
                    [
                        (e.decision.signature(), None if e.outcome is None else e.outcome.result)
                        for e in report.entries
                    ],
                )
            )
        for e in report.entries:
            if e.outcome is not None and e.outcome.result is ActionResult.APPLIED:
                applied += 1

    async def no_sleep(_: float) -> None:
        return None

    tl = _Timeline()
    step = settings.loop.tick_interval_s
    if cfg.mode == "fast":
        client = make_client(
            settings,
            cls=PlatformClient,
            platform=p,
            clock=clock,
            user=BOT,
            sleep=no_sleep,
            monotonic=clock.now,
        )
    else:
        app = create_app(p, clock=clock, tokens={TOKEN: BOT})
        transport = httpx.ASGITransport(app=app)
        client = make_client(settings, transport=transport, sleep=no_sleep, monotonic=clock.now)
    pending = sorted(((cfg.lead_in_s + at, ov) for at, ov in switches), key=lambda x: x[0])
    key = f"{NS}/{NAME}"
    # The daemon's own state store, in a scratch file unless handed one: nothing of the trace's
    # future is handed in, the pre-warm sees only what this replay recorded so far.
    with tempfile.TemporaryDirectory(prefix="governor-sim-") as scratch:
        own = store is None
        st = StateStore(Path(scratch) / "state.sqlite", durable=False) if own else store
        try:
            async with client:
                gov = Governor(settings, clock=clock, client=client, on_tick=on_tick, store=st)
                if isinstance(client, PlatformClient):
                    gov.scraper = PlatformScraper.replacing(gov.scraper, client)
                tl.sample(p)
                t = 0.0
                while t < prep.end:
                    t = min(prep.end, t + step)
                    while pending and pending[0][0] <= t:
                        gov.overrides[key] = pending.pop(0)[1]
                    clock.set(T0 + t)
                    p.advance_to(T0 + t)
                    await gov.tick()
                    tl.sample(p)
                    prog.update(t)
                gov.flush_demand(clock.now())  # a caller's store holds the whole replay
        finally:
            if own:
                st.close()
    return p, tl, applied


def _describe(overrides: dict[str, Any]) -> str:
    defaults = overrides.get("defaults", {})
    pol = defaults.get("policies", {})
    parts = [f"{k}={v}" for k, v in sorted(defaults.items()) if k != "policies"]
    for name, params in pol.items():
        ps = ", ".join(f"{k}={v}" for k, v in (params or {}).items())
        parts.append(f"{name}({ps})" if ps else name)
    return "; ".join(parts) or "shipped defaults"


async def run_governor(
    cfg: SimConfig, prep: _Prepared, spec: PolicySpec, out: TextIO | None
) -> RunResult:
    """The production Governor over the emulator's HTTP API; `candidates` are each run and the
    cheapest meeting the SLO is kept (hindsight tuning, said so in the detail)."""
    started = time.perf_counter()
    b = _bounds(cfg, spec)
    cands = [_merge(spec.governor, c) for c in spec.candidates] or [spec.governor]
    results: list[RunResult] = []
    for i, ov in enumerate(cands):
        label = f"{prep.trace.name}: {spec.name}"
        if len(cands) > 1:
            label += f" [{i + 1}/{len(cands)}]"
        prog = _Progress(out, label, prep.end)
        t_start = time.perf_counter()
        p, tl, applied = await _governor_once(cfg, prep, ov, b, prog)
        r = _score(
            cfg,
            prep,
            p,
            tl,
            policy=spec.name,
            kind="governor",
            detail=f"{_bounds_text(b)}; {_describe(ov)}",
            api_actions=applied,
            started=t_start,
        )
        prog.done(_summary(r) + f"  {r.detail}")
        results.append(r)
    best = _pick(results, "candidate")
    best.runtime_s = round(time.perf_counter() - started, 3)
    return best


# The autopilot's replay (12's part 3): `controller.backtest.autopilot.run_autopilot(cfg, prep,
# spec, out)`, an async function returning a `RunResult` of kind "autopilot" for the rolling
# protocol (learn on days 1..k of the load, act on day k+1). Until that module exists the
# autopilot is reported as not available, never approximated.
AUTOPILOT_HOOK = "controller.backtest.autopilot:run_autopilot"


def autopilot_runner() -> Callable[..., Any] | None:
    """The autopilot replay function named by `AUTOPILOT_HOOK`, or None when it does not exist."""
    import importlib

    mod_name, _, attr = AUTOPILOT_HOOK.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name != mod_name:
            raise
        return None
    return getattr(mod, attr, None)


def _summary(r: RunResult) -> str:
    return (
        f"${r.cost_usd:8.2f}  {r.replica_hours:7.2f} replica-h  SLO {100 * r.slo_attainment:6.2f}%"
    )


# ---------------------------------------------------------------------------------------------


async def run_system(
    cfg: SimConfig,
    trace: RequestTrace | _Prepared,
    spec: PolicySpec,
    *,
    progress: TextIO | None = None,
) -> RunResult | None:
    """Replay one system (`spec`) over one load (`trace`) from a cold start; the result's
    `cost_usd` and `slo_attainment` / `meets_slo` are the figures. None only for the autopilot
    when it is not available. This is the entry point for anything that replays recorded
    traffic (the autopilot's candidates, `governor tune`): build a `SimConfig` (its
    `service`, SLO, `lead_in_s`, `max_replicas`) and a `PolicySpec` of kind `governor` whose
    `governor` dict holds settings overrides (e.g. `{"defaults": {"policies": {...}}}`)."""
    prep = trace if isinstance(trace, _Prepared) else prepare(cfg, trace)
    if spec.kind == "platform":
        return run_platform(cfg, prep, spec, progress)
    if spec.kind == "static":
        return run_static(cfg, prep, spec, progress)
    if spec.kind == "oracle":
        return run_oracle(cfg, prep, spec, progress)
    if spec.kind == "bound":
        return run_bound(cfg, prep, spec)
    if spec.kind == "reach":
        return run_reach(cfg, prep, spec)
    if spec.kind == "governor":
        return await run_governor(cfg, prep, spec, progress)
    if spec.kind == "autopilot":
        runner = autopilot_runner()
        if runner is None:
            return None
        result: RunResult = await runner(cfg, prep, spec, progress)
        return result
    raise ConfigError(f"unknown policy kind {spec.kind!r}")


def run_system_sync(
    cfg: SimConfig, trace: RequestTrace, spec: PolicySpec, *, progress: TextIO | None = None
) -> RunResult | None:
    """`run_system` outside an event loop."""
    import asyncio

    return asyncio.run(run_system(cfg, trace, spec, progress=progress))


async def simulate(
    traces: Sequence[RequestTrace],
    cfg: SimConfig,
    *,
    progress: TextIO | None = sys.stderr,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[TraceReport]:
    """Run every policy of `cfg` on every trace; results in trace order, then policy order. A
    system that is not available (the autopilot before it exists) is listed in the report's
    `unavailable`, not run."""
    reports = []
    for trace in traces:
        prep = prepare(cfg, trace)
        if progress is not None:
            progress.write(
                f"{trace.name}: {len(trace):,} requests over {trace.duration_s / 60:.1f} min"
                f"{' (' + '; '.join(trace.notes) + ')' if trace.notes else ''}, after "
                f"{cfg.lead_in_s:g} s idle; SLO: queueing delay <= {cfg.slo_ms:g} ms for "
                f"{100 * cfg.slo_attainment:g}% of requests\n"
            )
        runs: list[RunResult] = []
        missing: list[str] = []
        for spec in cfg.policies:
            r = await run_system(cfg, prep, spec, progress=progress)
            if r is None:
                missing.append(spec.name)
                if progress is not None:
                    progress.write(f"  {trace.name}: {spec.name}: not available\n")
                continue
            runs.append(r)
            if on_result is not None:
                on_result(r)
        reports.append(
            TraceReport(
                trace=trace.name,
                notes=list(trace.notes),
                requests=len(trace),
                duration_s=trace.duration_s,
                burst_at_s=None if prep.burst_minute is None else prep.burst_minute * 60.0,
                load_per_min=prep.per_min,
                runs=runs,
                lead_in_s=cfg.lead_in_s,
                unavailable=missing,
            )
        )
    return reports
