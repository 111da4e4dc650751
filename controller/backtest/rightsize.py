"""Right-sizing's evidence: the endpoint's recorded traffic replayed once per candidate instance.

The candidates come from the capacity model (`controller.cost.capacity`: same vendor and kind,
the model fits with headroom); each is replayed through the simulator (`run_system`, the
production loop against the emulated platform, as the autopilot replays) with that instance's
service time and batch width scaled from the current instance's, and the endpoint's own
settings, told the candidate's capacity per replica. `policies.right_sizing.choose` then keeps the
cheapest meeting the SLO. Blocking: it runs its own event loop (the daemon calls it in a worker
thread, as it calls the autopilot's planner).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from controller.backtest.autopilot import replay_config, service_from_demand, trace_from_demand
from controller.backtest.simulate import (
    PolicySpec,
    RunResult,
    ServiceModel,
    prepare,
    run_system,
)
from controller.backtest.traces import RequestTrace
from controller.core.params import EndpointSettings
from controller.cost.capacity import (
    CandidateCapacity,
    candidate_rows,
    model_memory_from_feed,
    scale_capacity,
)
from controller.cost.pricing import PriceBook, PriceRow
from controller.daemon.store import DemandMinute
from controller.errors import ConfigError
from controller.platform.hub import HubSize
from policies.right_sizing import (
    Evaluation,
    Recommendation,
    RightSizingParams,
    choose,
    observed,
)

__all__ = [
    "MONTH_H",
    "evaluate_endpoint",
    "instance_name",
    "model_memory",
    "params_of",
    "replay_candidate",
    "service_for_replay",
    "service_spread",
    "sized_trace",
]

MONTH_H = 730.0  # the platform's month in its cost examples


# A replayed request's size is its service time on the current instance, carried as output tokens
# of this many per second there (the simulator's service model: tokens / decode rate); a
# candidate `speed` times as fast decodes `speed` x as many per second.
SIZE_UNITS_PER_S = 1000.0


def _unqueued(r: DemandMinute, capacity: float) -> bool:
    """The minute had latency and, on average, no queue: mean in flight per ready replica within
    the replica's batch width, so its latency is service time."""
    ready = r.mean_ready
    if r.mean_latency_s is None or r.latency_count <= 0 or not ready:
        return False
    return r.in_system / ready <= capacity + 1e-9


def service_for_replay(rows: Sequence[DemandMinute], *, capacity: float) -> float | None:
    """The mean service time the replay gives every request: the request-weighted mean latency
    of the recorded minutes that had no queue (mean in flight per ready replica within the
    replica's batch width, so every request in flight was in service); None without such minutes.

    Why not the lower quartile of the minutes' means (`service_from_demand`, the autopilot's):
    the minutes that have the fewest, shortest requests are the low ones, so with heavy-tailed
    request sizes it understates the work per request: 3.17 s against 3.61 s on `business-days`,
    which made an L40S look cheaper than the A100 it is not (benchmarks/rightsize.py). The
    replay's bill is the work served, so it needs the mean over requests.
    """
    total = count = 0.0
    for r in rows:
        if _unqueued(r, capacity):
            total += r.latency_sum
            count += r.latency_count
    return total / count if count > 0 else None


def service_spread(
    rows: Sequence[DemandMinute], *, capacity: float, max_gap_min: int = 5
) -> float | None:
    """The coefficient of variation of one request's service time, from the minutes' means alone
    (the store keeps each minute's latency count and sum, not its requests'): two neighbouring
    unqueued minutes' means differ by sigma^2 (1/n_a + 1/n_b) on average, so the pooled squared
    differences over the pooled weights estimate sigma^2. Neighbours (at most `max_gap_min`
    apart), not the overall mean, so that a load whose sizes drift over the day does not read
    as spread. None with no pair or no mean."""
    mean = service_for_replay(rows, capacity=capacity)
    if not mean:
        return None
    ok = [r for r in rows if _unqueued(r, capacity)]
    num = den = 0.0
    for a, b in itertools.pairwise(ok):
        if b.minute - a.minute > max_gap_min:
            continue
        num += (a.latency_sum / a.latency_count - b.latency_sum / b.latency_count) ** 2
        den += 1.0 / a.latency_count + 1.0 / b.latency_count
    return math.sqrt(num / den) / mean if den > 0 else None


def sized_trace(
    rows: Sequence[DemandMinute],
    *,
    name: str,
    capacity: float,
    mean_s: float,
    cv: float,
    seed: int = 0,
) -> RequestTrace:
    """The recorded minutes as a trace whose requests carry sizes (`SIZE_UNITS_PER_S`).

    Arrivals: each minute's count spread over the minute (`trace_from_demand`). Sizes: an
    unqueued minute's requests share out that minute's recorded latency sum, each a lognormal
    draw of coefficient of variation `cv` rescaled so the minute's work is what was recorded (a
    minute of one request replays that request's own time); a minute queued or without latency
    gets draws around `mean_s`. So the replay serves the work each minute had, with the spread
    inside the minute that heavy-tailed sizes give, instead of every request at one mean.
    """
    base = trace_from_demand(rows, name=name)
    if len(base) == 0:
        return base
    first = rows[0].minute
    by_minute = {r.minute: r for r in rows}
    rng = random.Random(f"sizes:{name}:{seed}")
    sigma = math.sqrt(math.log1p(cv * cv)) if cv > 0 else 0.0
    groups: dict[int, list[int]] = {}
    for i, o in enumerate(base.offsets):
        groups.setdefault(first + int(o // 60.0), []).append(i)
    sizes = [0.0] * len(base)
    for minute, idx in groups.items():
        draws = [rng.lognormvariate(0.0, sigma) if sigma else 1.0 for _ in idx]
        row = by_minute.get(minute)
        if row is not None and _unqueued(row, capacity) and len(idx) == row.latency_count:
            work = row.latency_sum  # the minute's own recorded work, shared out
        else:
            work = mean_s * len(idx)
        scale = work / sum(draws)
        for i, d in zip(idx, draws, strict=True):
            sizes[i] = d * scale
    units = tuple(max(1, round(x * SIZE_UNITS_PER_S)) for x in sizes)
    return RequestTrace(
        base.name,
        base.offsets,
        input_tokens=(0,) * len(base),
        output_tokens=units,
        start_epoch=base.start_epoch,
        notes=(*base.notes, f"sizes: minute means, spread cv {cv:.2f}"),
    )


def instance_name(row: PriceRow) -> str:
    return f"{row.vendor}/{row.instance_type}/{row.instance_size}"


def params_of(es: EndpointSettings) -> RightSizingParams | None:
    """The endpoint's `right_sizing` parameters, or None when it does not run the policy."""
    if "right_sizing" not in es.policies:
        return None
    return RightSizingParams.model_validate(es.policies["right_sizing"] or {})


def _replay_settings(es: EndpointSettings, capacity: int) -> dict[str, Any]:
    data = es.model_dump(mode="json")
    data["capacity_per_replica"] = capacity
    return {"defaults": data}


async def replay_candidate(
    es: EndpointSettings,
    trace: Any,
    row: PriceRow,
    cap: CandidateCapacity,
    *,
    cold_start_s: float,
    current: bool,
    progress: TextIO | None = None,
) -> Evaluation:
    """One candidate over the recorded traffic: its bill scaled to a month, its attainment."""
    cfg = replay_config(
        es,
        service_s=cap.service_s,
        capacity=cap.concurrency,
        cold_start_s=cold_start_s,
        instance=instance_name(row),
    )
    if trace.output_tokens is not None:  # a sized trace: each request's own time, scaled
        cfg.service = ServiceModel(
            concurrency=cap.concurrency,
            prefill_tps=SIZE_UNITS_PER_S,
            decode_tps=SIZE_UNITS_PER_S * cap.speed,
            default_input_tokens=0,
            default_output_tokens=0,
            cold_start_s=cold_start_s,
        )
    spec = PolicySpec(
        instance_name(row),
        "governor",
        governor=_replay_settings(es, cap.concurrency),
        floor=es.floor,
        ceiling=es.ceiling,
    )
    r: RunResult | None = await run_system(cfg, trace, spec, progress=progress)
    assert r is not None
    hours = prepare(cfg, trace).end / 3600.0
    ready = r.timeline.get("ready") or [0.0]
    return Evaluation(
        instance=instance_name(row),
        usd_per_hour=row.usd_per_hour,
        memory_gb=cap.memory_gb,
        speed=cap.speed,
        concurrency=cap.concurrency,
        cost_month_usd=r.cost_usd * MONTH_H / hours,
        slo_attainment=r.slo_attainment,
        meets_slo=r.meets_slo,
        mean_replicas=r.replica_hours / hours,
        peak_replicas=int(max(ready)),
        current=current,
        service_s=cap.service_s,
    )


def model_memory(
    p: RightSizingParams,
    current: PriceRow,
    rs_memory: Mapping[str, Any],
    hub: HubSize | None = None,
) -> tuple[float | None, str, str]:
    """(GB, source, what it says) of the model's weights, in precedence order: `model_memory_gb`
    (the operator knows), the Hub's safetensors size (the weights as stored), the feed's peak
    GPU memory (which an engine preallocating its KV cache, vLLM's ~90 %, overstates)."""
    if p.model_memory_gb is not None:
        return p.model_memory_gb, "model_memory_gb", "model_memory_gb"
    if hub is not None and hub.weights_gb is not None:
        return hub.weights_gb, "hub", hub.source()
    missed = f"; the Hub's size unknown: {hub.reason}" if hub is not None else ""
    peak, _ = observed(rs_memory, instance_name(current))
    gb = None if peak is None else model_memory_from_feed(current, peak)
    if gb is None:
        return None, "", missed.removeprefix("; ")
    return gb, "feed", f"the feed's peak GPU memory {peak:.0f}%{missed}"


def evaluate_endpoint(
    key: str,
    es: EndpointSettings,
    rows: Sequence[DemandMinute],
    slo_memory: Mapping[str, Any],
    rs_memory: Mapping[str, Any],
    *,
    instance: str,
    at: float,
    prices: PriceBook | None = None,
    progress: TextIO | None = None,
    hub: HubSize | None = None,
) -> Recommendation | None:
    """What right-sizing recommends for one endpoint from its recorded minutes; None when the
    endpoint does not run `right_sizing`. Every "cannot tell" is a `keep` saying why. `hub`: the
    model's size the caller read from the Hub (`controller.platform.hub`), if it asked."""
    from policies.capacity import capacity_of
    from policies.slo_target import COLD_START_PRIOR_S

    p = params_of(es)
    if p is None:
        return None
    book = prices or PriceBook()
    parts = instance.split("/")
    if len(parts) != 3:
        raise ConfigError(f"instance: expected vendor/type/size, got {instance!r}")
    cur = book.lookup(*parts)

    kind = ""

    def keep(reason: str, model_gb: float | None = None) -> Recommendation:
        return Recommendation(key, at, "keep", instance, None, 0.0, reason, (), model_gb, kind)

    if cur is None:
        return keep(f"{instance} is not in the price table")
    if cur.accelerators <= 0:
        return keep(f"{instance} is a CPU instance: the capacity model covers accelerators only")
    model_gb, kind, source = model_memory(p, cur, rs_memory, hub)
    if model_gb is None:
        return keep(
            "the model's memory is unknown (no model_memory_gb, no size from the Hub, no GPU "
            "memory in the feed on this instance)" + (f"; {source}" if source else "")
        )
    prior = float((es.policies.get("slo_target") or {}).get("capacity_prior", 8.0))
    capacity = es.capacity_per_replica or capacity_of(slo_memory, prior=prior)[0]
    service = (
        service_for_replay(rows, capacity=capacity)
        or slo_memory.get("service_s")
        or service_from_demand(rows)
    )
    if not service:
        return keep("no latency recorded: the service time is unknown", model_gb)
    cold = es.cold_start_s
    if cold is None:
        cold = float(slo_memory.get("cold_start_s") or COLD_START_PRIOR_S)
    cv = p.service_cv
    if cv is None:
        cv = min(p.max_service_cv, service_spread(rows, capacity=capacity) or 0.0)
    trace = sized_trace(
        rows, name=key.replace("/", "-"), capacity=capacity, mean_s=float(service), cv=cv
    )
    if len(trace) == 0:
        return keep("no requests recorded", model_gb)
    allowed = frozenset(p.instance_types) if p.instance_types is not None else None
    cands = candidate_rows(
        cur, book.rows, model_gb=model_gb, headroom=p.headroom, allowed_types=allowed
    )
    others = [r for r in cands if r.key != cur.key][: p.max_candidates]
    cands = [cur, *others]
    evals = asyncio.run(
        _replay_all(es, trace, cur, cands, p, model_gb, float(service), capacity, cold, progress)
    )
    rec = choose(key, evals, p, at=at, model_gb=model_gb)
    note = (
        f"model {model_gb:.1f} GB (from {source}), headroom {p.headroom:g}; service "
        f"{float(service):.2f}s mean, cv {cv:.2f}"
    )
    return Recommendation(
        rec.key,
        rec.at,
        rec.action,
        rec.current,
        rec.best,
        rec.saving_month_usd,
        f"{rec.reason}; {note}",
        rec.evaluations,
        rec.model_gb,
        kind,
    )


async def _replay_all(
    es: EndpointSettings,
    trace: Any,
    cur: PriceRow,
    cands: Sequence[PriceRow],
    p: RightSizingParams,
    model_gb: float,
    service_s: float,
    capacity: float,
    cold: float,
    progress: TextIO | None,
) -> list[Evaluation]:
    out: list[Evaluation] = []
    for row in cands:
        cap = scale_capacity(
            cur,
            row,
            model_gb=model_gb,
            service_s=service_s,
            concurrency=capacity,
            tp_efficiency=p.tp_efficiency,
            max_concurrency_ratio=p.max_concurrency_ratio,
            throughput=p.throughput or None,
        )
        if cap is None:
            continue
        if row.key == cur.key:  # the current instance as it is, not as the model rescales it
            cap = CandidateCapacity(
                service_s, max(1, math.floor(capacity)), 1.0, cap.memory_gb, 1.0
            )
        out.append(
            await replay_candidate(
                es,
                trace,
                row,
                cap,
                cold_start_s=cold,
                current=row.key == cur.key,
                progress=progress,
            )
        )
    return out
