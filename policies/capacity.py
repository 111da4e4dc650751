"""What one replica can carry, and how many replicas an SLO needs: pure functions for policies.

Three parts, each usable alone:

- `engine_capacity(endpoint)`: the engine's configured batch width when the endpoint's env in the
  API states it (TGI `MAX_BATCH_SIZE`, TEI `MAX_BATCH_REQUESTS`, llama.cpp
  `LLAMA_ARG_N_PARALLEL`). `MAX_CONCURRENT_REQUESTS` is an admission limit (TGI's default is 128),
  not what a replica serves at once, so it is not read.
- `learn(memory, ...)`: an online estimate from the feed, kept in a policy's memory. Its inputs are
  plain numbers (in-flight requests, ready replicas, completions and latency totals), so any feed
  recipe that yields them composes with it. By Little's law the requests in service are
  completions/s x service time; the service time is the mean latency while replicas are not
  saturated. Whatever is pending beyond that is queued. A sustained queue per replica means the
  replicas are full: what they then hold in service is the capacity. Without a queue, what they
  held is a lower bound. The learner never raises the estimate past what it saw served.
- `replicas_for_slo(...)`: the fewest replicas for which an M/M/c queue (c = replicas x capacity
  servers) keeps P(wait > queue delay) within the miss budget. This is square-root staffing: the
  headroom shrinks relative to the load as the load grows, which a fixed "pending per replica"
  target cannot do.

`learn_cold_start(memory, ...)` times observed starts (from replicas requested to replicas ready),
for the policies that need a lead time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from controller.platform.models import AnyEndpoint

__all__ = [
    "ENGINE_ENV",
    "engine_capacity",
    "erlang_c",
    "learn",
    "learn_cold_start",
    "replicas_for_slo",
    "wait_probability",
]

# The engine settings that state how many requests a replica batches at once.
ENGINE_ENV = ("MAX_BATCH_SIZE", "MAX_BATCH_REQUESTS", "LLAMA_ARG_N_PARALLEL")


def engine_capacity(endpoint: AnyEndpoint) -> float | None:
    """The batch width the endpoint's env sets, or None (unset, unparsable or not positive)."""
    env = endpoint.model.env or {}
    for key in ENGINE_ENV:
        raw = env.get(key)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if math.isfinite(value) and value >= 1:
            return value
    return None


# -- queueing model ------------------------------------------------------------------------------


def erlang_c(servers: int, load: float) -> float:
    """P(an arrival waits) in M/M/c with `servers` servers and offered `load` (Erlangs)."""
    if load <= 0:
        return 0.0
    if servers <= load:
        return 1.0
    b = 1.0  # Erlang B by its stable recursion
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return servers * b / (servers - load * (1.0 - b))


def wait_probability(servers: int, load: float, delay_over_service: float) -> float:
    """P(wait > delay) in M/M/c: Erlang C x exp(-(c - a) x delay / service time)."""
    if servers <= load:
        return 1.0
    return erlang_c(servers, load) * math.exp(-(servers - load) * delay_over_service)


def replicas_for_slo(
    load: float,
    *,
    capacity: float,
    miss_budget: float,
    delay_over_service: float = 0.0,
    ceiling: int = 1000,
) -> int:
    """Fewest replicas keeping P(wait > delay) <= `miss_budget` for `load` requests in service.

    `load` is the mean number of requests the endpoint has in service (Erlangs, = arrivals/s x
    service time). `delay_over_service` is the SLO's queueing delay over the mean service time (0
    when the service time is unknown: then any wait counts as a miss, the safe side). Returns 0 for
    no load, at most `ceiling`.
    """
    if load <= 0:
        return 0
    per = max(1, math.floor(capacity + 1e-9))
    n = max(1, math.ceil(round(load / per, 6)))
    while n < ceiling and wait_probability(n * per, load, delay_over_service) > miss_budget:
        n += 1
    return min(n, ceiling)


# -- capacity learner ----------------------------------------------------------------------------

_SATURATED_QUEUE = 1.0  # queued requests per replica that mark the replicas as full
_SATURATED_LATENCY = 1.5  # ... together with latency this many times the service time
_SERVICE_ALPHA = 0.2  # EWMA weight of a new unsaturated latency reading
_CAPACITY_ALPHA = 0.2  # EWMA weight of a new saturated capacity reading
_SERVICE_READINGS = 4  # unsaturated readings before the service time is trusted
_MIN_COMPLETIONS = 5  # completions per ready replica an interval needs to be read


def learn(
    memory: Mapping[str, Any],
    *,
    at: float,
    pending: float | None,
    ready: int,
    latency_count: float | None,
    latency_sum: float | None,
    prior: float,
) -> dict[str, Any]:
    """Fold one sample into the capacity memory; returns the new memory (the input is kept).

    Memory keys: `lat` ([at, count, sum, ready] of the previous sample), `service_s` (mean
    service time) and `service_n` (its readings; nothing is concluded before a few),
    `capacity` (learnt from saturation), `capacity_lo` (most seen in service per replica without a
    queue). A counter that went down (an engine restart) restarts the deltas.
    """
    mem = dict(memory)
    prev = mem.get("lat")
    if latency_count is None or latency_sum is None:
        return mem
    mem["lat"] = [at, latency_count, latency_sum, ready]
    # A reading needs the same ready replicas at both ends: a replica that just became ready has
    # served little of the interval, and per-replica rates would read low.
    if not prev or len(prev) < 4 or int(prev[3]) != ready or ready < 1 or pending is None:
        return mem
    p_at, p_count, p_sum = (float(x) for x in prev[:3])
    d_count, d_sum, dt = latency_count - p_count, latency_sum - p_sum, at - p_at
    if d_count <= 0 or d_sum < 0 or dt <= 0:
        return mem
    latency = d_sum / d_count
    rate = d_count / dt
    service = mem.get("service_s")
    cap_now = float(mem.get("capacity") or max(prior, mem.get("capacity_lo") or 0.0))
    per_replica = pending / ready
    readings = int(mem.get("service_n", 0))
    if service is None or (per_replica < cap_now and latency < _SATURATED_LATENCY * service):
        service = (
            latency
            if service is None
            else (1 - _SERVICE_ALPHA) * service + (_SERVICE_ALPHA * latency)
        )
        mem["service_s"] = service
        mem["service_n"] = readings = readings + 1
    in_service = rate * service / ready
    queued = per_replica - in_service
    if readings < _SERVICE_READINGS:
        return mem  # the service time is not settled yet: nothing to conclude from it
    if d_count < _MIN_COMPLETIONS * ready:
        return mem  # too few completions for a per-replica rate: one long request skews it
    if (
        queued >= max(_SATURATED_QUEUE, 0.25 * per_replica)
        and latency >= _SATURATED_LATENCY * service
    ):
        seen = mem.get("capacity")
        reading = in_service
        mem["capacity"] = (
            reading
            if seen is None
            else (1 - _CAPACITY_ALPHA) * float(seen) + _CAPACITY_ALPHA * reading
        )
    elif in_service > float(mem.get("capacity_lo") or 0.0):
        mem["capacity_lo"] = in_service
    return mem


def capacity_of(memory: Mapping[str, Any], *, prior: float) -> tuple[float, str]:
    """The capacity to plan with and where it came from: learnt at saturation, else the prior.
    (`capacity_lo`, the most seen served without a queue, is kept for the record only: noise in a
    single reading would raise it past the truth.)"""
    learnt = memory.get("capacity")
    if learnt is not None:
        return max(1.0, float(learnt)), "learnt at saturation"
    return prior, "prior"


# -- cold start ----------------------------------------------------------------------------------

_COLD_ALPHA = 0.3


def learn_cold_start(
    memory: Mapping[str, Any], *, at: float, current: int, ready: int
) -> dict[str, Any]:
    """Time starts: from when fewer replicas were ready than requested to when all were.

    Memory keys: `start_since` (when the shortfall began; None without one), `start_from` (ready
    replicas then), `cold_start_s` (EWMA of observed starts). A shortfall that ends because the
    request went down (no replica became ready) is not a start and is dropped.
    """
    mem = dict(memory)
    since = mem.get("start_since")
    if ready < current:
        if since is None:
            mem["start_since"] = at
            mem["start_from"] = ready
        return mem
    if since is not None:
        if ready > int(mem.get("start_from", ready)):
            took = at - float(since)
            seen = mem.get("cold_start_s")
            mem["cold_start_s"] = (
                took if seen is None else (1 - _COLD_ALPHA) * float(seen) + _COLD_ALPHA * took
            )
        mem["start_since"] = None
        mem.pop("start_from", None)
    return mem
