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
import math
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from controller.backtest.autopilot import replay_config, service_from_demand, trace_from_demand
from controller.backtest.simulate import PolicySpec, RunResult, prepare, run_system
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
from policies.right_sizing import (
    Evaluation,
    Recommendation,
    RightSizingParams,
    choose,
    observed,
)

__all__ = ["MONTH_H", "evaluate_endpoint", "instance_name", "params_of", "replay_candidate"]

MONTH_H = 730.0  # the platform's month in its cost examples


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


def _model_gb(
    p: RightSizingParams, current: PriceRow, rs_memory: Mapping[str, Any]
) -> tuple[float | None, str]:
    if p.model_memory_gb is not None:
        return p.model_memory_gb, "model_memory_gb"
    peak, _ = observed(rs_memory, instance_name(current))
    if peak is None:
        return None, ""
    return model_memory_from_feed(current, peak), f"the feed's peak GPU memory {peak:.0f}%"


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
) -> Recommendation | None:
    """What right-sizing recommends for one endpoint from its recorded minutes; None when the
    endpoint does not run `right_sizing`. Every "cannot tell" is a `keep` saying why."""
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

    def keep(reason: str, model_gb: float | None = None) -> Recommendation:
        return Recommendation(key, at, "keep", instance, None, 0.0, reason, (), model_gb)

    if cur is None:
        return keep(f"{instance} is not in the price table")
    if cur.accelerators <= 0:
        return keep(f"{instance} is a CPU instance: the capacity model covers accelerators only")
    model_gb, source = _model_gb(p, cur, rs_memory)
    if model_gb is None:
        return keep(
            "the model's memory is unknown (no GPU memory in the feed on this instance, no "
            "model_memory_gb)"
        )
    service = slo_memory.get("service_s") or service_from_demand(rows)
    if not service:
        return keep("no latency recorded: the service time is unknown", model_gb)
    prior = float((es.policies.get("slo_target") or {}).get("capacity_prior", 8.0))
    capacity = es.capacity_per_replica or capacity_of(slo_memory, prior=prior)[0]
    cold = es.cold_start_s
    if cold is None:
        cold = float(slo_memory.get("cold_start_s") or COLD_START_PRIOR_S)
    trace = trace_from_demand(rows, name=key.replace("/", "-"))
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
    note = f"model {model_gb:.1f} GB (from {source}), headroom {p.headroom:g}"
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
