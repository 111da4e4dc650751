"""The combiner's steps, one job each, in the order `decide` runs them.

Each step is a pure function of what the previous steps produced. A step either *ends* the
decision (it returns a `Decision`, always a HOLD or a state change: pause or resume) or passes a
`Draft` on: the count so far plus its explanation. The numbers are those of the README's "How a
decision is made" and of `STEPS` in `controller.core.decide`:

0. `people_first`  1. `propose`  2. `hard_stop`  3. `gate`  4. `demand`  5. `stabilise`
6. `bound` (its limits, `limits`, are computed before the gate, which needs them)
7. `rate_limit`  8. `actuation`

Nothing here does I/O or reads a clock; `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.core.params import EndpointSettings
from controller.core.types import (
    Action,
    Actuation,
    Decision,
    EndpointMemory,
    Reason,
    evolve,
    target_bounds,
)
from controller.platform.models import AnyEndpoint, EndpointState
from policies.base import (
    DemandHistory,
    EndpointView,
    FleetMember,
    Policy,
    Proposal,
    ProposalKind,
    QuotaView,
    SpendView,
)
from policies.capacity import engine_capacity

__all__ = [
    "Draft",
    "Limits",
    "Stale",
    "actuation",
    "bound",
    "demand",
    "gate",
    "hard_stop",
    "limits",
    "observe",
    "people_first",
    "propose",
    "rate_limit",
    "stabilise",
]

# Timestamps within a millisecond are the same write (the API rounds them).
_SAME_TIME_S = 1e-3


@dataclass(frozen=True, slots=True)
class Limits:
    """Step 6's effective bounds, and which constraint set each (None: the operator's)."""

    floor: int
    ceiling: int
    floor_by: Proposal | None = None
    ceiling_by: Proposal | None = None
    scale_to_zero: Proposal | None = None
    crossed: str | None = None

    def hold(self, current: int) -> bool:
        """True when nothing about the bounds asks for a change from `current`."""
        return self.floor <= current <= self.ceiling and self.scale_to_zero is None


@dataclass(frozen=True, slots=True)
class Stale:
    """Why demand cannot be used this tick (step 3)."""

    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class Draft:
    """The decision in the making: the count so far and why.

    `winner` is the demand proposal followed (None when only constraints act); `stabilized` the
    count before bounds; `bound_reason`/`bound_policy` name a bound that moved it.
    """

    current: int
    desired: int
    reason: Reason | None = None
    winner: Proposal | None = None
    notes: tuple[str, ...] = ()
    clamps: tuple[str, ...] = ()
    stabilized: int | None = None
    bound_reason: Reason | None = None
    bound_policy: str | None = None

    def note(self, text: str, *, clamp: str | None = None, reason: Reason | None = None) -> Draft:
        return evolve(
            self,
            notes=(*self.notes, text),
            clamps=(*self.clamps, clamp) if clamp else self.clamps,
            reason=reason or self.reason,
        )

    @property
    def policy(self) -> str | None:
        return self.winner.policy if self.winner is not None else None


def _hold(key: str, now: float, reason: Reason, message: str, **kw: Any) -> Decision:
    return Decision(key=key, at=now, action=Action.HOLD, reason=reason, message=message, **kw)


def _updated(endpoint: AnyEndpoint) -> float:
    return endpoint.status.updated_at.timestamp()


def _constraints(proposals: Sequence[Proposal]) -> list[Proposal]:
    return [p for p in proposals if p.kind is ProposalKind.CONSTRAINT and p.valid]


# -- before the steps: bookkeeping independent of policies ----------------------------------------


def observe(memory: EndpointMemory | None, endpoint: AnyEndpoint, now: float) -> EndpointMemory:
    """Record state changes, since when the endpoint runs, and its first-seen `updatedAt`."""
    mem = memory or EndpointMemory(first_seen=now)
    st = endpoint.state.value
    if mem.state != st:
        mem = evolve(mem, state=st, state_since=now)
    if endpoint.state is EndpointState.RUNNING:
        if mem.running_since is None:
            mem = evolve(mem, running_since=now)
    else:
        mem = evolve(mem, running_since=None)
    if mem.last_known_update is None:
        mem = evolve(mem, last_known_update=_updated(endpoint))
    return mem


# -- 0. people first ------------------------------------------------------------------------------


def people_first(
    endpoint: AnyEndpoint,
    mem: EndpointMemory,
    *,
    now: float,
    settings: EndpointSettings,
    identity: str | None,
) -> tuple[Decision | None, EndpointMemory]:
    """Back off an endpoint someone else changed since Governor's last look or write.

    A newer `updatedAt` by Governor's own API identity is its own write, not a person's.
    """
    current = endpoint.status.target_replica
    updated = _updated(endpoint)
    by = endpoint.status.updated_by
    who = by.name if by else "someone"
    known = mem.last_known_update
    if updated > (known or 0) + _SAME_TIME_S and identity is not None and who == identity:
        mem = evolve(mem, last_known_update=updated)
        known = updated
        if endpoint.state is EndpointState.PAUSED and mem.paused_by_governor is None:
            # Governor's own pause whose response it never saw (lost, or written by the leader
            # before this replica took over): its own, so it may resume it.
            mem = evolve(mem, paused_by_governor="governor:own-write")
    if known is not None and updated > known + _SAME_TIME_S:
        mem = evolve(
            mem,
            last_known_update=updated,
            backoff_until=now + settings.human_backoff_s,
            paused_by_governor=None,
        )
        msg = (
            f"changed by {who} since Governor's last look; hands off for "
            f"{settings.human_backoff_s:g}s"
        )
        return _hold(endpoint.key, now, Reason.HUMAN_OVERRIDE, msg, current=current), mem
    if mem.backoff_until is not None and now < mem.backoff_until:
        msg = f"recently changed by a person; hands off for another {mem.backoff_until - now:.0f}s"
        return _hold(endpoint.key, now, Reason.HUMAN_OVERRIDE, msg, current=current), mem
    return None, mem


# -- 1. propose -----------------------------------------------------------------------------------


def propose(
    endpoint: AnyEndpoint,
    policies: Sequence[Policy],
    mem: EndpointMemory,
    *,
    now: float,
    settings: EndpointSettings,
    window: Any,
    quota: QuotaView | None,
    fleet: tuple[FleetMember, ...],
    spend: SpendView | None,
    history: DemandHistory | None = None,
) -> tuple[tuple[Proposal, ...], EndpointMemory]:
    """Every policy proposes on one shared view; each gets back only its own memory."""
    status = endpoint.status
    # The view's fields once per endpoint; each policy gets them with its own memory (built
    # directly: `dataclasses.replace` re-reads the fields and cost ~9 us per policy per tick).
    shared: dict[str, Any] = dict(
        key=endpoint.key,
        endpoint=endpoint,
        window=window,
        current=status.target_replica,
        ready=status.ready_replica,
        floor=settings.floor,
        ceiling=settings.ceiling,
        state_since=mem.state_since,
        paused_by_governor=mem.paused_by_governor,
        priority=settings.priority,
        quota=quota,
        fleet=fleet,
        spend=spend,
        slo_queue_delay_s=settings.slo.queue_delay_s,
        slo_attainment=settings.slo.attainment,
        capacity_per_replica=settings.capacity_per_replica or engine_capacity(endpoint),
        cold_start_s=settings.cold_start_s,
        history=history,
    )
    proposals: list[Proposal] = []
    policy_memory = dict(mem.policy_memory)
    for pol in policies:
        view = EndpointView(**shared, memory=mem.policy_memory.get(pol.name, {}))
        prop = pol.propose(view, now)
        proposals.append(prop)
        if prop.memory is not None:
            policy_memory[pol.name] = dict(prop.memory)
    return tuple(proposals), evolve(mem, policy_memory=policy_memory)


# -- 2. hard stop ---------------------------------------------------------------------------------

_PAUSABLE = (EndpointState.RUNNING, EndpointState.SCALED_TO_ZERO, EndpointState.INITIALIZING)


def hard_stop(
    endpoint: AnyEndpoint, proposals: tuple[Proposal, ...], mem: EndpointMemory, *, now: float
) -> Decision | None:
    """Pause wins over everything; resume only Governor's own pauses; act only when running.

    Returns None when the endpoint is running and nothing asks to pause it: demand may proceed.
    """
    key, state = endpoint.key, endpoint.state
    current = endpoint.status.target_replica
    constraints = _constraints(proposals)
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
                proposals=proposals,
            )
        if state in _PAUSABLE:
            return Decision(
                key=key,
                at=now,
                action=Action.PAUSE,
                reason=Reason.POLICY_PAUSE,
                message=f"{w.policy}: {w.message}",
                policy=w.policy,
                current=current,
                desired=0,
                proposals=proposals,
                pause_reason=f"{w.policy}:{w.reason}",
            )
    if state is EndpointState.PAUSED:
        return _paused(endpoint, constraints, proposals, mem, now=now)
    if state is not EndpointState.RUNNING:
        return _hold(
            key,
            now,
            Reason.NOT_ACTIONABLE,
            f"endpoint is {state.value}",
            current=current,
            proposals=proposals,
        )
    return None


def _paused(
    endpoint: AnyEndpoint,
    constraints: list[Proposal],
    proposals: tuple[Proposal, ...],
    mem: EndpointMemory,
    *,
    now: float,
) -> Decision:
    """A paused endpoint: resumed only when Governor paused it and a constraint wants it running."""
    key, current = endpoint.key, endpoint.status.target_replica
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
            proposals=proposals,
        )
    if not mem.paused_by_governor:
        return _hold(
            key,
            now,
            Reason.HUMAN_PAUSE,
            "paused by a person; Governor never resumes it",
            current=current,
            proposals=proposals,
        )
    return _hold(
        key,
        now,
        Reason.KEPT_PAUSED,
        f"paused by Governor ({mem.paused_by_governor}); nothing asks to resume",
        current=current,
        proposals=proposals,
    )


# -- 6, first half: the limits (the gate needs them) ----------------------------------------------


def limits(settings: EndpointSettings, proposals: Sequence[Proposal]) -> Limits:
    """floor = max(operator, constraint floors), ceiling = min(...); crossed, the ceiling wins."""
    floor, floor_by = settings.floor, None
    ceiling, ceiling_by = settings.ceiling, None
    constraints = _constraints(proposals)
    for p in constraints:
        if p.floor is not None and p.floor > floor:
            floor, floor_by = p.floor, p
        if p.ceiling is not None and p.ceiling < ceiling:
            ceiling, ceiling_by = p.ceiling, p
    crossed = None
    if floor > ceiling:
        crossed = f"floor {floor} above ceiling {ceiling}: the ceiling wins"
        floor, floor_by = ceiling, ceiling_by
    stz = next((p for p in constraints if p.scale_to_zero_timeout_min is not None), None)
    return Limits(floor, ceiling, floor_by, ceiling_by, stz, crossed)


# -- 3. gate --------------------------------------------------------------------------------------


def gate(
    proposals: Sequence[Proposal],
    *,
    window: Any,
    feed_error: str | None,
    now: float,
    max_age_s: float,
) -> Stale | None:
    """Demand is usable only with a fresh sample and at least one valid demand proposal."""
    latest = window.latest if window is not None else None
    if feed_error is not None:
        return Stale(Reason.STALE_METRICS, f"metrics feed unusable: {feed_error}")
    if latest is None:
        return Stale(Reason.NO_DATA, "no metrics sample yet")
    if now - latest.at > max_age_s:
        return Stale(
            Reason.STALE_METRICS,
            f"latest sample is {now - latest.at:.0f}s old (max {max_age_s:g}s)",
        )
    if not _valid_demand(proposals):
        invalid = _invalid_demand(proposals)
        why = "; ".join(f"{p.policy}: {p.message}" for p in invalid) or "no demand policy"
        return Stale(Reason.NO_DATA, why)
    return None


def _valid_demand(proposals: Sequence[Proposal]) -> list[Proposal]:
    return [
        p for p in proposals if p.kind is ProposalKind.DEMAND and p.valid and p.replicas is not None
    ]


def _invalid_demand(proposals: Sequence[Proposal]) -> list[Proposal]:
    return [p for p in proposals if p.kind is ProposalKind.DEMAND and not p.valid]


# -- 4. demand ------------------------------------------------------------------------------------


def demand(
    proposals: Sequence[Proposal], *, current: int, stale: Stale | None, start: Draft
) -> Draft:
    """Max over valid demand; no scale-down on partial data. Stale: hold the count, bounds only."""
    if stale is not None:
        return evolve(start.note(stale.message + "; enforcing constraints only"), desired=current)
    winner = max(_valid_demand(proposals), key=lambda p: p.replicas or 0)
    draft = evolve(start, desired=int(winner.replicas or 0), winner=winner)
    draft = draft.note(f"{winner.policy}: {winner.message}")
    invalid = _invalid_demand(proposals)
    if invalid and draft.desired < current:
        names = ", ".join(p.policy for p in invalid)
        draft = evolve(draft, desired=current).note(
            f"no scale-down on partial data ({names})",
            clamp="partial_data",
            reason=Reason.PARTIAL_DATA,
        )
    return draft


# -- 5. stabilise ---------------------------------------------------------------------------------


def stabilise(
    draft: Draft, mem: EndpointMemory, *, now: float, settings: EndpointSettings
) -> tuple[Draft, EndpointMemory]:
    """HPA semantics over the recommendation history (only real demand is recorded): up follows
    the up window's lowest, down the down window's highest, and no scale-down before a full down
    window was observed running."""
    if draft.winner is None:
        return draft, mem
    raw, current = draft.desired, draft.current
    up_s, down_s = settings.scale_up_stabilization_s, settings.scale_down_stabilization_s
    horizon = max(up_s, down_s)
    recs = (*(r for r in mem.recommendations if r[0] > now - horizon), (now, raw))
    mem = evolve(mem, recommendations=recs)
    if raw > current and up_s > 0:
        lo = min(n for t, n in recs if t > now - up_s)
        if lo < raw:
            draft = evolve(draft, desired=max(current, lo)).note(
                f"up-window minimum {lo} ({up_s:g}s)",
                clamp="scale_up_stabilized",
                reason=Reason.SCALE_UP_STABILIZED,
            )
    elif raw < current:
        observed = now - max(mem.first_seen, mem.running_since or mem.first_seen)
        hi = max(n for t, n in recs if t > now - down_s) if down_s > 0 else raw
        if down_s > 0 and observed < down_s:
            draft = evolve(draft, desired=current).note(
                f"running and observed for {observed:.0f}s only; no scale-down before {down_s:g}s",
                clamp="scale_down_stabilized",
                reason=Reason.SCALE_DOWN_STABILIZED,
            )
        elif hi > raw:
            draft = evolve(draft, desired=min(current, hi)).note(
                f"down-window maximum {hi} ({down_s:g}s)",
                clamp="scale_down_stabilized",
                reason=Reason.SCALE_DOWN_STABILIZED,
            )
    return draft, mem


# -- 6. bounds ------------------------------------------------------------------------------------


def bound(draft: Draft, lim: Limits) -> Draft:
    """Clamp into [floor, ceiling], naming the constraint that set the bound."""
    draft = evolve(draft, stabilized=draft.desired)
    if draft.desired < lim.floor:
        by = lim.floor_by
        text = f"floor {lim.floor}" + (f" from {by.policy}: {by.message}" if by else "")
        draft = evolve(
            draft,
            desired=lim.floor,
            bound_policy=by.policy if by else None,
            bound_reason=Reason.CONSTRAINT_FLOOR if by else Reason.BELOW_FLOOR,
        )
        return draft.note(text, clamp="floor")
    if draft.desired > lim.ceiling:
        by = lim.ceiling_by
        text = f"ceiling {lim.ceiling}" + (f" from {by.policy}: {by.message}" if by else "")
        draft = evolve(
            draft,
            desired=lim.ceiling,
            bound_policy=by.policy if by else None,
            bound_reason=Reason.CONSTRAINT_CEILING if by else Reason.ABOVE_CEILING,
        )
        return draft.note(text, clamp="ceiling")
    return draft


# -- 7. rate limits -------------------------------------------------------------------------------


def rate_limit(
    draft: Draft,
    mem: EndpointMemory,
    lim: Limits,
    *,
    key: str,
    now: float,
    settings: EndpointSettings,
    proposals: tuple[Proposal, ...],
) -> Draft | Decision:
    """Step limits and the minimum interval, never against a bound forcing the count back in.

    Returns a HOLD (`rate_limited`) when the interval since the last action is too short.
    """
    current = draft.current
    if not lim.floor <= current <= lim.ceiling:
        return draft
    up, down = settings.max_step_up, settings.max_step_down
    if up is not None and draft.desired > current + up:
        draft = evolve(draft, desired=current + up).note(
            f"at most +{up} per action", clamp="max_step_up"
        )
    if down is not None and draft.desired < current - down:
        draft = evolve(draft, desired=current - down).note(
            f"at most -{down} per action", clamp="max_step_down"
        )
    last = mem.last_action_at
    if (
        draft.desired != current
        and last is not None
        and now - last < settings.min_action_interval_s
    ):
        wait = settings.min_action_interval_s - (now - last)
        draft = draft.note(f"last action {now - last:.0f}s ago; next in {wait:.0f}s")
        return _hold(
            key,
            now,
            Reason.RATE_LIMITED,
            "; ".join(draft.notes),
            policy=draft.policy,
            current=current,
            desired=draft.desired,
            clamps=(*draft.clamps, "min_interval"),
            proposals=proposals,
        )
    return draft


# -- 8. actuation ---------------------------------------------------------------------------------


def actuation(
    draft: Draft,
    endpoint: AnyEndpoint,
    lim: Limits,
    *,
    now: float,
    mode: Actuation,
    proposals: tuple[Proposal, ...],
) -> Decision:
    """Compare with the current count, the replica bounds and the scale-to-zero timeout."""
    scaling = endpoint.compute.scaling
    desired, current = draft.desired, draft.current
    bounds = target_bounds(desired, ceiling=lim.ceiling, mode=mode)
    have = (scaling.min_replica, scaling.max_replica)
    stz = lim.scale_to_zero
    new_stz = None
    if stz is not None and stz.scale_to_zero_timeout_min != scaling.scale_to_zero_timeout:
        new_stz = stz.scale_to_zero_timeout_min
        draft = draft.note(
            f"scale-to-zero timeout {scaling.scale_to_zero_timeout} -> {new_stz} min ({stz.policy})"
        )
    action, reason, policy = _action(draft, have=have, bounds=bounds, new_stz=new_stz, stz=stz)
    if action is Action.SET_BOUNDS and reason is Reason.BOUNDS_DRIFT:
        draft = draft.note(f"replica bounds {have[0]}..{have[1]} -> {bounds[0]}..{bounds[1]}")
    acts = action is not Action.HOLD
    return Decision(
        key=endpoint.key,
        at=now,
        action=action,
        reason=reason,
        message="; ".join(draft.notes),
        policy=policy,
        current=current,
        desired=desired,
        bounds=bounds if acts else None,
        clamps=draft.clamps,
        proposals=proposals,
        scale_to_zero_timeout=new_stz if acts else None,
    )


def _action(
    draft: Draft,
    *,
    have: tuple[int, int],
    bounds: tuple[int, int],
    new_stz: int | None,
    stz: Proposal | None,
) -> tuple[Action, Reason, str | None]:
    """The action, its reason and the policy to name: a bound that moved the count is named in
    place of the demand it overrode."""
    desired, current = draft.desired, draft.current
    policy = draft.policy
    stabilized = draft.stabilized if draft.stabilized is not None else desired
    by_bound = draft.bound_reason
    if desired > current:
        if by_bound is not None and stabilized < desired:
            return Action.SCALE_UP, by_bound, draft.bound_policy or policy
        if "scale_up_stabilized" in draft.clamps:
            return Action.SCALE_UP, draft.reason or Reason.WITHIN_RANGE, policy
        return Action.SCALE_UP, Reason.DEMAND_INCREASE, policy
    if desired < current:
        action = Action.SCALE_TO_ZERO if desired == 0 else Action.SCALE_DOWN
        if by_bound is not None and stabilized > desired:
            return action, by_bound, draft.bound_policy or policy
        return action, Reason.DEMAND_DECREASE, policy
    if bounds != have:
        return Action.SET_BOUNDS, Reason.BOUNDS_DRIFT, policy
    if new_stz is not None and stz is not None:
        return Action.SET_BOUNDS, Reason.SCALE_TO_ZERO_TIMEOUT, stz.policy
    return Action.HOLD, draft.reason or Reason.WITHIN_RANGE, policy
