"""Right-sizing: the cheapest instance that still meets the endpoint's SLO, recommended (and, on
opt-in, applied in a maintenance window).

The policy never moves replicas: every tick it proposes *no opinion* (so it can never block or
cause a scaling action) and records, in its own memory, what the instance question needs from the
feed: the hourly peak of GPU memory use (percent of the replica's accelerator memory) and the
hourly mean GPU use (over the hour's ticks), tagged with the instance they were measured on (a
percent means nothing on another instance, so a change of instance starts the record again).

Choosing is pure too (`choose`): handed the candidates' replayed results (`Evaluation`: each
candidate instance's cost per month and SLO attainment from replaying the endpoint's recorded
traffic through the simulator with that instance's capacity, `controller.backtest.rightsize`), it
keeps the cheapest meeting the SLO, and recommends it when it saves at least `min_saving_usd_month`
over the current instance's replay. The replays and the update itself are done outside the
policy (the backtest and the daemon's `controller.daemon.rightsize`), as for the autopilot.

The model's size is handed in, never fetched here: `model_memory_gb` when configured, else the
Hub's (`controller.platform.hub`, read by the daemon or the command line), else the feed's peak.
The policy records the endpoint's `model.repository` / `revision` in its memory for that lookup.

Reason codes: `observing` (memory and use recorded), `no_data` (no GPU memory or use series in the
window: nothing recorded this tick; still a valid, opinion-less proposal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies.base import EndpointView, Proposal, ProposalKind
from policies.schedule import ScheduleParams, SchedulePolicy, ScheduleWindow

__all__ = [
    "Evaluation",
    "MaintenanceWindow",
    "Recommendation",
    "RightSizingParams",
    "RightSizingPolicy",
    "choose",
    "in_maintenance",
    "observed",
    "params_from",
]

HOUR_S = 3600.0


class MaintenanceWindow(BaseModel):
    """When an update may start, in the schedule policy's syntax (cron + duration_s, or days /
    start / end), without effects."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    cron: str | None = None
    duration_s: float | None = Field(None, gt=0, le=7 * 86_400)
    days: list[str] | None = None
    start: str | None = None
    end: str | None = None

    def as_schedule_window(self) -> ScheduleWindow:
        return ScheduleWindow(**self.model_dump(exclude_none=True), state="running")

    @model_validator(mode="after")
    def _valid(self) -> Self:
        self.as_schedule_window()  # the schedule's own checks, one message per problem
        return self


class RightSizingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    apply: bool = Field(
        False, description="Issue the update (in a maintenance window); off: recommend only."
    )
    timezone: str = Field("UTC", description="IANA time zone the maintenance windows are read in.")
    maintenance: list[MaintenanceWindow] = Field(
        default_factory=list,
        description="Windows an update may start in (schedule syntax); required with apply.",
    )
    headroom: float = Field(
        0.2,
        ge=0,
        le=10,
        description="Memory beyond the model's, as a share of it, a candidate must have (KV "
        "cache, activations).",
    )
    model_memory_gb: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="The model's memory (weights) in GB; set, it wins over the feed's GPU memory.",
    )
    tp_efficiency: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Share of n cards' bandwidth a replica sharded over n > 1 cards gets.",
    )
    max_concurrency_ratio: float = Field(
        4.0,
        ge=1,
        le=1000,
        description="Most a candidate's batch may grow over the current's with its KV memory.",
    )
    throughput: dict[str, float] = Field(
        default_factory=dict,
        description="Instance type -> relative per-card throughput, replacing the bandwidth "
        "ratio (measured figures).",
    )
    instance_types: list[str] | None = Field(
        None, description="Only these instance types are candidates (unset: all of the vendor's)."
    )
    max_candidates: int = Field(
        6,
        ge=1,
        le=100,
        description="Instances replayed per evaluation besides the current one, cheapest first.",
    )
    min_saving_usd_month: float = Field(
        10.0, ge=0, le=1e9, description="Recommend only a change saving at least this per month."
    )
    service_cv: float | None = Field(
        None,
        ge=0,
        le=20,
        description="Spread (coefficient of variation) of one request's service time in the "
        "replay; unset: estimated from the recorded minutes.",
    )
    max_service_cv: float = Field(
        3.0,
        ge=0,
        le=20,
        description="Most spread the estimate from the recorded minutes is trusted to.",
    )
    history_days: float = Field(
        7.0, gt=0, le=90, description="Recorded traffic replayed per evaluation, days."
    )
    interval_s: float = Field(
        86_400.0, ge=60, le=30 * 86_400, description="Seconds between evaluations."
    )
    min_change_interval_s: float = Field(
        7 * 86_400.0,
        ge=0,
        le=365 * 86_400,
        description="No instance change sooner than this after the last one (or a rollback).",
    )
    update_timeout_s: float = Field(
        3600.0,
        gt=0,
        le=86_400,
        description="An update not running within this is a failed start (rolled back).",
    )
    probation_s: float = Field(
        3600.0,
        ge=0,
        le=30 * 86_400,
        description="After the new instance runs, the live SLO is checked over this; missing it "
        "rolls back.",
    )
    min_busy_minutes: int = Field(
        60, ge=1, le=1_000_000, description="Recorded minutes with requests before evaluating."
    )
    observe_hours: int = Field(
        168, ge=1, le=24 * 90, description="Hourly GPU memory / use observations kept."
    )

    @model_validator(mode="after")
    def _apply_needs_window(self) -> Self:
        ScheduleParams(timezone=self.timezone, default={"state": "running"})  # checks the zone
        if self.apply and not self.maintenance:
            raise ValueError("apply: true needs at least one maintenance window")
        return self


def params_from(policies: Mapping[str, Any]) -> RightSizingParams | None:
    """An endpoint's `right_sizing` parameters from its `policies`; None when it does not run it."""
    if "right_sizing" not in policies:
        return None
    return RightSizingParams.model_validate(policies["right_sizing"] or {})


def in_maintenance(params: RightSizingParams, now: float) -> bool:
    """Whether `now` falls in one of the maintenance windows."""
    if not params.maintenance:
        return False
    sched = SchedulePolicy(
        ScheduleParams(
            timezone=params.timezone,
            windows=[w.as_schedule_window() for w in params.maintenance],
            prewarm_s=0,
        )
    )
    return any(o.start <= now < o.end and not o.holiday for o in sched.occurrences(now))


def observed(memory: Mapping[str, Any], instance: str) -> tuple[float | None, float | None]:
    """(peak GPU memory %, mean GPU use %) recorded on `instance`; None where nothing was."""
    if memory.get("instance") != instance:
        return None, None
    peaks = [float(v) for v in (memory.get("gpu_memory_peak") or {}).values()]
    uses = [s / n for s, n in (memory.get("gpu_use") or {}).values() if n]
    return (max(peaks) if peaks else None), (sum(uses) / len(uses) if uses else None)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One candidate instance replayed over the endpoint's recorded traffic."""

    instance: str  # vendor/type/size
    usd_per_hour: float
    memory_gb: float
    speed: float  # relative throughput per replica vs the current instance
    concurrency: int
    cost_month_usd: float
    slo_attainment: float
    meets_slo: bool
    mean_replicas: float
    peak_replicas: int
    current: bool = False
    service_s: float = 0.0  # per request, as replayed


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What right-sizing says for one endpoint, with its evidence."""

    key: str
    at: float
    action: str  # "change" or "keep"
    current: str
    best: str | None  # the recommended instance (None: keep)
    saving_month_usd: float  # current's replayed cost per month - best's (0 when keep)
    reason: str
    evaluations: tuple[Evaluation, ...] = ()
    model_gb: float | None = None
    # where model_gb came from: "model_memory_gb" (config), "hub" (the Hub's safetensors
    # parameter counts) or "feed" (the peak GPU memory observed); "" when unknown
    model_source: str = ""

    def explain(self) -> str:
        head = (
            f"right-sizing: {self.current} -> {self.best}, saves ${self.saving_month_usd:,.2f}/mo"
            if self.action == "change"
            else f"right-sizing: keep {self.current}"
        )
        return f"{head}; {self.reason}"


def choose(
    key: str,
    evals: Sequence[Evaluation],
    params: RightSizingParams,
    *,
    at: float,
    model_gb: float | None = None,
) -> Recommendation:
    """The cheapest candidate meeting the SLO on the replay; keep unless it saves at least
    `min_saving_usd_month` over the current instance's own replay."""
    cur = next((e for e in evals if e.current), None)
    current = cur.instance if cur is not None else "?"

    def keep(reason: str) -> Recommendation:
        return Recommendation(key, at, "keep", current, None, 0.0, reason, tuple(evals), model_gb)

    if cur is None:
        return keep("the current instance was not replayed")
    meeting = [e for e in evals if e.meets_slo]
    if not meeting:
        return keep("no candidate, the current instance included, met the SLO on the replay")
    best = min(meeting, key=lambda e: (e.cost_month_usd, -e.slo_attainment, e.instance))
    if best.current:
        return keep("the current instance is the cheapest meeting the SLO on the replay")
    saving = cur.cost_month_usd - best.cost_month_usd
    if saving < params.min_saving_usd_month:
        return keep(
            f"{best.instance} would save ${saving:,.2f}/mo, under min_saving_usd_month "
            f"(${params.min_saving_usd_month:g})"
        )
    return Recommendation(
        key,
        at,
        "change",
        current,
        best.instance,
        saving,
        f"cheapest meeting the SLO on the replay ({100 * best.slo_attainment:.2f}% vs the "
        f"current's {100 * cur.slo_attainment:.2f}%)",
        tuple(evals),
        model_gb,
    )


class RightSizingPolicy:
    name: ClassVar[str] = "right_sizing"
    Params: ClassVar[type[BaseModel]] = RightSizingParams

    def __init__(self, params: BaseModel) -> None:
        assert isinstance(params, RightSizingParams)
        self.params = params

    def propose(self, view: EndpointView, now: float) -> Proposal:
        ep = view.endpoint
        instance = f"{ep.provider.vendor}/{ep.compute.instance_type}/{ep.compute.instance_size}"
        mem = dict(view.memory)
        if mem.get("instance") != instance:
            mem = {"instance": instance, "gpu_memory_peak": {}, "gpu_use": {}}
        # what the endpoint serves, so that `governor rightsize` can ask the Hub its size
        mem["model"] = {"repository": ep.model.repository, "revision": ep.model.revision}
        w = view.window
        hour = str(math.floor(now / HOUR_S))
        span = HOUR_S if w is None else min(HOUR_S, w.retention_s)
        peak = None if w is None else w.max("gpu_memory", span_s=span, now=now)
        use = None if w is None else w.mean("gpu", span_s=span, now=now)
        if peak is None and use is None:
            return Proposal(
                policy=self.name,
                kind=ProposalKind.NO_OPINION,
                reason="no_data",
                message="no GPU memory or GPU use series in the window: nothing recorded",
                memory=mem,
            )
        keep_from = math.floor(now / HOUR_S) - self.params.observe_hours
        peaks = {
            h: v for h, v in dict(mem.get("gpu_memory_peak") or {}).items() if int(h) > keep_from
        }
        if peak is not None:
            peaks[hour] = max(peak, peaks.get(hour, peak))
        # per hour: [sum, count] of the tick readings, so the hour's mean is over all its ticks
        uses = {h: v for h, v in dict(mem.get("gpu_use") or {}).items() if int(h) > keep_from}
        if use is not None:
            s, n = uses.get(hour, (0.0, 0))
            uses[hour] = [s + use, n + 1]
        mem["gpu_memory_peak"], mem["gpu_use"] = peaks, uses
        peak_all, use_all = observed(mem, instance)
        parts = []
        if peak_all is not None:
            parts.append(f"peak GPU memory {peak_all:.0f}%")
        if use_all is not None:
            parts.append(f"mean GPU use {use_all:.0f}%")
        return Proposal(
            policy=self.name,
            kind=ProposalKind.NO_OPINION,
            reason="observing",
            message=f"on {instance}: " + ", ".join(parts) + " (recorded for right-sizing)",
            memory=mem,
        )
