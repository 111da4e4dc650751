"""SLO target: as many replicas as the endpoint's SLO needs, not a hand-set "pending per replica".

The default demand policy. Every tick:

1. **Capacity.** Requests one replica serves at once: `capacity_per_replica` when configured or
   stated by the engine's env in the API (`view.capacity_per_replica`), else learnt from the feed
   (`policies.capacity.learn`: Little's law on completions and latency; a sustained queue shows the
   replicas full), starting from `capacity_prior`.
2. **Load.** The mean requests in flight (queued + in service) over `window_s`: the Erlangs the
   replicas must carry. It is the feed's pending-requests series when there is one, else derived
   by Little's law from the request counter and the latency summary (`EndpointWindow.in_flight`,
   docs/signals.md); the reason names which.
   **Backlog.** While requests queue beyond what the ready replicas serve (`backlog`), the queue
   is not load in flight: the replicas started for it are ready a cold start from now, so the
   load sized for is the arrivals plus the queue that will be left then, drained within
   `drain_s` (`_backlog`); a burst over before they are ready asks for the few that drain its
   remains, a queue still growing for what it will be. While it grows nothing is given back.
3. **Size.** The fewest replicas for which an M/M/c queue with that load keeps P(wait > the SLO's
   queueing delay) within `safety` x the SLO's miss budget (1 - attainment). The mean service
   time, once learnt, lets the model count waits shorter than the delay as met.
4. **Panic.** When the mean over `panic_window_s` (with a queue: the backlog's sizing) asks for at
   least `panic_threshold` x the ready replicas, that count is used at once, and nothing is
   scaled down until a full `window_s` passes without another such tick (Knative's panic mode).
5. **Scale to zero** (only where the operator's floor is 0). The idle gaps the endpoint has had
   (up to `gap_history`) say what keeping the last replica warm costs against what a cold start
   costs: the idle timeout chosen is the one with the fewest expected replica-seconds (idle time
   up to the timeout, plus the cold start of each wake after it; price cancels out, as a starting
   replica bills at the same rate) whose expected misses (the requests that arrived within a cold
   start of each wake, all of which wait) fit in `safety` x the SLO's miss budget of the requests
   seen. With no gap beyond the timeout, or no history, it stays warm.

6. **Burst headroom** (`burst_headroom`, on by default). Each scrape interval's arrivals (served
   + the pending gauge's change) are compared with the median rate of the intervals within
   `burst_context_s` around it; what exceeds it by more than `burst_z` x sqrt(expected), times
   the service time (Little's law while nothing queues), is a burst's height in flight. The
   largest per minute over `burst_lookback_s`, halved every `burst_half_life_s`, is sized for on
   top of the load, so a burst shorter than a cold start finds spare replicas; a sustained rise
   (the median follows it) and Poisson noise add nothing. On by default because the SLO comes
   first: on the load suite it buys attainment on bursty loads at a higher cost (docs/slo.md).

Reason codes: `slo_target` (sized; the message names a backlog), `panic`, `burst_headroom`,
`prewarm`, `idle_to_zero` (0 replicas after the break-even idle time), `no_data` (no in-flight
figure in `window_s`, neither pending nor derived: invalid proposal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies.base import EndpointView, Proposal, ProposalKind
from policies.capacity import capacity_of, learn, learn_cold_start, replicas_for_slo
from policies.prewarm import burst_excess, burst_headroom, fold_peak, forecast_rise

__all__ = ["SloTargetParams", "SloTargetPolicy", "idle_timeout"]

# Bursts are remembered per minute (the billing unit): at most burst_lookback_s / 60 entries.
BURST_BUCKET_S = 60.0
# A cold start assumed until one is observed (or `cold_start_s` is configured): a few minutes is
# typical for a model of a few GB pulled and loaded on Inference Endpoints.
COLD_START_PRIOR_S = 300.0


class SloTargetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_s: float = Field(
        60.0, gt=0, le=3600, description="Span the load (mean pending requests) is taken over."
    )
    panic_window_s: float = Field(
        15.0, gt=0, le=3600, description="Short span for burst detection (>= the tick interval)."
    )
    panic_threshold: float = Field(
        2.0, gt=1, le=100, description="Panic when the short span asks for this x ready replicas."
    )
    safety: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of the SLO's miss budget the queueing model may spend (the rest covers "
        "traffic burstier than Poisson and the lag of a window mean).",
    )
    capacity_prior: float = Field(
        8.0,
        ge=1,
        le=100_000,
        description="Capacity assumed until learnt: continuous batching of a 7-8B model on a "
        "24 GB GPU; corrected online once the replicas are seen full.",
    )
    learn_capacity: bool = Field(
        False,
        description="Learn capacity from the feed when not given (opt-in: with request lengths "
        "that vary tenfold, as LLM traffic's do, its readings are noisy; see docs/slo.md).",
    )
    trend: bool = Field(
        True,
        description="Size for the load one cold start ahead when it is rising (its least-squares "
        "trend over trend_s), so replicas started now are ready when the load arrives.",
    )
    trend_s: float = Field(
        300.0, gt=0, le=3600, description="Span of recent window means the trend is fitted on."
    )
    backlog: bool = Field(
        True,
        description="With a queue beyond what the ready replicas serve, size for the backlog "
        "that will remain one cold start ahead and the arrivals, not for the queue's length "
        "as if each queued request were served at once.",
    )
    drain_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Time the replicas started for a backlog are sized to drain what remains of "
        "it once ready (shorter: more replicas, fewer requests waiting behind it).",
    )
    prewarm: bool = Field(
        True,
        description="Size for the rise the endpoint's recorded history shows one cold start "
        "ahead at this phase of earlier hours, days and weeks (policies/prewarm.py), once it "
        "recurred prewarm_confirm times.",
    )
    prewarm_confirm: int = Field(
        2, ge=1, le=20, description="Lags that must have risen as much before it is pre-warmed."
    )
    prewarm_margin_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="Looked ahead beyond the cold start (the platform's scheduling, a tick).",
    )
    prewarm_max_replicas: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Most replicas a forecast alone asks for (None: the ceiling).",
    )
    burst_headroom: bool = Field(
        True,
        description="Hold warm, on top of the load, the largest burst beyond Poisson the "
        "endpoint showed recently (faded by burst_half_life_s), so the next burst shorter than "
        "a cold start finds spare replicas (policies/prewarm.py burst_excess). On by default: "
        "the SLO comes first; it buys attainment on bursty loads at a higher cost (docs/slo.md).",
    )
    burst_z: float = Field(
        6.0,
        ge=0,
        le=100,
        description="A scrape interval's arrivals count as a burst beyond the median rate of "
        "the intervals around it plus burst_z x the square root of the count it expects.",
    )
    burst_context_s: float = Field(
        120.0,
        ge=30,
        le=3600,
        description="Span of scrape intervals, centred on the one read, whose median rate is "
        "its baseline (a rise lasting over half of it is sustained, not a burst).",
    )
    burst_half_life_s: float = Field(
        120.0,
        gt=0,
        le=7 * 86_400,
        description="A burst counts as its excess x 0.5 ** (age / burst_half_life_s).",
    )
    burst_lookback_s: float = Field(
        1800.0,
        ge=60,
        le=7 * 86_400,
        description="Bursts older than this are forgotten (one remembered per minute).",
    )
    gap_history: int = Field(
        64, ge=1, le=10_000, description="Idle gaps remembered for the scale-to-zero break-even."
    )
    min_idle_s: float = Field(
        60.0, ge=0, le=86_400, description="Never scale to zero after less idle time than this."
    )

    @model_validator(mode="after")
    def _windows(self) -> Self:
        if self.panic_window_s > self.window_s:
            raise ValueError(
                f"panic_window_s ({self.panic_window_s:g}) must not exceed window_s "
                f"({self.window_s:g})"
            )
        return self


def idle_timeout(
    gaps: list[list[float]],
    *,
    cold_start_s: float,
    miss_budget: float,
    requests: float,
    min_idle_s: float,
) -> float | None:
    """The break-even idle timeout over observed gaps ([length s, requests at its wake]), or None.

    For a timeout tau, each gap g costs min(g, tau) idle replica-seconds, plus `cold_start_s` when
    g > tau (the replica is started again), and its wake requests are misses. The cheapest tau
    among the gap lengths (and "never") whose misses fit `miss_budget` x `requests` is returned;
    None means staying warm is cheapest or the only choice the SLO allows.
    """
    lengths = sorted({g for g, _ in gaps if g >= min_idle_s})
    allowed = miss_budget * requests

    def cost(tau: float) -> float:
        return sum(min(g, tau) + (cold_start_s if g > tau else 0.0) for g, _ in gaps)

    def misses(tau: float) -> float:
        return sum(w for g, w in gaps if g > tau)

    best: tuple[float, float | None] = (cost(math.inf), None)
    for tau in [min_idle_s, *lengths]:
        if not any(g > tau for g, _ in gaps) or misses(tau) > allowed:
            continue
        c = cost(tau)
        if c < best[0] - 1e-9:
            best = (c, tau)
    return best[1]


@dataclass(frozen=True, slots=True)
class Backlog:
    """What `_backlog` sizes for: the load in flight, the queue's growth per second, why."""

    load: float
    growth: float
    why: str


def _slope(points: list[list[float]]) -> float:
    """Least-squares slope of [t, v] points (0 with fewer than two distinct times)."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var <= 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in points) / var


class SloTargetPolicy:
    name: ClassVar[str] = "slo_target"
    Params: ClassVar[type[BaseModel]] = SloTargetParams

    def __init__(self, params: BaseModel) -> None:
        assert isinstance(params, SloTargetParams)
        self.params = params

    # -- learning ---------------------------------------------------------------------------------

    def _learn(self, view: EndpointView, now: float) -> dict[str, Any]:
        mem = dict(view.memory)
        w = view.window
        latest = w.latest if w is not None else None
        if latest is None or latest.at > now or latest.at <= float(mem.get("seen_at", -1.0)):
            return mem
        mem["seen_at"] = latest.at
        if view.capacity_per_replica is None and self.params.learn_capacity:
            mem = learn(
                mem,
                at=latest.at,
                pending=latest.pending,
                ready=view.ready,
                latency_count=latest.latency_count,
                latency_sum=latest.latency_sum,
                prior=self.params.capacity_prior,
            )
        mem = learn_cold_start(mem, at=latest.at, current=view.current, ready=view.ready)
        return self._track_idle(mem, view, latest.at)

    def _track_idle(self, mem: dict[str, Any], view: EndpointView, at: float) -> dict[str, Any]:
        """Idle spells (nothing pending, nothing served) and the requests just after each."""
        w = view.window
        assert w is not None
        pending = w.latest.pending if w.latest is not None else None
        total = w.latest.total_requests if w.latest is not None else 0.0
        prev_total = mem.get("served")
        served = 0.0 if prev_total is None else max(0.0, total - float(prev_total))
        mem["served"] = total
        mem["busy_requests"] = float(mem.get("busy_requests", 0.0)) + served
        idle = (pending or 0.0) <= 0 and served <= 0
        since = mem.get("idle_since")
        if idle and since is None:
            mem["idle_since"] = at
        elif not idle and since is not None:
            mem["idle_since"] = None
            mem["wake"] = [at, at - float(since), served]  # counted on for one cold start
        wake = mem.get("wake")
        if wake is not None and not idle and at != wake[0]:
            wake = mem["wake"] = [wake[0], wake[1], float(wake[2]) + served]
        cold = self._cold_start(view, mem)
        if wake is not None and at - float(wake[0]) >= cold:
            # [gap length, requests within a cold start of its wake, requests since the last gap]
            entry = [float(wake[1]), float(wake[2]), float(mem.get("busy_requests", 0.0))]
            mem["gaps"] = [*mem.get("gaps", []), entry][-self.params.gap_history :]
            mem["busy_requests"] = 0.0
            mem["wake"] = None
        return mem

    def _cold_start(self, view: EndpointView, mem: dict[str, Any]) -> float:
        if view.cold_start_s is not None:
            return view.cold_start_s
        return float(mem.get("cold_start_s") or COLD_START_PRIOR_S)

    # -- proposing --------------------------------------------------------------------------------

    def propose(self, view: EndpointView, now: float) -> Proposal:
        p = self.params
        mem = self._learn(view, now)
        w = view.window
        reading = w.in_flight(span_s=p.window_s, now=now) if w is not None else None
        if reading is None:
            return Proposal(
                policy=self.name,
                kind=ProposalKind.DEMAND,
                reason="no_data",
                message=f"no pending-requests sample, nor requests and latency to derive the "
                f"in-flight load from, in the last {p.window_s:g}s",
                valid=False,
                memory=mem,
            )
        load = reading.value
        if view.capacity_per_replica is not None:
            cap, cap_src = view.capacity_per_replica, "configured"
        else:
            cap, cap_src = capacity_of(mem, prior=p.capacity_prior)
        budget = (1.0 - view.slo_attainment) * p.safety
        service = mem.get("service_s")
        ratio = view.slo_queue_delay_s / float(service) if service else 0.0

        def size(a: float) -> int:
            return replicas_for_slo(
                a, capacity=cap, miss_budget=budget, delay_over_service=ratio, ceiling=view.ceiling
            )

        lead = self._cold_start(view, mem) if p.trend else 0.0
        backlog = self._backlog(view, mem, now, cap)
        queued = backlog is not None or now - float(mem.get("backlog_at", -math.inf)) < p.window_s
        if backlog is not None:
            mem["backlog_at"] = now
            base = backlog.load
        elif queued and w is not None and w.latest is not None and w.latest.pending is not None:
            base = w.latest.pending  # the window's mean still counts the queue just drained
        else:
            base = load
        ahead = self._ahead(mem, now, base, lead)
        sized = base if backlog is not None else max(0.0, base, ahead)
        stable = size(sized)
        svc = f", service {float(service):.2f}s" if service else ""
        trend = f", {ahead:.2f} one cold start ahead on its trend" if ahead > base else ""
        if backlog is not None:
            trend = f"; {backlog.why}"
        elif base != load:
            trend = f", {base:.2f} now (a queue drained within {p.window_s:g}s){trend}"
        why = (
            f"load {reading.describe()} over {p.window_s:g}s{trend}, capacity {cap:g}/replica "
            f"({cap_src}){svc}: P(wait > {view.slo_queue_delay_s:g}s) <= {budget:.3g} needs "
            f"{stable}"
        )
        # While the queue grows, nothing is given back (whatever the sizing says).
        keep = view.current if backlog is not None and backlog.growth > 0 else 0
        warm, warm_why = self._prewarm(view, mem, now, load, size)
        if warm > stable:
            why += f"; {warm_why}"
        spare, spare_why = self._spare(view, mem, now, sized, size, queued=queued)
        if spare > max(stable, warm):
            why += f"; {spare_why}"
        quick = w.in_flight(span_s=p.panic_window_s, now=now) if w is not None else None
        short = quick.value if quick is not None else None
        burst = size(short) if short is not None else 0
        if queued:
            burst = stable  # the short mean counts the same queue, which the backlog has sized
        panic_last = mem.get("panic_last")
        over = burst > stable or backlog is not None
        if burst >= p.panic_threshold * max(view.ready, 1) and over:
            mem["panic_last"] = panic_last = now
            mem["panic_max"] = max(int(mem.get("panic_max", 0)), burst)
        elif panic_last is not None and now - float(panic_last) >= p.window_s:
            mem["panic_last"] = panic_last = None
            mem["panic_max"] = 0
        if panic_last is not None:
            desired = max(stable, warm, spare, burst, int(mem.get("panic_max", 0)), view.current)
            return Proposal(
                policy=self.name,
                kind=ProposalKind.DEMAND,
                reason="panic",
                message=f"panic: {short:.2f} in flight over {p.panic_window_s:g}s wants {burst}; "
                f"no scale-down while panicking ({why}) -> {desired}",
                replicas=desired,
                memory=mem,
            )
        if spare > max(stable, warm):
            return Proposal(
                policy=self.name,
                kind=ProposalKind.DEMAND,
                reason="burst_headroom",
                message=f"{why} -> {max(spare, keep)}",
                replicas=max(spare, keep),
                memory=mem,
            )
        if warm > stable:
            return Proposal(
                policy=self.name,
                kind=ProposalKind.DEMAND,
                reason="prewarm",
                message=f"{why} -> {max(warm, keep)}",
                replicas=max(warm, keep),
                memory=mem,
            )
        if stable == 0 and view.floor == 0:
            zero = self._idle_to_zero(view, mem, now)
            if zero is not None:
                return Proposal(
                    policy=self.name,
                    kind=ProposalKind.DEMAND,
                    reason="idle_to_zero",
                    message=zero,
                    replicas=0,
                    memory=mem,
                )
        return Proposal(
            policy=self.name,
            kind=ProposalKind.DEMAND,
            reason="slo_target",
            message=why + (f"; the queue grows: keeps {keep}" if keep > stable else ""),
            replicas=max(stable, 1, keep),
            memory=mem,
        )

    def _prewarm(
        self,
        view: EndpointView,
        mem: dict[str, Any],
        now: float,
        load: float,
        size: Any,
    ) -> tuple[int, str]:
        """Replicas for today's load plus the rise that recurred at this phase one cold start
        ahead (0 when nothing recurred or pre-warm is off), and why."""
        p = self.params
        if not p.prewarm or view.history is None:
            return 0, ""
        lead = self._cold_start(view, mem) + p.prewarm_margin_s
        fc = forecast_rise(view.history, now=now, lead_s=lead, confirm=p.prewarm_confirm)
        if fc is None:
            return 0, ""
        want = int(size(load + fc.rise))
        cap = p.prewarm_max_replicas
        capped = cap is not None and want > cap
        want = min(want, cap) if cap is not None else want
        note = f" (capped at prewarm_max_replicas {cap})" if capped else ""
        return want, (
            f"pre-warm: {fc.describe()} within {lead:.0f}s (cold start + margin): "
            f"{load + fc.rise:.2f} needs {want}{note}"
        )

    def _spare(
        self,
        view: EndpointView,
        mem: dict[str, Any],
        now: float,
        load: float,
        size: Any,
        *,
        queued: bool,
    ) -> tuple[int, str]:
        """Replicas for the load plus the largest recent burst beyond Poisson (faded by age), in
        requests in flight (its excess arrivals per second x the service time, by Little's law
        while nothing queues), and why; 0 when off, or no burst or service time is known yet."""
        p = self.params
        w = view.window
        latest = w.latest if w is not None else None
        if not p.burst_headroom or w is None or latest is None or latest.pending is None:
            return 0, ""
        self._note_arrivals(mem, w, latest.at, float(latest.pending), now, load, queued=queued)
        svc = mem.get("burst_service_s")
        head, top = burst_headroom(
            mem.get("bursts", []),
            now=now,
            bucket_s=BURST_BUCKET_S,
            half_life_s=p.burst_half_life_s,
        )
        if svc is None or head <= 0:
            return 0, ""
        extra = head * float(svc)
        want = int(size(load + extra))
        return want, (
            f"burst headroom: +{head:.2f}/s beyond Poisson (largest {top:.2f}/s in "
            f"{p.burst_lookback_s:g}s, half-life {p.burst_half_life_s:g}s) x service "
            f"{float(svc):.2f}s = +{extra:.2f} in flight: {load + extra:.2f} needs {want}"
        )

    def _note_arrivals(
        self,
        mem: dict[str, Any],
        w: Any,
        at: float,
        pending: float,
        now: float,
        load: float,
        *,
        queued: bool,
    ) -> None:
        """Fold the newest scrape interval's arrivals (served + the pending gauge's change) into
        the record: the interval at the centre of `burst_context_s` gets its burst excess, and the
        service time is re-read by Little's law (window load / arrival rate) while nothing
        queues."""
        p = self.params
        prev = mem.get("burst_prev")
        ticks = [
            [float(t), float(n), float(d)]
            for t, n, d in mem.get("arrivals", [])
            if now - float(t) < p.burst_context_s
        ]
        mem["burst_prev"] = [at, pending]
        if prev is None or at <= float(prev[0]) or at > now:
            mem["arrivals"] = ticks
            return
        dt = at - float(prev[0])
        rate = w.request_rate(span_s=now - float(prev[0]) + 1e-3, now=now)
        if rate is None:
            mem["arrivals"] = ticks
            return
        ticks.append([at, max(0.0, rate * dt + pending - float(prev[1])), dt])
        mem["arrivals"] = ticks
        recent = [(n, d) for t, n, d in ticks if now - t < p.window_s]
        span = sum(d for _, d in recent)
        arriving = sum(n for n, _ in recent) / span if span > 0 else 0.0
        if not queued and arriving > 0 and load > 0:
            old = mem.get("burst_service_s")
            s = load / arriving
            mem["burst_service_s"] = s if old is None else 0.8 * float(old) + 0.2 * s
        if len(ticks) < 5 or ticks[-1][0] - ticks[0][0] < p.burst_context_s / 2:
            return
        mid = min(range(len(ticks)), key=lambda i: abs(ticks[i][0] - (now - p.burst_context_s / 2)))
        excess = burst_excess([n for _, n, _ in ticks], [d for _, _, d in ticks], mid, p.burst_z)
        oldest = math.floor((now - p.burst_lookback_s) / BURST_BUCKET_S) + 1
        mem["bursts"] = fold_peak(
            mem.get("bursts", []),
            bucket=math.floor(ticks[mid][0] / BURST_BUCKET_S),
            value=excess,
            oldest=oldest,
        )

    def _backlog(
        self, view: EndpointView, mem: dict[str, Any], now: float, cap: float
    ) -> Backlog | None:
        """The load to size for while requests queue beyond what the ready replicas serve, or
        None (no queue, no pending gauge, no replica ready or nothing completed to measure the
        drain by: the load as read is used).

        A queue of q requests is not q requests to serve at once: the replicas started for it
        are ready a cold start L from now, and by then the queue is q + g L (g: the pending
        gauge's growth per second; it is negative once the burst is over and the ready replicas
        drain it). What they must carry is the arrivals (completions + g per second) plus what
        remains, drained within `drain_s`; a replica completes `rate / ready` per second when
        full (the replicas are full while there is a queue; `ready` averaged over the span the
        rate is taken on), so the replicas needed are (arrivals + remaining / drain_s) /
        (rate / ready), i.e. that x capacity in flight. A
        2-minute burst that is over before any replica is ready asks for the few that drain its
        backlog, not the ceiling. Bounded by all that is pending a cold start ahead served at
        once."""
        p = self.params
        w = view.window
        latest = w.latest if w is not None else None
        if w is None or latest is None or latest.pending is None:
            return None
        kept = mem.get("pending", [])
        seen = [[float(x) for x in e] for e in kept if len(e) == 3 and now - e[0] < p.window_s]
        if not seen or seen[-1][0] < latest.at:
            seen.append([latest.at, float(latest.pending), float(view.ready)])
        mem["pending"] = seen
        queue = latest.pending - view.ready * cap
        if not p.backlog or queue <= 0 or view.ready < 1:
            return None
        answered = w.request_rate(span_s=p.window_s, now=now)
        if answered is None:
            return None
        rate = answered - (w.request_rate(span_s=p.window_s, now=now, status_class="5xx") or 0.0)
        if rate <= 0:  # 503s at the proxy were never served: they measure no drain
            return None
        growth = _slope([[t, v] for t, v, _ in seen])
        cold = self._cold_start(view, mem)
        remain = max(0.0, queue + growth * cold)
        arrivals = max(0.0, rate + growth)
        # the completions over the span were the work of the replicas ready then, not now
        per_replica = rate / max(1.0, sum(r for _, _, r in seen) / len(seen))
        need = cap * (arrivals + remain / p.drain_s) / per_replica
        # Bounded: never more than every request pending a cold start ahead served at once (a
        # rate read from a handful of completions, a replica just ready, must not ask for more).
        most = latest.pending + max(0.0, growth) * cold
        load = min(need, most)
        return Backlog(
            load=load,
            growth=growth,
            why=(
                f"backlog: {queue:.0f} queued beyond {view.ready} x {cap:g} served, "
                f"{growth:+.2f}/s; {remain:.0f} left one cold start ({cold:.0f}s) ahead, "
                f"drained within {p.drain_s:g}s at {per_replica:.2f}/s per replica with "
                f"{arrivals:.2f}/s arriving: {load:.2f} in flight"
                + (f" (at most the {most:.0f} pending then)" if need > most else "")
            ),
        )

    def _ahead(self, mem: dict[str, Any], now: float, load: float, lead_s: float) -> float:
        """The load one cold start ahead on its rising trend (least squares over `trend_s` of
        the window means); the load itself when not rising or with too little history."""
        p = self.params
        hist = [[float(t), float(v)] for t, v in mem.get("loads", []) if now - float(t) < p.trend_s]
        hist.append([now, load])
        mem["loads"] = hist
        if lead_s <= 0 or len(hist) < 4 or hist[-1][0] - hist[0][0] < p.trend_s / 2:
            return load
        n = len(hist)
        mt = sum(t for t, _ in hist) / n
        mv = sum(v for _, v in hist) / n
        var = sum((t - mt) ** 2 for t, _ in hist)
        if var <= 0:
            return load
        slope = sum((t - mt) * (v - mv) for t, v in hist) / var
        return load + max(0.0, slope) * lead_s

    def _idle_to_zero(self, view: EndpointView, mem: dict[str, Any], now: float) -> str | None:
        """A message when the endpoint has been idle past the break-even timeout, else None."""
        since = mem.get("idle_since")
        if since is None:
            return None
        idle = now - float(since)
        cold = self._cold_start(view, mem)
        history = mem.get("gaps", [])
        gaps = [[float(g[0]), float(g[1])] for g in history]
        requests = sum(float(g[2]) for g in history) + float(mem.get("busy_requests", 0.0))
        budget = (1.0 - view.slo_attainment) * self.params.safety
        tau = idle_timeout(
            gaps,
            cold_start_s=cold,
            miss_budget=budget,
            requests=requests,
            min_idle_s=self.params.min_idle_s,
        )
        if tau is None or idle < tau:
            return None
        return (
            f"idle for {idle:.0f}s >= break-even {tau:.0f}s over {len(gaps)} observed gap(s) "
            f"(cold start {cold:.0f}s; wake misses within {budget:.3g} of "
            f"{requests:.0f} requests) -> 0"
        )
