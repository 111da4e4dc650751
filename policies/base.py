"""The policy protocol: an immutable endpoint view and a clock time in, one explained proposal out.

Policies do no I/O and read no clock; `now` is passed in and metric windows are already in memory.
A proposal is either *demand* (a replica count) or a *constraint* (bounds, a scale-to-zero timeout
or a state); the combiner in `controller.core` turns all of them into one decision.

Context beyond the endpoint itself (how long it has been in its state, whether Governor paused it,
GPU quota and the other endpoints competing for it, spend) is filled in by the loop. Every such
field has a default meaning "unknown", and a policy that needs it says so (`no_data`) rather than
guess.

One rule binds every policy: **never resume a pause made by a person.** A proposal with
`state="running"` for a paused endpoint is only allowed when `view.paused_by_governor` is set;
`may_resume(view)` is the check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from controller.platform.models import AnyEndpoint, EndpointState
from controller.platform.windows import EndpointWindow

__all__ = [
    "DemandHistory",
    "EndpointView",
    "FleetMember",
    "Policy",
    "Proposal",
    "ProposalKind",
    "QuotaView",
    "SpendView",
    "State",
    "may_resume",
    "pause_record",
]

State = Literal["paused", "running"]


class ProposalKind(StrEnum):
    DEMAND = "demand"
    CONSTRAINT = "constraint"
    NO_OPINION = "no_opinion"


@dataclass(frozen=True, slots=True)
class QuotaView:
    """The accelerator quota group this endpoint draws from (namespace, vendor, accelerator kind).

    `used_accelerators` counts every endpoint of the group the way the platform does (replicas of
    running/initializing endpoints, `maxReplica` of scaled-to-zero ones, nothing for paused ones);
    `held_accelerators` is this endpoint's part of it. `limit_accelerators` is None when unknown.
    """

    namespace: str
    vendor: str
    accelerator: str
    used_accelerators: int
    limit_accelerators: int | None
    accelerators_per_replica: int = 1
    held_accelerators: int = 0

    @property
    def free_accelerators(self) -> int | None:
        """Accelerators still free in the group (None when the limit is unknown)."""
        if self.limit_accelerators is None:
            return None
        return max(0, self.limit_accelerators - self.used_accelerators)


@dataclass(frozen=True, slots=True)
class FleetMember:
    """One managed endpoint of a quota group, as arbitration needs to see it.

    `short_accelerators` is how many more accelerators it needs than the quota leaves it (its
    scale-up or resume is blocked; 0 when not blocked). `idle_since` is since when it has served
    nothing (None while it serves or when unknown): the loop takes it from the member's
    `pause_to_free_quota` memory (`idle_since`), or from `state_since` for a scaled-to-zero member.
    `reclaimable` says it opted in to being paused for others (it runs `pause_to_free_quota` with
    `arbitration: true`).
    """

    key: str
    priority: int
    state: str
    held_accelerators: int
    short_accelerators: int = 0
    idle_since: float | None = None
    reclaimable: bool = False


@dataclass(frozen=True, slots=True)
class SpendView:
    """The most pressing budget covering this endpoint, as the cost ledger sees it.

    `level` is `controller.cost.budget.BudgetLevel` as an int (0 ok, 1 alert, 2 degrade, 3 hard);
    money is None when unknown (an unpriced instance).
    """

    scope: str
    period: str
    level: int
    cap_usd: float
    spend_usd: float | None = None
    forecast_usd: float | None = None


@dataclass(frozen=True, slots=True)
class DemandHistory:
    """The endpoint's own recorded demand at the same phase of earlier periods (the forecast's
    input): for each lag (an hour, two, a day, a week ago...), the in-flight load of each minute
    from `now - lag` on, over the next `len(loads)` minutes.

    `lags` pairs a lag in seconds with its per-minute loads (mean requests served at once, the
    queue of a backlog excluded; None for a minute with no record). The loop builds it from the
    state store's per-minute demand (`daemon.store`), the backtest from the demand recorded
    during the replay itself, so a forecast never sees the future. `recorded_s` is how far back
    the record goes from `now`: a lag beyond it is unknown, not quiet.
    """

    at: float
    lags: tuple[tuple[float, tuple[float | None, ...]], ...] = ()
    recorded_s: float = 0.0


@dataclass(frozen=True, slots=True)
class EndpointView:
    """What a policy may know about one endpoint at one tick.

    `window` holds the scraped samples (read it with `now`); `current` is the replica count the
    platform is moving to (`status.targetReplica`), `ready` the replicas serving now.
    `memory` is this policy's own state from the previous tick (empty at first).

    Context (the defaults mean "unknown"):
    - `state_since`: when the endpoint entered its current state (epoch seconds).
    - `paused_by_governor`: Governor's recorded reason (`pause_record()`, "policy:reason") if
      Governor paused it; None if a person paused it or it is not paused.
    - `priority`: this endpoint's arbitration priority (configured; higher keeps its quota).
    - `quota`: its accelerator quota group.
    - `fleet`: the managed endpoints of that group, *this one included*, so that every endpoint
      sees the same picture and they agree on who yields.
    - `spend`: for the budget policy.
    - `slo_queue_delay_s`, `slo_attainment`: the endpoint's service objective (`slo` setting).
    - `capacity_per_replica`: requests one replica serves at once when configured or told by the
      API (the engine's env); None: a policy learns it (`policies.capacity`).
    - `cold_start_s`: the configured cold start; None: learnt from observed starts.
    - `history`: the recorded demand at earlier periods' same phase (`DemandHistory`); None
      when nothing is recorded (no state store, or demand recording off).
    """

    key: str
    endpoint: AnyEndpoint
    window: EndpointWindow | None
    current: int
    ready: int
    floor: int
    ceiling: int
    memory: Mapping[str, Any] = field(default_factory=dict)
    state_since: float | None = None
    paused_by_governor: str | None = None
    priority: int = 0
    quota: QuotaView | None = None
    fleet: tuple[FleetMember, ...] = ()
    spend: SpendView | None = None
    slo_queue_delay_s: float = 1.0
    slo_attainment: float = 0.99
    capacity_per_replica: float | None = None
    cold_start_s: float | None = None
    history: DemandHistory | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    """One policy's opinion with its reason.

    `reason` is a short snake_case code from the policy's fixed vocabulary (it becomes a metric
    label value); `message` is for humans. `valid=False` means the policy needed data it did not
    have: the combiner then refuses to scale down on the remaining signals.

    A constraint may set `floor`, `ceiling`, `scale_to_zero_timeout_min` and `state`; a field left
    None has no opinion. `priority` orders conflicting constraints of different policies (higher
    wins; None leaves it to the combiner's documented default order).
    """

    policy: str
    kind: ProposalKind
    reason: str
    message: str
    replicas: int | None = None
    floor: int | None = None
    ceiling: int | None = None
    valid: bool = True
    memory: Mapping[str, Any] | None = None
    state: State | None = None
    scale_to_zero_timeout_min: int | None = None
    priority: int | None = None


def pause_record(proposal: Proposal) -> str:
    """What the loop records as `paused_by_governor` when `proposal` pauses an endpoint."""
    return f"{proposal.policy}:{proposal.reason}"


def may_resume(view: EndpointView) -> bool:
    """Whether a policy may propose `running`: the endpoint is not paused, or Governor paused it."""
    return view.endpoint.state is not EndpointState.PAUSED or view.paused_by_governor is not None


@runtime_checkable
class Policy(Protocol):
    """A policy class: a name, a pydantic `Params` model, and one pure method."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def __init__(self, params: BaseModel) -> None: ...

    def propose(self, view: EndpointView, now: float) -> Proposal:
        """Return this policy's proposal for `view` at time `now` (epoch seconds)."""
        ...
