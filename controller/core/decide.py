"""The combiner: an endpoint's view, policies and memory in, one explained decision out.

`decide` is the fixed pipeline of the README's "How a decision is made", one named step of
`controller.core.steps` per numbered step (the order is part of the contract; `STEPS` lists them):

0. `people_first`: hands off an endpoint someone else changed (`human_override`).
1. `propose`: every policy proposes; constraints bound, demand counts.
2. `hard_stop`: a pause wins; only Governor's own pauses are resumed; only `running` goes on.
3. `gate`: demand needs a fresh sample; without one, only the bounds are enforced.
4. `demand`: max over valid demand; no scale-down on partial data.
5. `stabilise`: HPA windows (up: lowest, down: highest recommendation).
6. `bound`: clamp into the effective floor and ceiling (`limits`, computed before the gate).
7. `rate_limit`: step sizes and the minimum interval between actions.
8. `actuation`: the action that realises the count, the replica bounds and the idle timeout.

Nothing here does I/O or reads a clock; `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.core.params import EndpointSettings
from controller.core.steps import (
    Draft,
    actuation,
    bound,
    demand,
    gate,
    hard_stop,
    limits,
    observe,
    people_first,
    propose,
    rate_limit,
    stabilise,
)
from controller.core.types import Action, Actuation, Decision, EndpointMemory
from controller.platform.models import AnyEndpoint
from policies.base import DemandHistory, FleetMember, Policy, QuotaView, SpendView

__all__ = ["STEPS", "decide"]

# The README's numbered steps, in order (tests/test_decide_steps.py holds the two to each other).
STEPS = (people_first, propose, hard_stop, gate, demand, stabilise, bound, rate_limit, actuation)


def decide(
    endpoint: AnyEndpoint,
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
    history: DemandHistory | None = None,
) -> tuple[Decision, EndpointMemory]:
    """Decide for one endpoint at `now`; returns the decision and the successor memory.

    `identity` is the API user Governor acts as (learnt from its own writes), so its own past
    changes are never mistaken for a person's. `history` is the endpoint's recorded demand at
    earlier periods' phase (the loop reads it from the store), for a pre-warm.
    """
    key, current = endpoint.key, endpoint.status.target_replica
    mem = observe(memory, endpoint, now)
    held, mem = people_first(endpoint, mem, now=now, settings=settings, identity=identity)
    if held is not None:
        return held, mem
    props, mem = propose(
        endpoint, policies, mem, now=now, settings=settings, window=window,
        quota=quota, fleet=fleet, spend=spend, history=history,
    )  # fmt: skip
    stop = hard_stop(endpoint, props, mem, now=now)
    if stop is not None:
        return stop, mem
    lim = limits(settings, props)
    stale = gate(props, window=window, feed_error=feed_error, now=now, max_age_s=max_age_s)
    if stale is not None and lim.hold(current):
        return Decision(
            key=key, at=now, action=Action.HOLD, reason=stale.reason, message=stale.message,
            current=current, proposals=props,
        ), mem  # fmt: skip
    start = Draft(current=current, desired=current, notes=(lim.crossed,) if lim.crossed else ())
    draft = demand(props, current=current, stale=stale, start=start)
    draft, mem = stabilise(draft, mem, now=now, settings=settings)
    draft = bound(draft, lim)
    limited = rate_limit(draft, mem, lim, key=key, now=now, settings=settings, proposals=props)
    if isinstance(limited, Decision):
        return limited, mem
    return actuation(limited, endpoint, lim, now=now, mode=mode, proposals=props), mem
