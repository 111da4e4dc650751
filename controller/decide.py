"""The pure decision core: an endpoint's view, policies and memory in, one explained decision out.

Fixed pipeline (the order is part of the contract; every step can add a clamp note):

0. **People first**: if the endpoint was changed by someone else since Governor last saw or
   changed it (`status.updatedAt` moved without Governor writing), Governor backs off that endpoint
   for `human_backoff_s` and says so (`human_override`).
1. **Propose**: every policy proposes. *Constraints* (schedule, budget, quota, operator bounds)
   carry floors, ceilings, a scale-to-zero timeout or a state; *demand* carries a replica count.
2. **Hard stop**: a constraint asking for `paused` wins over everything (the first such policy in
   configuration order is named). A paused endpoint is resumed only when a constraint asks for
   `running` *and* Governor paused it itself; a person's pause is never undone.
3. **Gate**: demand is used only for a `running` endpoint with a fresh metrics sample. Without
   fresh data Governor still enforces constraint bounds (they do not depend on metrics) and
   otherwise holds (`stale_metrics`, `no_data`, `not_actionable`).
4. **Demand**: max over valid demand proposals; if any demand policy lacked data, no scale-down
   (`partial_data`).
5. **Stabilise** (HPA semantics): up follows the *lowest* recommendation of the up window, down the
   *highest* of the down window; no scale-down until a full down window was observed running.
6. **Bounds**: floor = max(operator floor, constraint floors), ceiling = min(operator ceiling,
   constraint ceilings); when they cross, the ceiling wins (money and quota are hard limits).
7. **Rate limits**: at most `max_step_up`/`max_step_down` replicas per action and no scaling
   action within `min_action_interval_s` of the previous one (`rate_limited`). A global actions
   per minute budget is applied by the loop across endpoints.
8. **Action**: compare with the current count, the replica bounds and the scale-to-zero timeout.

Nothing here does I/O or reads a clock; `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from controller.models import Endpoint, EndpointState
from controller.settings import EndpointSettings
from policies.base import (
    EndpointView,
    FleetMember,
    Policy,
    Proposal,
    ProposalKind,
    QuotaView,
    SpendView,
)

__all__ = [
    "Action",
    "Decision",
    "EndpointMemory",
    "Reason",
    "decide",
    "defer",
    "target_bounds",
]


class Action(StrEnum):
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    SCALE_TO_ZERO = "scale_to_zero"
    SET_BOUNDS = "set_bounds"
    PAUSE = "pause"
    RESUME = "resume"
    HOLD = "hold"


class Reason(StrEnum):
    """The fixed vocabulary of decision reasons (metric label values)."""

    DEMAND_INCREASE = "demand_increase"
    DEMAND_DECREASE = "demand_decrease"
    WITHIN_RANGE = "within_range"
    BOUNDS_DRIFT = "bounds_drift"
    SCALE_TO_ZERO_TIMEOUT = "scale_to_zero_timeout"
    SCALE_UP_STABILIZED = "scale_up_stabilized"
    SCALE_DOWN_STABILIZED = "scale_down_stabilized"
    BELOW_FLOOR = "below_floor"
    ABOVE_CEILING = "above_ceiling"
    CONSTRAINT_FLOOR = "constraint_floor"
    CONSTRAINT_CEILING = "constraint_ceiling"
    POLICY_PAUSE = "policy_pause"
    POLICY_RESUME = "policy_resume"
    KEPT_PAUSED = "kept_paused"
    HUMAN_PAUSE = "human_pause"
    HUMAN_OVERRIDE = "human_override"
    RATE_LIMITED = "rate_limited"
    PARTIAL_DATA = "partial_data"
    STALE_METRICS = "stale_metrics"
    NO_DATA = "no_data"
    NOT_ACTIONABLE = "not_actionable"
    API_ERROR = "api_error"


Actuation = Literal["pin", "floor"]


@dataclass(frozen=True, slots=True)
class Decision:
    """One endpoint's decision for one tick, explained.

    `desired` is None for a HOLD that makes no claim about the count (stale data, wrong state).
    `bounds` is the (minReplica, maxReplica) the actuator should set, when an action is due;
    `scale_to_zero_timeout` a new timeout in minutes to set with it; `pause_reason` is what
    Governor records as its own reason when it pauses (so only it resumes).
    """

    key: str
    at: float
    action: Action
    reason: Reason
    message: str
    policy: str | None = None
    current: int | None = None
    desired: int | None = None
    bounds: tuple[int, int] | None = None
    clamps: tuple[str, ...] = ()
    proposals: tuple[Proposal, ...] = ()
    scale_to_zero_timeout: int | None = None
    pause_reason: str | None = None

    @property
    def acts(self) -> bool:
        return self.action is not Action.HOLD

    def signature(self) -> tuple[Any, ...]:
        """What makes two decisions 'the same' for change-only logging."""
        return (self.action, self.reason, self.policy, self.current, self.desired, self.clamps)


@dataclass(frozen=True, slots=True)
class EndpointMemory:
    """Per-endpoint state carried between ticks and persisted across restarts."""

    first_seen: float
    recommendations: tuple[tuple[float, int], ...] = ()
    policy_memory: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    last_action_at: float | None = None
    # When the endpoint was last seen entering `running` (None while it is not running): a
    # freshly woken or resumed endpoint gets a full down window before any scale-down.
    running_since: float | None = None
    state: str | None = None
    state_since: float | None = None
    # Governor's own reason when it paused the endpoint; None means "not paused by Governor".
    paused_by_governor: str | None = None
    # `status.updatedAt` (epoch s) as of Governor's last look or write: a newer one is a person.
    last_known_update: float | None = None
    backoff_until: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "first_seen": self.first_seen,
            "recommendations": [list(r) for r in self.recommendations],
            "policy_memory": {k: dict(v) for k, v in self.policy_memory.items()},
            "last_action_at": self.last_action_at,
            "running_since": self.running_since,
            "state": self.state,
            "state_since": self.state_since,
            "paused_by_governor": self.paused_by_governor,
            "last_known_update": self.last_known_update,
            "backoff_until": self.backoff_until,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EndpointMemory:
        return cls(
            first_seen=float(data["first_seen"]),
            recommendations=tuple((float(t), int(n)) for t, n in data.get("recommendations", [])),
            policy_memory={k: dict(v) for k, v in data.get("policy_memory", {}).items()},
            last_action_at=data.get("last_action_at"),
            running_since=data.get("running_since"),
            state=data.get("state"),
            state_since=data.get("state_since"),
            paused_by_governor=data.get("paused_by_governor"),
            last_known_update=data.get("last_known_update"),
            backoff_until=data.get("backoff_until"),
        )


def target_bounds(desired: int, *, ceiling: int, mode: Actuation) -> tuple[int, int]:
    """The (minReplica, maxReplica) that realise `desired` in the chosen actuation mode.

    maxReplica can never be 0 on the platform, so zero is expressed as min 0 plus scale-to-zero.
    """
    if mode == "pin":
        return (desired, max(desired, 1))
    return (desired, max(ceiling, desired, 1))


def defer(decision: Decision, why: str) -> Decision:
    """Turn an action into a HOLD (global rate limit): same explanation plus why it waits."""
    return replace(
        decision,
        action=Action.HOLD,
        reason=Reason.RATE_LIMITED,
        bounds=None,
        scale_to_zero_timeout=None,
        pause_reason=None,
        message=f"{decision.message}; deferred: {why}",
    )


def _hold(key: str, now: float, reason: Reason, message: str, **kw: Any) -> Decision:
    return Decision(key=key, at=now, action=Action.HOLD, reason=reason, message=message, **kw)


def _ts(endpoint: Endpoint) -> float:
    return endpoint.status.updated_at.timestamp()


def _track(mem: EndpointMemory, endpoint: Endpoint, now: float) -> EndpointMemory:
    """Bookkeeping independent of policies: state changes, running-since, updatedAt."""
    st = endpoint.state.value
    if mem.state != st:
        mem = replace(mem, state=st, state_since=now)
    if endpoint.state is EndpointState.RUNNING:
        if mem.running_since is None:
            mem = replace(mem, running_since=now)
    else:
        mem = replace(mem, running_since=None)
    if mem.last_known_update is None:
        mem = replace(mem, last_known_update=_ts(endpoint))
    return mem


def decide(
    endpoint: Endpoint,
    policies: Sequence[Policy],
    memory: EndpointMemory | None,
    *,
    now: float,
    settings: EndpointSettings,
    window: Any,
    feed_error: str | None = None,
    max_age_s: float = 60.0,
    mode: Actuation = "pin",
    quota: QuotaView | None = None,
    fleet: tuple[FleetMember, ...] = (),
    spend: SpendView | None = None,
    identity: str | None = None,
) -> tuple[Decision, EndpointMemory]:
    """Decide for one endpoint at `now`; returns the decision and the successor memory.

    `identity` is the API user Governor acts as (learnt from its own writes), so its own past
    changes are never mistaken for a person's.
    """
    key = endpoint.key
    mem = _track(memory or EndpointMemory(first_seen=now), endpoint, now)
    status = endpoint.status
    state = endpoint.state
    current = status.target_replica
    scaling = endpoint.compute.scaling

    # 0. People first.
    updated = _ts(endpoint)
    who = status.updated_by.name if status.updated_by else "someone"
    if updated > (mem.last_known_update or 0) + 1e-3 and identity is not None and who == identity:
        mem = replace(mem, last_known_update=updated)
    if mem.last_known_update is not None and updated > mem.last_known_update + 1e-3:
        mem = replace(
            mem,
            last_known_update=updated,
            backoff_until=now + settings.human_backoff_s,
            paused_by_governor=None,
        )
        return _hold(
            key,
            now,
            Reason.HUMAN_OVERRIDE,
            f"changed by {who} since Governor's last look; hands off for "
            f"{settings.human_backoff_s:g}s",
            current=current,
        ), mem
    if mem.backoff_until is not None and now < mem.backoff_until:
        return _hold(
            key,
            now,
            Reason.HUMAN_OVERRIDE,
            f"recently changed by a person; hands off for another {mem.backoff_until - now:.0f}s",
            current=current,
        ), mem

    # 1. Propose.
    view = EndpointView(
        key=key,
        endpoint=endpoint,
        window=window,
        current=current,
        ready=status.ready_replica,
        floor=settings.floor,
        ceiling=settings.ceiling,
        state_since=mem.state_since,
        paused_by_governor=mem.paused_by_governor,
        priority=settings.priority,
        quota=quota,
        fleet=fleet,
        spend=spend,
    )
    proposals: list[Proposal] = []
    new_policy_memory = dict(mem.policy_memory)
    for pol in policies:
        prop = pol.propose(replace(view, memory=mem.policy_memory.get(pol.name, {})), now)
        proposals.append(prop)
        if prop.memory is not None:
            new_policy_memory[pol.name] = dict(prop.memory)
    mem = replace(mem, policy_memory=new_policy_memory)
    props = tuple(proposals)
    constraints = [p for p in proposals if p.kind is ProposalKind.CONSTRAINT and p.valid]

    # 2. Hard stop, and resuming Governor's own pauses only.
    pausers = [p for p in constraints if p.state == "paused"]
    if pausers:
        w = pausers[0]
        if state is EndpointState.PAUSED:
            return _hold(
                key,
                now,
                Reason.KEPT_PAUSED,
                f"{w.policy}: {w.message}",
                policy=w.policy,
                current=current,
                proposals=props,
            ), mem
        if state in (
            EndpointState.RUNNING,
            EndpointState.SCALED_TO_ZERO,
            EndpointState.INITIALIZING,
        ):
            return Decision(
                key=key,
                at=now,
                action=Action.PAUSE,
                reason=Reason.POLICY_PAUSE,
                message=f"{w.policy}: {w.message}",
                policy=w.policy,
                current=current,
                desired=0,
                proposals=props,
                pause_reason=f"{w.policy}:{w.reason}",
            ), mem
    if state is EndpointState.PAUSED:
        runners = [p for p in constraints if p.state == "running"]
        if runners and mem.paused_by_governor:
            w = runners[0]
            return Decision(
                key=key,
                at=now,
                action=Action.RESUME,
                reason=Reason.POLICY_RESUME,
                message=f"{w.policy}: {w.message} (Governor paused it: {mem.paused_by_governor})",
                policy=w.policy,
                current=current,
                proposals=props,
            ), mem
        if not mem.paused_by_governor:
            return _hold(
                key,
                now,
                Reason.HUMAN_PAUSE,
                "paused by a person; Governor never resumes it",
                current=current,
                proposals=props,
            ), mem
        return _hold(
            key,
            now,
            Reason.KEPT_PAUSED,
            f"paused by Governor ({mem.paused_by_governor}); nothing asks to resume",
            current=current,
            proposals=props,
        ), mem
    if state is not EndpointState.RUNNING:
        return _hold(
            key,
            now,
            Reason.NOT_ACTIONABLE,
            f"endpoint is {state.value}",
            current=current,
            proposals=props,
        ), mem

    # 6 (computed early: the gate needs it). Effective bounds from operator and constraints.
    floor, floor_by = settings.floor, None
    ceiling, ceiling_by = settings.ceiling, None
    for p in constraints:
        if p.floor is not None and p.floor > floor:
            floor, floor_by = p.floor, p
        if p.ceiling is not None and p.ceiling < ceiling:
            ceiling, ceiling_by = p.ceiling, p
    notes: list[str] = []
    clamps: list[str] = []
    if floor > ceiling:
        notes.append(f"floor {floor} above ceiling {ceiling}: the ceiling wins")
        floor, floor_by = ceiling, ceiling_by
    stz = next((p for p in constraints if p.scale_to_zero_timeout_min is not None), None)

    # 3. Gate demand on fresh data.
    stale: tuple[Reason, str] | None = None
    latest = window.latest if window is not None else None
    if feed_error is not None:
        stale = (Reason.STALE_METRICS, f"metrics feed unusable: {feed_error}")
    elif latest is None:
        stale = (Reason.NO_DATA, "no metrics sample yet")
    elif now - latest.at > max_age_s:
        stale = (
            Reason.STALE_METRICS,
            f"latest sample is {now - latest.at:.0f}s old (max {max_age_s:g}s)",
        )

    demand = [
        p for p in proposals if p.kind is ProposalKind.DEMAND and p.valid and p.replicas is not None
    ]
    invalid = [p for p in proposals if p.kind is ProposalKind.DEMAND and not p.valid]
    reason: Reason | None = None
    winner: Proposal | None = None
    if stale is not None or not demand:
        if stale is None:
            why = "; ".join(f"{p.policy}: {p.message}" for p in invalid) or "no demand policy"
            stale = (Reason.NO_DATA, why)
        # Constraints do not depend on metrics: still enforce them, nothing else.
        if floor <= current <= ceiling and stz is None:
            return _hold(key, now, stale[0], stale[1], current=current, proposals=props), mem
        raw = current
        notes.append(stale[1] + "; enforcing constraints only")
    else:
        winner = max(demand, key=lambda p: p.replicas or 0)
        raw = int(winner.replicas or 0)
        notes.append(f"{winner.policy}: {winner.message}")
        if invalid and raw < current:
            notes.append(f"no scale-down on partial data ({', '.join(p.policy for p in invalid)})")
            raw, reason = current, Reason.PARTIAL_DATA
            clamps.append("partial_data")

    # 5. Stabilise over the recommendation history (only real demand is recorded).
    desired = raw
    if winner is not None:
        horizon = max(settings.scale_up_stabilization_s, settings.scale_down_stabilization_s)
        recs = (*(r for r in mem.recommendations if r[0] > now - horizon), (now, raw))
        mem = replace(mem, recommendations=recs)
        if raw > current and settings.scale_up_stabilization_s > 0:
            lo = min(n for t, n in recs if t > now - settings.scale_up_stabilization_s)
            if lo < raw:
                desired = max(current, lo)
                clamps.append("scale_up_stabilized")
                reason = Reason.SCALE_UP_STABILIZED
                notes.append(f"up-window minimum {lo} ({settings.scale_up_stabilization_s:g}s)")
        elif raw < current:
            down = settings.scale_down_stabilization_s
            observed = now - max(mem.first_seen, mem.running_since or mem.first_seen)
            hi = max(n for t, n in recs if t > now - down) if down > 0 else raw
            if down > 0 and observed < down:
                desired = current
                clamps.append("scale_down_stabilized")
                reason = Reason.SCALE_DOWN_STABILIZED
                notes.append(
                    f"running and observed for {observed:.0f}s only; no scale-down before {down:g}s"
                )
            elif hi > raw:
                desired = min(current, hi)
                clamps.append("scale_down_stabilized")
                reason = Reason.SCALE_DOWN_STABILIZED
                notes.append(f"down-window maximum {hi} ({down:g}s)")

    # 6. Bounds.
    stabilized = desired
    policy = winner.policy if winner is not None else None
    bound_reason: Reason | None = None
    bound_policy: str | None = None
    if desired < floor:
        desired = floor
        clamps.append("floor")
        notes.append(
            f"floor {floor}" + (f" from {floor_by.policy}: {floor_by.message}" if floor_by else "")
        )
        if floor_by is not None:
            bound_policy, bound_reason = floor_by.policy, Reason.CONSTRAINT_FLOOR
        else:
            bound_reason = Reason.BELOW_FLOOR
    elif desired > ceiling:
        desired = ceiling
        clamps.append("ceiling")
        notes.append(
            f"ceiling {ceiling}"
            + (f" from {ceiling_by.policy}: {ceiling_by.message}" if ceiling_by else "")
        )
        if ceiling_by is not None:
            bound_policy, bound_reason = ceiling_by.policy, Reason.CONSTRAINT_CEILING
        else:
            bound_reason = Reason.ABOVE_CEILING

    # 7. Rate limits (never against a constraint forcing the count into bounds).
    forced = not (floor <= current <= ceiling)
    if not forced:
        if settings.max_step_up is not None and desired > current + settings.max_step_up:
            desired = current + settings.max_step_up
            clamps.append("max_step_up")
            notes.append(f"at most +{settings.max_step_up} per action")
        if settings.max_step_down is not None and desired < current - settings.max_step_down:
            desired = current - settings.max_step_down
            clamps.append("max_step_down")
            notes.append(f"at most -{settings.max_step_down} per action")
        if (
            desired != current
            and mem.last_action_at is not None
            and now - mem.last_action_at < settings.min_action_interval_s
        ):
            wait = settings.min_action_interval_s - (now - mem.last_action_at)
            notes.append(f"last action {now - mem.last_action_at:.0f}s ago; next in {wait:.0f}s")
            return _hold(
                key,
                now,
                Reason.RATE_LIMITED,
                "; ".join(notes),
                policy=policy,
                current=current,
                desired=desired,
                clamps=(*clamps, "min_interval"),
                proposals=props,
            ), mem

    # 8. Action.
    bounds = target_bounds(desired, ceiling=ceiling, mode=mode)
    have = (scaling.min_replica, scaling.max_replica)
    new_stz = None
    if stz is not None and stz.scale_to_zero_timeout_min != scaling.scale_to_zero_timeout:
        new_stz = stz.scale_to_zero_timeout_min
        notes.append(
            f"scale-to-zero timeout {scaling.scale_to_zero_timeout} -> {new_stz} min ({stz.policy})"
        )
    if desired > current:
        action = Action.SCALE_UP
        if bound_reason is not None and stabilized < desired:
            reason, policy = bound_reason, bound_policy or policy
        elif "scale_up_stabilized" not in clamps:
            reason = Reason.DEMAND_INCREASE
    elif desired < current:
        action = Action.SCALE_TO_ZERO if desired == 0 else Action.SCALE_DOWN
        if bound_reason is not None and stabilized > desired:
            reason, policy = bound_reason, bound_policy or policy
        else:
            reason = Reason.DEMAND_DECREASE
    elif bounds != have:
        action, reason = Action.SET_BOUNDS, Reason.BOUNDS_DRIFT
        notes.append(f"replica bounds {have[0]}..{have[1]} -> {bounds[0]}..{bounds[1]}")
    elif new_stz is not None:
        action, reason, policy = Action.SET_BOUNDS, Reason.SCALE_TO_ZERO_TIMEOUT, stz.policy
    else:
        action = Action.HOLD
        reason = reason or Reason.WITHIN_RANGE
    if reason is None:  # pragma: no cover - every branch above sets one
        reason = Reason.WITHIN_RANGE
    return Decision(
        key=key,
        at=now,
        action=action,
        reason=reason,
        message="; ".join(notes),
        policy=policy,
        current=current,
        desired=desired,
        bounds=bounds if action is not Action.HOLD else None,
        clamps=tuple(clamps),
        proposals=props,
        scale_to_zero_timeout=new_stz if action is not Action.HOLD else None,
    ), mem
