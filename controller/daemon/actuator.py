"""Carries decisions out through the management API: re-read, skip no-ops, honour dry-run.

The actuator is the only place that changes an endpoint. Before acting it re-reads the endpoint:
if the state or the replica bounds changed since the tick observed them (a person, or another
tool), the decision was made on stale data and is skipped, never forced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from controller.core import Action, Decision
from controller.errors import ApiError, RejectedApiError
from controller.platform.client import EndpointsClient
from controller.platform.models import AnyEndpoint, EndpointState

__all__ = ["ActionResult", "Actuator", "Outcome", "describe"]


class ActionResult(StrEnum):
    APPLIED = "applied"
    DRY_RUN = "dry_run"
    NOOP = "noop"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened. `endpoint` is the object returned by the last successful write (even when
    a later call failed), so the loop knows which `updatedAt` is Governor's own."""

    result: ActionResult
    detail: str
    error: Literal["none", "spec", "internal"] = "none"
    endpoint: AnyEndpoint | None = None


def describe(decision: Decision) -> str:
    if decision.action is Action.PAUSE:
        return "would pause"
    if decision.action is Action.RESUME:
        return "would resume"
    parts = []
    if decision.bounds is not None:
        parts.append(f"minReplica={decision.bounds[0]} maxReplica={decision.bounds[1]}")
    if decision.scale_to_zero_timeout is not None:
        parts.append(f"scaleToZeroTimeout={decision.scale_to_zero_timeout}")
    extra = " then scale-to-zero" if decision.action is Action.SCALE_TO_ZERO else ""
    return f"would set {' '.join(parts)}{extra}"


class Actuator:
    def __init__(self, client: EndpointsClient, *, dry_run: bool) -> None:
        self.client = client
        self.dry_run = dry_run

    async def apply(
        self,
        decision: Decision,
        observed: AnyEndpoint,
        *,
        on_write: Callable[[AnyEndpoint], None] | None = None,
    ) -> Outcome:
        """Make `observed` match `decision`, or explain why not. Never raises for API errors.

        `on_write(endpoint)` is called right after each write the API acknowledged, before the
        next call, so the caller can record it as Governor's own at once."""
        record = on_write or (lambda _ep: None)
        if not decision.acts:
            return Outcome(ActionResult.NOOP, "nothing to do")
        if self.dry_run:
            return Outcome(ActionResult.DRY_RUN, describe(decision))
        ns, name = observed.namespace or "", observed.name
        last: AnyEndpoint | None = None
        try:
            fresh = await self.client.get_endpoint(ns, name)
            if fresh.state is not observed.state:
                return Outcome(
                    ActionResult.SKIPPED,
                    f"endpoint went {observed.state.value} -> {fresh.state.value} "
                    "since observed; re-deciding next tick",
                    endpoint=None,
                )
            if decision.action is Action.PAUSE:
                last = await self.client.pause(ns, name)
                record(last)
                return Outcome(ActionResult.APPLIED, "paused", endpoint=last)
            if decision.action is Action.RESUME:
                last = await self.client.resume(ns, name)
                record(last)
                return Outcome(ActionResult.APPLIED, "resumed", endpoint=last)
            if fresh.state is not EndpointState.RUNNING:
                return Outcome(ActionResult.SKIPPED, f"endpoint is now {fresh.state.value}")
            seen = observed.compute.scaling
            now_ = fresh.compute.scaling
            if (seen.min_replica, seen.max_replica) != (now_.min_replica, now_.max_replica):
                return Outcome(
                    ActionResult.SKIPPED,
                    f"replica bounds changed since observed ({seen.min_replica}..{seen.max_replica}"
                    f" -> {now_.min_replica}..{now_.max_replica}); re-deciding next tick",
                )
            changes: dict[str, int] = {}
            if decision.bounds is not None:
                want_min, want_max = decision.bounds
                if now_.min_replica != want_min:
                    changes["min_replica"] = want_min
                if now_.max_replica != want_max:
                    changes["max_replica"] = want_max
            if (
                decision.scale_to_zero_timeout is not None
                and now_.scale_to_zero_timeout != decision.scale_to_zero_timeout
            ):
                changes["scale_to_zero_timeout"] = decision.scale_to_zero_timeout
            if changes:
                last = await self.client.update_scaling(ns, name, **changes)
                record(last)
            if decision.action is Action.SCALE_TO_ZERO:
                last = await self.client.scale_to_zero(ns, name)
                record(last)
            elif not changes:
                return Outcome(ActionResult.NOOP, "already as desired")
            done = ", ".join(f"{k}={v}" for k, v in changes.items()) or "bounds unchanged"
            if decision.action is Action.SCALE_TO_ZERO:
                done += ", scaled to zero"
            return Outcome(ActionResult.APPLIED, done, endpoint=last)
        except RejectedApiError as exc:
            return Outcome(ActionResult.FAILED, str(exc), error="spec", endpoint=last)
        except ApiError as exc:
            return Outcome(ActionResult.FAILED, str(exc), error="internal", endpoint=last)
