"""The autopilot: each endpoint's demand policy tuned on its own recorded traffic, by replay.

Governor records every managed endpoint's demand per minute (`controller.daemon.store`). The
autopilot turns the recent minutes back into a request trace (`trace_from_demand`), replays it
through the simulator (`run_system`: the production loop against the emulated platform, from a
cold start) once per candidate of a bounded set, and adopts the cheapest candidate that met the
endpoint's SLO on that history.

The knob is `slo_target`'s `safety` (the share of the SLO's miss budget the queueing model may
spend): it is what a load's burstiness decides, and the rest follows from the SLO. The grid is
`SAFETY_GRID`; one adoption moves at most `max_step` grid steps from the value in force
(bounded change), so the candidates are the grid values within that distance.

Guardrails (used by `AutopilotRunner` in the daemon and by `governor tune`):

- off unless `autopilot.enabled`;
- bounded change per adoption (above);
- an adoption needs the candidate to meet the SLO on the replayed history; with none meeting it,
  nothing changes;
- automatic revert: when the live attainment estimated from the recorded minutes since an
  adoption falls below the SLO, the previous value is restored (`live_attainment`);
- every adoption and revert is explained (`Adoption.explain()`), logged, shown by `governor plan`
  and counted on `/metrics`.

`run_autopilot` is the backtest's rolling protocol (`AUTOPILOT_HOOK` in `simulate`): day 1 runs
the shipped default; before each later day the autopilot replays the days so far (as per-minute
counts, as the store holds them) and the next day runs with what it adopted.
"""

from __future__ import annotations

import asyncio
import copy
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from controller.backtest.pool import run_grid
from controller.backtest.simulate import (
    PolicySpec,
    RunResult,
    ServiceModel,
    SimConfig,
    run_system,
    run_system_sync,
)
from controller.backtest.traces import RequestTrace
from controller.core.params import EndpointSettings
from controller.daemon.autopilot import live_attainment, override_for
from controller.daemon.store import DemandMinute

__all__ = [
    "SAFETY_GRID",
    "Adoption",
    "Comparison",
    "candidates_near",
    "choose",
    "compare",
    "live_attainment",
    "override_for",
    "plan_endpoint",
    "run_autopilot",
    "service_from_demand",
    "trace_from_demand",
]

SAFETY_GRID: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
DEFAULT_SAFETY = 0.5
DAY_S = 86_400.0


# -- history -> trace ------------------------------------------------------------------------------


def trace_from_demand(rows: Sequence[DemandMinute], *, name: str, seed: int = 0) -> RequestTrace:
    """A trace with each minute's recorded requests spread uniformly (seeded) over the minute.

    Fractional counts carry to the next minute; minutes without a row are idle. Offsets start at
    the first row's minute; `start_epoch` is its wall time.
    """
    if not rows:
        return RequestTrace(name, ())
    rng = random.Random(f"demand:{name}:{seed}")
    first = rows[0].minute
    offsets: list[float] = []
    carry = 0.0
    for r in rows:
        carry += max(0.0, r.requests)
        n = math.floor(carry + 1e-9)
        carry -= n
        base = (r.minute - first) * 60.0
        offsets.extend(sorted(base + 60.0 * rng.random() for _ in range(n)))
    return RequestTrace(
        name, tuple(offsets), start_epoch=first * 60.0, notes=("from recorded demand",)
    )


def service_from_demand(rows: Sequence[DemandMinute]) -> float | None:
    """The endpoint's service time: the lower quartile of its minutes' mean latency (queueing
    inflates the busy minutes' latency, never the quiet ones'); None without latency data."""
    lat = sorted(v for r in rows if (v := r.mean_latency_s) is not None and r.requests >= 1)
    if not lat:
        return None
    return lat[len(lat) // 4]


def replay_config(
    es: EndpointSettings,
    *,
    service_s: float,
    capacity: float,
    cold_start_s: float,
    instance: str,
    tick_interval_s: float = 15.0,
) -> SimConfig:
    """The simulator set up as this endpoint: its SLO, ceiling, instance, service time (as a fixed
    per-request time), capacity and cold start."""
    svc = ServiceModel(
        concurrency=max(1, round(capacity)),
        overhead_s=service_s,
        default_input_tokens=0,
        default_output_tokens=0,
        cold_start_s=cold_start_s,
    )
    return SimConfig(
        slo_ms=es.slo.queue_delay_ms,
        slo_attainment=es.slo.attainment,
        instance=instance,
        max_replicas=es.ceiling,
        tick_interval_s=tick_interval_s,
        # Long enough for the floor to be ready at the first request: the history is replayed
        # to compare candidates, not to charge each one the same first cold start.
        lead_in_s=cold_start_s + 60.0,
        service=svc,
    )


# -- candidates ------------------------------------------------------------------------------------


def candidates_near(current: float, *, max_step: int = 1) -> list[float]:
    """The grid values at most `max_step` grid steps from `current` (itself included)."""
    idx = min(range(len(SAFETY_GRID)), key=lambda i: abs(SAFETY_GRID[i] - current))
    lo, hi = max(0, idx - max_step), min(len(SAFETY_GRID), idx + max_step + 1)
    return list(SAFETY_GRID[lo:hi])


def current_safety(es: EndpointSettings) -> float | None:
    """The `slo_target` safety in force, or None when the endpoint does not run `slo_target`."""
    if "slo_target" not in es.policies:
        return None
    return float(es.policies["slo_target"].get("safety", DEFAULT_SAFETY))


@dataclass(frozen=True)
class Comparison:
    safety: float
    cost_usd: float
    slo_attainment: float
    meets_slo: bool
    current: bool = False


@dataclass(frozen=True)
class Adoption:
    """One decision of the autopilot for one endpoint, with its evidence."""

    key: str
    at: float
    action: str  # "adopt", "keep", "revert"
    safety_from: float
    safety_to: float
    reason: str
    comparisons: tuple[Comparison, ...] = ()

    def explain(self) -> str:
        table = ", ".join(
            f"safety {c.safety:g}: ${c.cost_usd:.2f} at {100 * c.slo_attainment:.2f}%"
            f"{'' if c.meets_slo else ' (misses)'}"
            for c in self.comparisons
        )
        head = f"autopilot {self.action}: safety {self.safety_from:g} -> {self.safety_to:g}"
        return f"{head}; {self.reason}" + (f" [{table}]" if table else "")


def _endpoint_overrides(es: EndpointSettings, safety: float) -> dict[str, Any]:
    data = es.model_dump(mode="json")
    data["policies"] = copy.deepcopy(data["policies"])
    data["policies"].setdefault("slo_target", {})["safety"] = safety
    return {"defaults": data}


def _quiet_worker() -> None:
    """A spawned worker's logging: errors only (the replays' own logs are noise here)."""
    from controller.logs import configure_logging

    configure_logging(fmt="console", level="error")


def _replay_candidate(
    cfg: SimConfig, trace: RequestTrace, spec: PolicySpec
) -> tuple[float, float, bool]:
    """One candidate's replay in a worker process: only the figures travel back."""
    r = run_system_sync(cfg, trace, spec)
    assert r is not None
    return r.cost_usd, r.slo_attainment, r.meets_slo


def _candidate_spec(es: EndpointSettings, s: float) -> PolicySpec:
    return PolicySpec(
        f"safety={s:g}",
        "governor",
        governor=_endpoint_overrides(es, s),
        floor=es.floor,
        ceiling=es.ceiling,
    )


async def compare(
    trace: RequestTrace,
    cfg: SimConfig,
    es: EndpointSettings,
    candidates: Sequence[float],
    *,
    current: float,
    progress: TextIO | None = None,
    jobs: int = 1,
) -> list[Comparison]:
    """Replay `trace` once per candidate safety, the endpoint's other settings as they are.
    With `jobs` > 1 the candidates replay in that many worker processes (`backtest.pool`; one
    progress line with the ETA per finished candidate on `progress`); the figures are the same
    whatever `jobs` (a replay is deterministic)."""
    specs = [_candidate_spec(es, s) for s in candidates]
    if jobs == 1:
        figures = []
        for spec in specs:
            r = await run_system(cfg, trace, spec, progress=progress)
            assert r is not None
            figures.append((r.cost_usd, r.slo_attainment, r.meets_slo))
    else:
        figures = await asyncio.to_thread(
            run_grid,
            _replay_candidate,
            [(cfg, trace, spec) for spec in specs],
            jobs=jobs,
            labels=[spec.name for spec in specs],
            out=progress,
            describe=lambda f: f"${f[0]:.2f} at {100 * f[1]:.2f}%",
            initializer=_quiet_worker,
        )
    return [
        Comparison(s, cost, att, meets, current=abs(s - current) < 1e-9)
        for s, (cost, att, meets) in zip(candidates, figures, strict=True)
    ]


def choose(key: str, comps: Sequence[Comparison], *, current: float, at: float) -> Adoption:
    """The cheapest candidate meeting the SLO; keep the current value when none does."""
    meeting = [c for c in comps if c.meets_slo]
    if not meeting:
        return Adoption(
            key,
            at,
            "keep",
            current,
            current,
            "no candidate met the SLO on the history",
            tuple(comps),
        )
    best = min(meeting, key=lambda c: (c.cost_usd, -c.slo_attainment))
    if abs(best.safety - current) < 1e-9:
        return Adoption(
            key,
            at,
            "keep",
            current,
            current,
            "the value in force is the cheapest meeting the SLO",
            tuple(comps),
        )
    return Adoption(
        key,
        at,
        "adopt",
        current,
        best.safety,
        f"cheapest candidate meeting the SLO on the replayed history (${best.cost_usd:.2f})",
        tuple(comps),
    )


def plan_endpoint(
    key: str,
    es: EndpointSettings,
    rows: Sequence[DemandMinute],
    policy_memory: Mapping[str, Any],
    *,
    instance: str,
    at: float,
    max_step: int = 1,
    progress: TextIO | None = None,
    jobs: int = 1,
) -> Adoption | None:
    """What the autopilot adopts for one endpoint from its recorded minutes (blocking: it runs
    its own event loop, so the daemon calls it in a worker thread; `jobs`: worker processes for
    the candidates, see `compare`). None when the endpoint does not run `slo_target`."""
    from policies.capacity import capacity_of
    from policies.slo_target import COLD_START_PRIOR_S

    current = current_safety(es)
    if current is None:
        return None
    service = policy_memory.get("service_s") or service_from_demand(rows)
    if not service:
        return Adoption(
            key, at, "keep", current, current, "no latency recorded: the service time is unknown"
        )
    prior = float(es.policies["slo_target"].get("capacity_prior", 8.0))
    capacity = es.capacity_per_replica or capacity_of(policy_memory, prior=prior)[0]
    cold = es.cold_start_s
    if cold is None:
        cold = float(policy_memory.get("cold_start_s") or COLD_START_PRIOR_S)
    trace = trace_from_demand(rows, name=key.replace("/", "-"))
    if len(trace) == 0:
        return Adoption(key, at, "keep", current, current, "no requests recorded")
    cfg = replay_config(
        es, service_s=float(service), capacity=capacity, cold_start_s=cold, instance=instance
    )
    comps = asyncio.run(
        compare(
            trace,
            cfg,
            es,
            candidates_near(current, max_step=max_step),
            current=current,
            progress=progress,
            jobs=jobs,
        )
    )
    return choose(key, comps, current=current, at=at)


# -- the backtest's rolling protocol ---------------------------------------------------------------


@dataclass
class _Day:
    index: int
    safety: float
    adoption: Adoption | None = None
    result: RunResult | None = field(default=None, repr=False)


def _per_minute(trace: RequestTrace, end_s: float, key: str) -> list[DemandMinute]:
    n = max(1, math.ceil(end_s / 60.0))
    counts = [0] * n
    for o in trace.offsets:
        if o < end_s:
            counts[min(n - 1, int(o // 60))] += 1
    return [DemandMinute(key, m, float(c)) for m, c in enumerate(counts)]


async def run_autopilot(
    cfg: SimConfig,
    prep: Any,
    spec: PolicySpec,
    out: TextIO | None,
    *,
    day_s: float = DAY_S,
) -> RunResult:
    """Rolling: day 1 with the shipped default; before day k+1, replay days 1..k (as per-minute
    counts) over the candidates near the value in force and run day k+1 with the adoption.

    Each day is replayed from the state the previous day left (the run is continuous: the
    autopilot's override is switched at the day boundary of one Governor run, whose state store
    records the days' demand for its pre-warm, as the daemon's does)."""
    started = time.perf_counter()
    trace: RequestTrace = prep.trace
    days = max(1, math.ceil((trace.duration_s + 1e-9) / day_s))
    es = EndpointSettings()
    safety = current_safety(es) or DEFAULT_SAFETY
    schedule: list[_Day] = [_Day(0, safety)]
    for k in range(1, days):
        history = trace_from_demand(
            _per_minute(trace, k * day_s, "sim/llm"), name=f"{trace.name}-days1-{k}"
        )
        if len(history) == 0:
            schedule.append(_Day(k, safety))
            continue
        rcfg = copy.deepcopy(cfg)
        rcfg.policies = []
        rcfg.lead_in_s = max(cfg.lead_in_s, cfg.service.cold_start_s + 60.0)
        comps = await compare(history, rcfg, es, candidates_near(safety), current=safety)
        adoption = choose("sim/llm", comps, current=safety, at=k * day_s)
        safety = adoption.safety_to
        schedule.append(_Day(k, safety, adoption))
    result = await _run_switching(
        cfg,
        prep,
        spec,
        [(d.index * day_s, override_for(d.safety)) for d in schedule],
        out,
    )
    notes = [
        f"day {d.index + 1}: safety {d.safety:g}"
        + (f" ({d.adoption.explain()})" if d.adoption is not None else " (shipped default)")
        for d in schedule
    ]
    result.kind = "autopilot"
    result.detail = "rolling (learns on days 1..k, acts on day k+1): " + "; ".join(notes)
    result.runtime_s = round(time.perf_counter() - started, 3)
    return result


async def _run_switching(
    cfg: SimConfig,
    prep: Any,
    spec: PolicySpec,
    switches: Sequence[tuple[float, dict[str, Any]]],
    out: TextIO | None,
    *,
    store: Any = None,
) -> RunResult:
    """One Governor run over the load, its per-endpoint override switched at the given offsets
    (seconds from the first request): the way the daemon's autopilot applies an adoption. The run
    records its demand in a state store as the daemon does (the caller's `StateStore`, else a
    scratch file), so its pre-warm forecasts from the days it has run."""
    from controller.backtest import simulate as sim

    started = time.perf_counter()
    b = sim._bounds(cfg, spec)
    prog = sim._Progress(out, f"{prep.trace.name}: {spec.name}", prep.end)
    p, tl, applied = await sim._governor_once(
        cfg, prep, spec.governor, b, prog, store=store, switches=switches
    )
    res = sim._score(
        cfg,
        prep,
        p,
        tl,
        policy=spec.name,
        kind="autopilot",
        detail="",
        api_actions=applied,
        started=started,
    )
    prog.done(sim._summary(res))
    return res
